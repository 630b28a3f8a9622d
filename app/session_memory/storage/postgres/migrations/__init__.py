"""The PostgreSQL schema: its migrations, in order, and ``migrate``, which applies them.

A released migration is never edited (databases have applied it): a change is a new
migration, the PL/pgSQL functions redefined with ``CREATE OR REPLACE``. The long
ones, the functions, live in a module each, named by version.
"""

from __future__ import annotations

from ..driver import Connection
from .v07_write_functions import WRITE_FUNCTIONS
from .v08_history import HISTORY_MIGRATION
from .v09_history_functions import HISTORY_FUNCTIONS
from .v10_shared_blocks import SHARED_BLOCKS
from .v11_bounded_fork import BOUNDED_FORK
from .v12_run_leases import RUN_LEASES
from .v13_lease_keys import LEASE_KEYS
from .v14_inline_fence import INLINE_FENCE

__all__ = ["MIGRATIONS", "migrate"]

# Ordered, append-only: a released migration is never edited, a new one is added.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE SEQUENCE session_revisions;
        CREATE TABLE sessions (
            id          BIGSERIAL   PRIMARY KEY,
            tenant      TEXT        NOT NULL,
            session_id  TEXT        NOT NULL,
            created_at  TIMESTAMPTZ NOT NULL,
            updated_at  TIMESTAMPTZ NOT NULL,
            item_count  BIGINT      NOT NULL,
            last_seq    BIGINT      NOT NULL,
            revision    BIGINT      NOT NULL,
            UNIQUE (tenant, session_id)
        );
        CREATE INDEX sessions_by_tenant_revision ON sessions (tenant, revision);
        CREATE TABLE items (
            session BIGINT NOT NULL,
            seq     BIGINT NOT NULL,
            body    TEXT   NOT NULL,
            PRIMARY KEY (session, seq)
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE idempotency_keys (
            tenant      TEXT        NOT NULL,
            key         TEXT        NOT NULL,
            fingerprint TEXT        NOT NULL,
            result      TEXT        NOT NULL,
            expires_at  TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (tenant, key)
        );
        CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
        """,
    ),
    (
        3,
        """
        ALTER TABLE sessions ADD COLUMN ttl_seconds DOUBLE PRECISION;
        ALTER TABLE sessions ADD COLUMN expires_at TIMESTAMPTZ;
        CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;
        """,
    ),
    (
        4,
        # Revisions per session (see ``records.revision_at``) instead of one sequence for
        # all, and listings walk (revision, session id).
        """
        CREATE TABLE revision_floors (
            tenant   TEXT   PRIMARY KEY,
            revision BIGINT NOT NULL
        );
        DROP INDEX sessions_by_tenant_revision;
        CREATE INDEX sessions_by_tenant_recency ON sessions (tenant, revision, session_id);
        DROP SEQUENCE session_revisions;
        """,
    ),
    (
        5,
        # Idempotency records belong to their session: a clear deletes them, and a
        # pop's record, which keeps the popped item, counts as one of its items.
        """
        ALTER TABLE idempotency_keys ADD COLUMN session_id TEXT;
        ALTER TABLE idempotency_keys ADD COLUMN kept BOOLEAN NOT NULL DEFAULT false;
        CREATE INDEX idempotency_keys_by_session ON idempotency_keys (tenant, session_id);
        ALTER TABLE sessions ADD COLUMN kept_items BIGINT NOT NULL DEFAULT 0;
        """,
    ),
    (
        6,
        # Sessions deleted whose items the sweep still has to delete, a batch at a time.
        """
        CREATE TABLE retired_sessions (id BIGINT PRIMARY KEY);
        """,
    ),
    # Appends, pops and clears as functions: one round trip each.
    (7, WRITE_FUNCTIONS),
    # Session metadata, its labels and the follow trigger (the history operations).
    (8, HISTORY_MIGRATION),
    # Replace and fork as functions: one round trip each.
    (9, HISTORY_FUNCTIONS),
    # The write functions' shared blocks as helpers, the write functions over them.
    (10, SHARED_BLOCKS),
    # Forks bounded by what one fork may copy.
    (11, BOUNDED_FORK),
    # Run leases, and the write functions fenced by them.
    (12, RUN_LEASES),
    # Idempotent lease acquisitions.
    (13, LEASE_KEYS),
    # The run lease check inside the fenced write functions, not around them.
    (14, INLINE_FENCE),
]

# Any two-int key will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 0x5E55_1011


async def migrate(conn: Connection, *, target: int | None = None) -> list[int]:
    """Apply pending migrations up to ``target`` (all by default); return the versions applied.

    Replicas starting together serialise on an advisory lock, so each migration
    runs once.
    """
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        for version, sql in MIGRATIONS:
            if version <= current or (target is not None and version > target):
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    return applied
