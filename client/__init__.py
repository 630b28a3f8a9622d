"""session-memory's client: ``RemoteSession`` for the OpenAI Agents SDK."""

from __future__ import annotations

from ._exceptions import (
    ConnectError,
    ProblemError,
    RequestTimeout,
    SessionMemoryError,
    TransportError,
)
from ._ids import MAX_SESSION_ID_LENGTH, validate_session_id
from ._session import DEFAULT_BASE_URL, DEFAULT_RETRIES, DEFAULT_TIMEOUT, RemoteSession

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT",
    "MAX_SESSION_ID_LENGTH",
    "ConnectError",
    "ProblemError",
    "RemoteSession",
    "RequestTimeout",
    "SessionMemoryError",
    "TransportError",
    "validate_session_id",
]
