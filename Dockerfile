# A first image: installs the package and runs `session-memory serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SESSION_MEMORY_DATABASE_URL=sqlite:////data/sessions.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY client ./client
# docker build --build-arg EXTRAS=postgres . adds the PostgreSQL driver.
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"

VOLUME ["/data"]
EXPOSE 8000
CMD ["session-memory", "serve", "--host", "0.0.0.0", "--port", "8000"]
