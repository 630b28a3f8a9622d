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

from ..config import Database, Settings
from .contract import HistoryStore, RunLeases, SessionStore
from .errors import (
    ForkTooLargeError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidCursorError,
    LeaseLostError,
    MetadataTooLargeError,
    PreconditionFailedError,
    SessionExistsError,
    SessionFullError,
    SessionLeasedError,
    SessionMissingError,
    StoreError,
    StoreUnavailableError,
    TooManySessionsError,
)
from .leases import Lease
from .records import (
    ANY_REVISION,
    MAX_SEQ,
    AppendResult,
    ForkLimits,
    Idempotency,
    ItemPage,
    SessionBackup,
    SessionInfo,
    SessionPage,
    Swept,
)

__all__ = [
    "ANY_REVISION",
    "BACKENDS",
    "MAX_SEQ",
    "AppendResult",
    "ForkLimits",
    "ForkTooLargeError",
    "HistoryStore",
    "Idempotency",
    "IdempotencyInFlightError",
    "IdempotencyMismatchError",
    "InvalidCursorError",
    "ItemPage",
    "Lease",
    "LeaseLostError",
    "MetadataTooLargeError",
    "PreconditionFailedError",
    "RunLeases",
    "SessionBackup",
    "SessionExistsError",
    "SessionFullError",
    "SessionInfo",
    "SessionLeasedError",
    "SessionMissingError",
    "SessionPage",
    "SessionStore",
    "StoreError",
    "StoreUnavailableError",
    "Swept",
    "TooManySessionsError",
    "store_for",
    "store_from_url",
]

# backend -> "module:class"; the class has a ``from_database(database, settings)`` constructor.
BACKENDS: dict[str, str] = {
    "sqlite": "session_memory.storage.sqlite:SQLiteStore",
    "postgresql": "session_memory.storage.postgres:PostgresStore",
}


def store_for(settings: Settings, database: Database | None = None) -> HistoryStore:
    """Build (not open) the store of ``database`` (default: the configured one,
    ``settings.database``), tuned by ``settings``."""
    database = database or settings.database
    module_name, class_name = BACKENDS[database.backend].split(":")
    store_class = getattr(importlib.import_module(module_name), class_name)
    store: HistoryStore = store_class.from_database(database, settings)
    return store


def store_from_url(url: str, settings: Settings | None = None) -> HistoryStore:
    """Build (not open) the store a database URL names; ``ValueError`` for a URL no
    backend takes (naming the forms it could take)."""
    return store_for(settings or Settings(), Database.parse(url))
