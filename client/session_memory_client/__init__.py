"""session-memory's client: ``RemoteSession`` for the OpenAI Agents SDK."""

from __future__ import annotations

from . import protocol
from ._exceptions import (
    ConnectError,
    ProblemError,
    RequestTimeout,
    SessionMemoryError,
    TransportError,
)
from ._session import DEFAULT_BASE_URL, DEFAULT_RETRIES, DEFAULT_TIMEOUT, RemoteSession
from .protocol import MAX_SESSION_ID_LENGTH, validate_session_id

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
    "protocol",
    "validate_session_id",
]
