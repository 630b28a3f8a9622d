# One entry point per task; the README and .ci/run use these same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := app/session_memory client/session_memory_client bench

.PHONY: setup run test test-js test-fast lint format openapi clean bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./client -e '.[dev]'
	touch $@

# What serving needs and nothing more: the client (the wire protocol) and the service.
$(VENV)/.served: pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ./client -e .
	touch $@

## run: serve on http://127.0.0.1:8000 with the SQLite default (./data/sessions.db)
run: $(VENV)/.served
	$(BIN)/session-memory serve

## test: lint, type-check, the TypeScript client's tests, then the whole test suite
test: lint test-js
	$(BIN)/python -m pytest -n 4 --dist loadgroup

## test-js: the TypeScript client (client-js/): npm ci from its lock file, tsc, node --test
test-js: setup
	cd client-js && npm ci --no-audit --no-fund && npm test

## test-fast: the in-process unit and contract tests (no processes, browser or load): under a minute
test-fast: setup
	$(BIN)/python -m pytest -n 4 --dist loadgroup -m "not slow"

lint: setup
	$(BIN)/ruff check $(SOURCES) tests
	$(BIN)/ruff format --check $(SOURCES) tests
	$(BIN)/mypy --strict $(SOURCES)

format: setup
	$(BIN)/ruff check --fix $(SOURCES) tests
	$(BIN)/ruff format $(SOURCES) tests

## openapi: regenerate the committed openapi.json from the app
openapi: setup
	$(BIN)/session-memory openapi > openapi.json

clean:
	rm -rf $(VENV) build app/*.egg-info client/*.egg-info client/build .pytest_cache .mypy_cache .ruff_cache

## bench: session-memory vs RedisSession, SQLAlchemySession, SQLiteSession and a bare-ASGI ceiling
## (about 5 minutes; needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432, started if down)
bench: setup
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes \
		--bind 127.0.0.1 --port 6379 --save '' --appendonly no || true
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect \
		"$$(ls /etc/postgresql | head -n 1)" main start || true
	$(BIN)/python -m bench.run $(BENCH_ARGS)
