"""Storage backends behind one contract, chosen by the database URL's scheme.

Shared by every backend: the contract (``contract``), the records it takes and
returns (``records``), its errors (``errors``), paging (``paging``) and metadata
(``metadata``). Each backend is a package of its own (``sqlite``, ``postgres``),
imported only when its scheme is used, so a SQLite deployment never imports a
PostgreSQL driver.

Owns the data and its durability. May import ``config`` and nothing else of the
service: it knows nothing of HTTP, problems or metrics (it raises ``StoreError``).
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..config import Settings, redact_url
from .contract import HistoryStore, SessionStore
from .errors import (
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidCursorError,
    MetadataTooLargeError,
    PreconditionFailedError,
    SessionExistsError,
    SessionFullError,
    SessionMissingError,
    StoreError,
    StoreUnavailableError,
    TooManySessionsError,
)
from .records import (
    ANY_REVISION,
    MAX_SEQ,
    AppendResult,
    Idempotency,
    ItemPage,
    SessionInfo,
    SessionPage,
    Swept,
)

__all__ = [
    "ANY_REVISION",
    "BACKENDS",
    "MAX_SEQ",
    "AppendResult",
    "HistoryStore",
    "Idempotency",
    "IdempotencyInFlightError",
    "IdempotencyMismatchError",
    "InvalidCursorError",
    "ItemPage",
    "MetadataTooLargeError",
    "PreconditionFailedError",
    "SessionExistsError",
    "SessionFullError",
    "SessionInfo",
    "SessionMissingError",
    "SessionPage",
    "SessionStore",
    "StoreError",
    "StoreUnavailableError",
    "Swept",
    "TooManySessionsError",
    "store_from_url",
]

# scheme -> "module:class"; the class has a ``from_url(url, settings)`` constructor.
BACKENDS: dict[str, str] = {
    "sqlite": "session_memory.storage.sqlite:SQLiteStore",
    "postgresql": "session_memory.storage.postgres:PostgresStore",
    "postgres": "session_memory.storage.postgres:PostgresStore",
}


def store_from_url(url: str, settings: Settings | None = None) -> HistoryStore:
    """Build (not open) the store a database URL names, tuned by ``settings``."""
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in sorted(BACKENDS))
        raise ValueError(
            f"unsupported database URL scheme {scheme!r} in {redact_url(url)!r}; use {known}"
        )
    module_name, class_name = target.split(":")
    store_class = getattr(importlib.import_module(module_name), class_name)
    store: HistoryStore = store_class.from_url(url, settings or Settings(database_url=url))
    return store
