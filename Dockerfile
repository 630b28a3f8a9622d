# session-memory: the service image.
#   docker build -t session-memory .                          # SQLite
#   docker build --build-arg EXTRAS=postgres -t session-memory .   # + PostgreSQL driver
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies in their own layer: rebuilt only when pyproject.toml changes.
# (DL3013 asks to pin what pip installs; "." is this project, pinned by its own file.)
COPY pyproject.toml README.md ./
COPY client/pyproject.toml client/README.md ./client/
# hadolint ignore=DL3013
RUN mkdir -p app/session_memory client/session_memory_client \
    && touch app/session_memory/__init__.py client/session_memory_client/__init__.py \
    && pip install ./client ".${EXTRAS:+[$EXTRAS]}" \
    && pip uninstall --yes session-memory session-memory-client
COPY app ./app
COPY client ./client
# hadolint ignore=DL3013
RUN pip install --no-deps ./client .

FROM python:${PYTHON_VERSION}-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SESSION_MEMORY_DATABASE_URL=sqlite:////data/sessions.db
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app \
    && mkdir /data \
    && chown app /data
COPY --from=build /opt/venv /opt/venv
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["session-memory", "serve", "--host", "0.0.0.0", "--port", "8000"]
