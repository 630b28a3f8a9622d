"""Prometheus metrics, the log of store errors, and the JSON log format.

Each app has its own registry, so several apps (in tests) never collide.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .storage.errors import RefusedError, StoreError, StoreUnavailableError

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "JsonFormatter",
    "Metrics",
    "StartupFailureFilter",
    "configure_logging",
    "log_config",
]

_logger = logging.getLogger("session_memory")

# The status a request is counted and logged with when its client went away before
# the answer was complete (nginx's "client closed request"): not a server error.
CLIENT_CLOSED_REQUEST = 499

# Latency buckets around what this service answers in: sub-millisecond reads to
# seconds-long streams.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000, 10_000)


class Metrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "session_memory_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.latency = Histogram(
            "session_memory_request_duration_seconds",
            "Time to answer a request, by method and route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.items_written = Counter(
            "session_memory_items_written", "Items appended.", registry=self.registry
        )
        self.items_read = Counter(
            "session_memory_items_read", "Items returned by reads.", registry=self.registry
        )
        self.write_batch = Histogram(
            "session_memory_write_batch_items",
            "Items per append.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.store_errors = Counter(
            "session_memory_store_errors",
            "Store calls that failed, by kind (unavailable, other).",
            ["kind"],
            registry=self.registry,
        )
        self.sessions = Gauge(
            "session_memory_sessions",
            "Live sessions in the store (refreshed about once a minute).",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # prometheus_client looks a labelled child up (validating and locking) on
        # every labels() call; the pair is kept per (method, route, status). It holds
        # no more keys than the metrics themselves already do.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def store_error(self, exc: StoreError) -> None:
        """Count and log a failed store call; refusals the caller caused are neither."""
        if isinstance(exc, RefusedError):
            return
        if isinstance(exc, StoreUnavailableError):
            self.store_errors.labels("unavailable").inc()
            _logger.warning("store unavailable: %s", exc)
            return
        if type(exc) is StoreError:
            self.store_errors.labels("other").inc()
        _logger.error("store error: %s", exc, exc_info=exc)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str) -> None:
    """Send every log line to stderr as JSON: the service's at ``level``, and the rest.

    The rest is what reaches the root logger: the database drivers' (asyncpg's pool
    logs tracebacks), asyncio's unhandled exceptions and Python warnings (uvicorn's
    own lines go through ``log_config``). Without a handler of ours there, Python's
    last-resort handler would print them as plain text into the JSON log.
    """
    for name in ("session_memory", ""):
        logger = logging.getLogger(name)
        if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
            logger.addHandler(_json_handler())
    logger = logging.getLogger("session_memory")
    logger.setLevel(level.upper())
    logger.propagate = False
    # Others' lines below a warning are noise at the service's info level.
    logging.getLogger().setLevel(max(logging.WARNING, logger.level))
    logging.captureWarnings(True)


class StartupFailureFilter(logging.Filter):
    """Shortens uvicorn's report of a failed start-up to the cause, without the traceback.

    uvicorn logs an exception raised by the app's start-up (the store could not be
    opened) with its whole traceback; below ``debug`` the operator gets one line.
    """

    _HINT = " (check --database-url or SESSION_MEMORY_DATABASE_URL)"

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        if record.exc_info and text.startswith("Exception in 'lifespan'"):
            exc = record.exc_info[1]
            cause = f"{type(exc).__name__}: {exc}"
        elif text.startswith("Traceback (most recent call last)"):
            # Starlette hands uvicorn the formatted traceback as the failure message;
            # its last line is the exception itself.
            cause = text.strip().splitlines()[-1]
        else:
            return True
        record.msg = "cannot start: %s" + self._HINT
        record.args = (cause,)
        record.exc_info = None
        record.exc_text = None
        return True


def log_config(level: str) -> dict[str, Any]:
    """``logging.config.dictConfig`` for a server: uvicorn's lines and ours, all JSON."""
    filters = [] if level == "debug" else ["startup_failure"]
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "stream": "ext://sys.stderr",
        "filters": filters,
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"startup_failure": {"()": StartupFailureFilter}},
        "handlers": {"json": handler},
        "loggers": {
            name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "session_memory")
        },
    }
