"""SQLite's SQL: the schema's migrations and the pieces of statements shared by several.

The migrations are append-only: a released one is never edited (a database made by it
must keep working), a new one is added. The fragments below are each written once; the
writes (``writes``) and the reads (``reads``) build their statements from them.
"""

from __future__ import annotations

import sqlite3
import time

import aiosqlite

__all__ = [
    "GONE",
    "INSERT_SESSION",
    "LIVE",
    "MIGRATIONS",
    "NEW_SESSION_ID",
    "SESSION_COLUMNS",
    "TOUCH",
    "migrate",
    "split_script",
]

# -- statement fragments -------------------------------------------------------------

# A session's record, in ``SessionInfo``'s order.
SESSION_COLUMNS = (
    "session_id, item_count, created_at, updated_at, revision, expires_at, metadata, "
    "ttl_seconds, last_seq"
)

# A live session (its table named ``s``): not expired at the parameter (now).
LIVE = "(s.expires_at IS NULL OR s.expires_at > ?)"

# A session's revisions (``records.revision_at``): a new session's first, and the next.
_FIRST_REVISION = (
    "max(:now_us, coalesce((SELECT revision FROM revision_floors WHERE tenant = :tenant), 0) + 1)"
)
_NEXT_REVISION = "max(revision + 1, :now_us)"

# A new session's id: above every live, retired and staged one (SQLite would
# otherwise reuse the highest id once its row is gone, and a retired session's items
# would reappear; a fork's copy is staged under an id of its own, ``forks``).
NEW_SESSION_ID = (
    "(SELECT max(coalesce((SELECT max(id) FROM sessions), 0), "
    "coalesce((SELECT max(id) FROM retired_sessions), 0), "
    "coalesce((SELECT max(id) FROM fork_copies), 0)) + 1)"
)


def _expiry(ttl: str) -> str:
    """The expiry a write gives a session: now + the first TTL of ``ttl`` that is set,
    else the default; none when that is 0."""
    return f"CASE WHEN coalesce({ttl}, :default) > 0 THEN :now + coalesce({ttl}, :default) END"


# What every write does to a session it keeps: its update time, its next revision,
# and its expiry renewed (a :ttl given becomes its own TTL).
TOUCH = (
    f"updated_at = :now, revision = {_NEXT_REVISION}, "
    f"ttl_seconds = coalesce(:ttl, ttl_seconds), expires_at = {_expiry(':ttl, ttl_seconds')}"
)

# A new session holding :count items, under the row id :id (a fork's staged copy's)
# or a new one. Every INSERT INTO sessions is this one, so each gets its id and first
# revision by the rules above.
INSERT_SESSION = f"""
INSERT INTO sessions (id, tenant, session_id, created_at, updated_at, item_count, last_seq,
                      revision, ttl_seconds, expires_at, metadata)
VALUES (coalesce(:id, {NEW_SESSION_ID}), :tenant, :session_id, :now, :now, :count, :count,
        {_FIRST_REVISION}, :ttl, {_expiry(":ttl")}, :metadata)
"""

# Deleting sessions: what a delete returns, for ``writes.deleted``.
GONE = "RETURNING id, tenant, revision, session_id, item_count"

# -- migrations ----------------------------------------------------------------------

# Metadata as JSON text on the session; its top-level scalars copied into
# session_labels, whose key leads with what a filter names, so a filter reads only
# the matching sessions' entries. The trigger keeps labels from outliving sessions
# whichever statement deletes them (clear, expiry, sweep).
_HISTORY_MIGRATION = """
ALTER TABLE sessions ADD COLUMN metadata TEXT;
CREATE TABLE session_labels (
    tenant  TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    session INTEGER NOT NULL,
    PRIMARY KEY (tenant, key, value, session)
) WITHOUT ROWID;
CREATE INDEX session_labels_by_session ON session_labels (session);
CREATE TRIGGER session_labels_gone AFTER DELETE ON sessions BEGIN
    DELETE FROM session_labels WHERE session = old.id;
END
"""

# A fork's copy in progress (``forks``), staged under the session row id ``id``, which
# no session row holds until the copy is done: ``copied`` is the last source seq
# copied of those up to ``through``. ``disturbed``: the source lost items still to be
# copied, so the fork starts over.
_FORK_COPIES_MIGRATION = """
CREATE TABLE fork_copies (
    id        INTEGER PRIMARY KEY,
    source    INTEGER NOT NULL,
    through   INTEGER NOT NULL,
    copied    INTEGER NOT NULL DEFAULT 0,
    items     INTEGER NOT NULL DEFAULT 0,
    bytes     INTEGER NOT NULL DEFAULT 0,
    disturbed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX fork_copies_by_source ON fork_copies (source);
"""

