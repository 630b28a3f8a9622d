"""How ``serve`` runs the app: uvicorn with the connection-level bounds.

The bounds on connections (head size and count, timeouts, the connection cap and
who gives way at it, back-pressure toward clients that do not read) are held by
``EdgeProtocol`` (``protocol``) inside uvicorn, with ``admission`` and ``cycle``,
while a request arrives and its answer leaves, before anything is buffered past
them. ``run`` starts uvicorn, in one process or in ``workers``; ``startup`` holds
what ``serve`` checks and claims before that.

This module holds only the ``serve`` flags of the edge settings: the command line
imports it for them, and the server's own imports wait until ``serve`` runs.

May import: ``main`` (the ASGI app), ``problems``, ``config``, ``auth``, ``draining``,
``observability``.
"""

from __future__ import annotations

import argparse

from ..config import Settings

__all__ = ["EDGE_FLAGS", "add_edge_arguments"]

EDGE_FLAGS = [
    "max_header_count",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "body_deadline_seconds",
    "idle_timeout_seconds",
    "send_timeout_seconds",
    "max_connections",
    "unauthenticated_connection_share",
    "max_pending_write_bytes",
    "shutdown_timeout_seconds",
    "allowed_hosts",
]


def add_edge_arguments(parser: argparse.ArgumentParser) -> None:
    """``serve`` flags for the edge settings, each named after its setting."""
    for name in EDGE_FLAGS:
        kind = {
            "max_header_count": int,
            "max_connections": int,
            "max_pending_write_bytes": int,
            "allowed_hosts": str,
        }.get(name, float)
        parser.add_argument(
            "--" + name.removesuffix("_seconds").replace("_", "-"),
            dest=name,
            type=kind,
            help=f"{Settings.model_fields[name].description} (SESSION_MEMORY_{name.upper()})",
        )
