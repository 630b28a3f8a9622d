"""The PostgreSQL driver, asyncpg: the one module that imports it.

Only this package imports this module, and ``storage.store_from_url`` imports the
package only for a PostgreSQL URL, so SQLite deployments never need asyncpg. Holds
what the pool hands out (``Connection``) and which driver errors mean "the database
is not there right now" rather than "the query is wrong".
"""

from __future__ import annotations

import asyncio

try:
    import asyncpg
    from asyncpg import Pool, PostgresError, Record, connect, create_pool
    from asyncpg.pool import PoolConnectionProxy
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'session-memory[postgres]'"
    ) from exc

__all__ = [
    "UNAVAILABLE",
    "Connection",
    "Pool",
    "PostgresError",
    "Record",
    "connect",
    "create_pool",
]

# What the pool hands out, and what ``migrate`` also accepts: a plain connection.
Connection = asyncpg.Connection | PoolConnectionProxy

# Errors that mean "the database is not there right now", not "the query is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)