# Run leases (``leases``): a session's current or last lease, kept apart from its
# record so a clear or an expiry leaves it be; ended leases stay a while, their token
# the floor of the next (the sweep deletes them by expiry).
_LEASES_MIGRATION = """
CREATE TABLE session_leases (
    tenant          TEXT    NOT NULL,
    session_id      TEXT    NOT NULL,
    token           INTEGER NOT NULL,
    expires_at      REAL    NOT NULL,
    ttl             REAL    NOT NULL,
    refuse_unleased INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id)
);
CREATE INDEX session_leases_by_expiry ON session_leases (expires_at);
"""

# The Idempotency-Key of the acquisition that granted a session's lease (NULL: none):
# a retry of that acquisition gets the lease back while it is held (``leases``).
_LEASE_KEYS_MIGRATION = """
ALTER TABLE session_leases ADD COLUMN acquire_key TEXT;
"""

# Ordered, append-only: a released migration is never edited, a new one is added.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sessions (
            id          INTEGER PRIMARY KEY,
            tenant      TEXT    NOT NULL,
            session_id  TEXT    NOT NULL,
            created_at  REAL    NOT NULL,
            updated_at  REAL    NOT NULL,
            item_count  INTEGER NOT NULL,
            last_seq    INTEGER NOT NULL,
            revision    INTEGER NOT NULL,
            UNIQUE (tenant, session_id)
        );
        CREATE INDEX sessions_by_revision ON sessions (revision);
        CREATE INDEX sessions_by_tenant_revision ON sessions (tenant, revision);
        CREATE TABLE items (
            session INTEGER NOT NULL,
            seq     INTEGER NOT NULL,
            body    TEXT    NOT NULL,
            PRIMARY KEY (session, seq)
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE idempotency_keys (
            tenant      TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            result      TEXT NOT NULL,
            expires_at  REAL NOT NULL,
            PRIMARY KEY (tenant, key)
        );
        CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
        """,
    ),
    (
        3,
        """
        ALTER TABLE sessions ADD COLUMN ttl_seconds REAL;
        ALTER TABLE sessions ADD COLUMN expires_at REAL;
        CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;
        """,
    ),
    (
        4,
        # Revisions per session (see ``records.revision_at``): no more max(revision) + 1
        # over all sessions, and listings walk (revision, session id).
        """
        CREATE TABLE revision_floors (
            tenant   TEXT    PRIMARY KEY,
            revision INTEGER NOT NULL
        );
        DROP INDEX sessions_by_revision;
        DROP INDEX sessions_by_tenant_revision;
        CREATE INDEX sessions_by_tenant_recency ON sessions (tenant, revision, session_id);
        """,
    ),
    (
        5,
        # Idempotency records belong to their session: a clear deletes them, and a
        # pop's record, which keeps the popped item, counts as one of its items.
        """
        ALTER TABLE idempotency_keys ADD COLUMN session_id TEXT;
        ALTER TABLE idempotency_keys ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX idempotency_keys_by_session ON idempotency_keys (tenant, session_id);
        ALTER TABLE sessions ADD COLUMN kept_items INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        6,
        # Sessions deleted whose items the sweep still has to delete, a batch at a
        # time. Their ids must not come back (``_NEW_SESSION_ID``): the items would
        # reappear in a new session.
        """
        CREATE TABLE retired_sessions (id INTEGER PRIMARY KEY);
        """,
    ),
    # Session metadata and its labels (the history operations).
    (7, _HISTORY_MIGRATION),
    # Forks copied in steps.
    (8, _FORK_COPIES_MIGRATION),
    # Run leases.
    (9, _LEASES_MIGRATION),
    # Idempotent lease acquisitions.
    (10, _LEASE_KEYS_MIGRATION),
]


def split_script(sql: str) -> list[str]:
    """A script's statements; a trigger's body keeps its inner semicolons."""
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                statements.append(pending)
            pending = ""
    return statements


async def migrate(conn: aiosqlite.Connection, *, target: int | None = None) -> list[int]:
    """Apply pending migrations up to ``target`` (all by default); return the versions applied."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    async with conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    applied: list[int] = []
    for version, sql in MIGRATIONS:
        if version <= current or (target is not None and version > target):
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_script(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied
