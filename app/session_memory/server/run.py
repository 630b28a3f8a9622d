"""Running uvicorn: its configuration, one process or several, and the graceful stop.

Everything a server process needs, the settings, the loaded API keys and the
``Draining`` its app and its connections share, reaches it in one way: inside the
``uvicorn.Config`` built here, as the arguments of the app factory and of the
protocol class. Worker processes get that config pickled, whole, in one piece,
so each has one copy of the settings and keys and one ``Draining`` shared by its
app and its connections, as a single process does. Nothing goes through the
environment.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import logging.config
import resource
import signal
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from ..auth import ApiKeys
from ..config import Settings
from ..draining import Draining
from ..main import create_asgi_app
from ..observability import log_config
from .admission import Admission
from .cycle import WriteBudget
from .limits import EdgeLimits
from .protocol import EdgeProtocol
from .startup import SummaryServer

__all__ = [
    "create_served_app",
    "edge_limits",
    "give_back_large_buffers",
    "serve",
    "uvicorn_config",
]

logger = logging.getLogger("session_memory")

# File descriptors kept for the database, logs and the listening socket.
_RESERVED_FDS = 64


def create_served_app(settings: Settings, api_keys: ApiKeys, draining: Draining) -> ASGIApp:
    """The app one server process runs (uvicorn calls this in each worker process)."""
    give_back_large_buffers()
    return create_asgi_app(settings, api_keys=api_keys, draining=draining)


# glibc's malloc (mallopt's M_MMAP_THRESHOLD, and its initial value).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


def give_back_large_buffers() -> None:
    """Keep every large buffer in its own mapping, so its memory is returned when freed.

    glibc raises its mmap threshold after each large free (up to 32 MiB), and from
    then on answers of many MiB come from the heap, which returns little of what is
    freed: after clients that stopped reading were cut off, the process kept their
    memory. A fixed threshold turns that off. Small allocations (the hot routes')
    are unchanged. Other C libraries are left as they are.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def edge_limits(settings: Settings) -> EdgeLimits:
    """The protocol's per-connection bounds, from the settings."""
    return EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=_connection_cap(settings.max_connections),
        body_deadline=settings.body_deadline_seconds,
        send_timeout=settings.send_timeout_seconds,
        max_pending_write_bytes=settings.max_pending_write_bytes,
        unauthenticated_share=settings.unauthenticated_connection_share,
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


def uvicorn_config(
    settings: Settings, api_keys: ApiKeys, *, workers: int, port: int
) -> uvicorn.Config:
    """uvicorn's configuration; for ``workers`` > 1 the app is built in each worker."""
    draining = Draining()
    factory = functools.partial(create_served_app, settings, api_keys, draining)
    # One process builds its app here, before uvicorn configures logging, as it always has.
    app = factory if workers > 1 else factory()
    logs = log_config(settings.log_level)
    # uvicorn applies this too (and again in each worker); first here, so that what
    # edge_limits logs (a lowered connection cap) is a JSON line like the rest.
    logging.config.dictConfig(logs)
    # uvicorn makes each connection's protocol with this, adding its own arguments.
    # A worker unpickles its own copy: admission and the write budget are per process.
    limits = edge_limits(settings)
    protocol = functools.partial(
        EdgeProtocol,
        limits=limits,
        draining=draining,
        admission=Admission(api_keys, limits),
        budget=WriteBudget(limits.max_pending_write_bytes),
    )
    return uvicorn.Config(
        app,
        factory=workers > 1,
        workers=workers,
        host=settings.host,
        port=port,
        log_level=settings.log_level,
        log_config=logs,
        lifespan="on",
        http=protocol,  # type: ignore[arg-type]
        timeout_keep_alive=settings.idle_timeout_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # type: ignore[arg-type]
        server_header=False,
        # The service logs its own JSON line per request (SESSION_MEMORY_ACCESS_LOG).
        access_log=False,
    )


def serve(
    settings: Settings,
    *,
    api_keys: ApiKeys,
    workers: int,
    listener: socket.socket,
    summary: tuple[str, dict[str, Any]],
) -> int:
    """Serve on ``listener`` until SIGTERM or SIGINT; then drain for at most the shutdown timeout.

    ``summary`` is the start-up line, logged once the server listens. Returns the
    exit status: 0 after a clean stop, 3 when the app failed to start (uvicorn has
    said why).
    """
    port = int(listener.getsockname()[1])
    config = uvicorn_config(settings, api_keys, workers=workers, port=port)
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
