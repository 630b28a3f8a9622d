"""session-memory's client: ``RemoteSession`` for the OpenAI Agents SDK."""

from __future__ import annotations

from . import protocol
from ._cache import DEFAULT_CACHE_BYTES
from ._client import SessionMemoryClient
from ._exceptions import (
    ConnectError,
    ProblemError,
    RequestTimeout,
    SessionMemoryError,
    TransportError,
)
from ._history import FollowEvent, ForkResult, ReplaceResult
from ._lease import RunLease
from ._session import RemoteSession
from ._transport import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BACKOFF,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_FOR,
    DEFAULT_TIMEOUT,
)
from ._types import ItemPage, SessionPage, SessionRecord
from .protocol import MAX_SESSION_ID_LENGTH, validate_session_id

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BACKOFF",
    "DEFAULT_BASE_URL",
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_FOR",
    "DEFAULT_TIMEOUT",
    "MAX_SESSION_ID_LENGTH",
    "ConnectError",
    "FollowEvent",
    "ForkResult",
    "ItemPage",
    "ProblemError",
    "RemoteSession",
    "ReplaceResult",
    "RequestTimeout",
    "RunLease",
    "SessionMemoryClient",
    "SessionMemoryError",
    "SessionPage",
    "SessionRecord",
    "TransportError",
    "protocol",
    "validate_session_id",
]
