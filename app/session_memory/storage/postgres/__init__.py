"""The PostgreSQL backend: several server replicas share one database.

Split by layer: ``driver`` (asyncpg, imported here only, so SQLite deployments
never need it), ``migrations`` (the schema and its PL/pgSQL write functions),
``sql`` (text the statements share), ``writes`` and ``reads`` (plain functions over
a connection), ``store`` (``PostgresStore``: the pool, timeouts, error mapping) and
``listen`` (the LISTEN change feed that wakes followers on every replica).
"""

from __future__ import annotations

from .migrations import MIGRATIONS, migrate
from .store import PostgresStore

__all__ = ["MIGRATIONS", "PostgresStore", "migrate"]
