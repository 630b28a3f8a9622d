"""How ``serve`` runs the app: uvicorn with the connection-level bounds.

The bounds on connections (head size and count, timeouts, connection cap) are held
by ``EdgeProtocol`` (``server.protocol``) inside uvicorn, while a request arrives and
before anything is buffered past them. ``serve`` runs one process, or ``workers``
that each build the same app from the environment.

May import: ``main`` (the ASGI app), ``problems``, ``config``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import socket
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from ..config import Settings

if TYPE_CHECKING:
    from .protocol import EdgeLimits

__all__ = [
    "EDGE_FLAGS",
    "add_edge_arguments",
    "create_served_app",
    "edge_limits",
    "serve",
]

logger = logging.getLogger("session_memory")

EDGE_FLAGS = [
    "max_header_count",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "idle_timeout_seconds",
    "max_connections",
    "shutdown_timeout_seconds",
    "allowed_hosts",
]

# File descriptors kept for the database, logs and the listening socket.
_RESERVED_FDS = 64


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve`` flags for the edge settings, each named after its setting."""
    for name in EDGE_FLAGS:
        kind = {"max_header_count": int, "max_connections": int, "allowed_hosts": str}.get(
            name, float
        )
        parser.add_argument(
            "--" + name.removesuffix("_seconds").replace("_", "-"),
            dest=name,
            type=kind,
            help=f"{Settings.model_fields[name].description} (SESSION_MEMORY_{name.upper()})",
        )


def create_served_app() -> ASGIApp:
    """uvicorn's factory for worker processes (settings from the environment)."""
    from ..main import create_asgi_app

    return create_asgi_app(Settings())


def edge_limits(settings: Settings) -> EdgeLimits:
    """The protocol's per-connection bounds, from the settings."""
    from .protocol import EdgeLimits

    return EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=_connection_cap(settings.max_connections),
    )


def _connection_cap(wanted: int) -> int:
    """``wanted``, raising the file-descriptor limit to fit it, or lowered to fit that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + _RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        capped = max(1, soft - _RESERVED_FDS)
        logger.warning(
            "max_connections lowered from %d to %d: the file-descriptor limit is %d",
            wanted,
            capped,
            soft,
        )
        return capped
    return wanted


def serve(
    settings: Settings,
    *,
    workers: int,
    listener: socket.socket,
    summary: tuple[str, dict[str, Any]],
) -> int:
    """Serve on ``listener`` until SIGTERM or SIGINT; then drain for at most the shutdown timeout.

    ``summary`` is the start-up line, logged once the server listens. Returns the
    exit status: 0 after a clean stop, 3 when the app failed to start (uvicorn has
    said why).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..main import create_asgi_app
    from ..observability import log_config
    from .protocol import EdgeProtocol
    from .startup import SummaryServer

    app: ASGIApp | str = (
        "session_memory.server:create_served_app" if workers > 1 else create_asgi_app(settings)
    )
    config = uvicorn.Config(
        app,
        factory=workers > 1,
        workers=workers,
        host=settings.host,
        port=int(listener.getsockname()[1]),
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        lifespan="on",
        http=EdgeProtocol,
        timeout_keep_alive=settings.idle_timeout_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # type: ignore[arg-type]
        server_header=False,
        # The service logs its own JSON line per request (SESSION_MEMORY_ACCESS_LOG).
        access_log=False,
    )
    # The protocol reads its bounds here; the attribute travels to worker processes
    # with the pickled config.
    config.edge_limits = edge_limits(settings)  # type: ignore[attr-defined]
    # uvicorn stops accepting on SIGTERM/SIGINT, finishes in-flight requests (for at
    # most the shutdown timeout), then runs the lifespan shutdown, which flushes the
    # writer and closes the store. Afterwards it re-raises the signal; these handlers
    # take it, so a clean drain exits 0 instead of a KeyboardInterrupt traceback or a
    # kill by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    if workers > 1:
        message, fields = summary
        logger.info(message, extra={"fields": fields})
        Multiprocess(config, sockets=[listener]).run()
        return 0
    server = SummaryServer(config, summary)
    server.run(sockets=[listener])
    return 0 if server.started else 3
