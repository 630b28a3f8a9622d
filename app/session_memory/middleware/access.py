"""Request metrics and the access log: one JSON line per request.

Probes (/healthz, /readyz, /metrics) and the session browser's own requests (their
Referer is /ui; it refreshes every second) are logged at debug, so they never flood
the log at info.

A request whose client went away before its answer was complete is counted and
logged with status 499 (nginx's "client closed request"), at info and without a
traceback: it is the client's doing, not a server error.

A request cancelled (as a graceful shutdown does to those still running at its
deadline) is counted as 503, what its client is told, and not logged here: the
server logs it once, as cancelled by the shutdown (``server.cycle``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..observability import CLIENT_CLOSED_REQUEST, Metrics

__all__ = ["QUIET_PATHS", "AccessLog"]

logger = logging.getLogger("session_memory")

QUIET_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))
_UI_PATH = "/ui"


def _level(scope: Scope) -> int:
    """Debug for probes and the session browser's requests, info for the rest."""
    if scope["path"] in QUIET_PATHS:
        return logging.DEBUG
    for name, value in scope["headers"]:
        if name == b"referer":
            return (
                logging.DEBUG
                if urlsplit(value.decode("latin-1")).path == _UI_PATH
                else logging.INFO
            )
    return logging.INFO


class AccessLog:
    """Counts and times every request by route and status, and logs it (if ``enabled``)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, enabled: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        recorded = False

        async def send_with_status(message: Message) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Logged before the last bytes go out, so a client that has its answer
                # finds the request's line already in the log.
                recorded = True
                self._record(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except ClientDisconnect:
            # Nobody is left to answer; uvicorn would log it as an error.
            status = CLIENT_CLOSED_REQUEST
        except asyncio.CancelledError:
            if not recorded:
                recorded = True
                self._record(scope, 503, time.perf_counter() - started, log=False)
            raise
        except BaseException:
            status = 500
            raise
        else:
            # Returning without a complete answer only happens when the client left
            # (the hot path and the streams stop on a disconnect).
            status = status if recorded else CLIENT_CLOSED_REQUEST
        finally:
            if not recorded:
                self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float, *, log: bool = True) -> None:
        state: dict[str, Any] = scope.get("state", {})
        # The hot path names its route in the state; FastAPI's router puts it in the scope.
        route = state.get("route") or getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe(scope["method"], route, status, seconds)
        # Debug is below info: with info off, neither kind of line is written.
        if not log or not self.enabled or not logger.isEnabledFor(logging.INFO):
            return
        level = _level(scope)
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "tenant": state.get("tenant"),
                        "request_id": state.get("request_id"),
                    }
                },
            )
