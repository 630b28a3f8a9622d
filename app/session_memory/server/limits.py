"""The per-connection bounds the server holds, and the raw problem answer it sends alone.

``EdgeLimits`` is what ``run.edge_limits`` reads from the settings; its defaults
are the settings' own, so a limit left out means what an unset setting means.
``problem_response`` is a complete HTTP/1.1 answer for a problem the server finds
itself (a head too large, too many connections, a shutdown), written straight to
the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from session_memory_client.protocol import PROBLEM_MEDIA_TYPE
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from ..config import Settings
from ..problems import ProblemError, problem_body

__all__ = ["EdgeLimits", "problem_response"]


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class EdgeLimits:
    """The per-connection bounds; see ``Settings`` for each one's meaning."""

    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float
    max_connections: int
    body_deadline: float = _default("body_deadline_seconds")
    send_timeout: float = _default("send_timeout_seconds")
    max_pending_write_bytes: int = _default("max_pending_write_bytes")
    unauthenticated_share: float = _default("unauthenticated_connection_share")

    @property
    def max_unauthenticated(self) -> int:
        """How many connections without a valid key may be open at once (at least one)."""
        return max(1, int(self.max_connections * self.unauthenticated_share))


def problem_response(problem: ProblemError) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    body = problem_body(problem, "")
    headers = [
        b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        *(f"{name}: {value}\r\n".encode() for name, value in (problem.headers or {}).items()),
        b"connection: close\r\n\r\n",
    ]
    return b"".join([STATUS_LINE[problem.status], *headers, body])
