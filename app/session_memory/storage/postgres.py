"""PostgreSQL store: several server replicas share one database.

Each write (append, pop, clear) is one call of a PL/pgSQL function
(``postgres_functions``): one round trip, in the statement's own transaction. Reads
are one statement. Concurrency rests on the session row's lock: appends and pops
take it with ``SELECT ... FOR UPDATE``, so appends to one session get contiguous,
increasing sequence numbers and each pop removes a different item, whichever
replica runs them. Items are ``text``, not ``jsonb``: they come back byte for byte.
The expiry sweep is the one write of several statements, in small transactions.

asyncpg is imported here only, so SQLite deployments never need it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

try:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'session-memory[postgres]'"
    ) from exc

from ..config import Settings
from .errors import StoreError, StoreUnavailableError
from .paging import page_from_rows, parse_session_cursor, read_shape, session_cursor
from .postgres_functions import WRITE_FUNCTIONS
from .postgres_history import HISTORY_MIGRATION, PostgresHistory, refused, store_labels
from .postgres_history_functions import HISTORY_FUNCTIONS
from .records import (
    EMPTY_PAGE,
    SWEEP_BATCH_ROWS,
    AppendResult,
    Idempotency,
    ItemPage,
    SessionInfo,
    SessionPage,
    Swept,
    decode_pop,
)

__all__ = ["MIGRATIONS", "PostgresStore", "migrate"]

T = TypeVar("T")

# What the pool hands out, and what ``migrate`` also accepts: a plain connection.
Connection = asyncpg.Connection | PoolConnectionProxy

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
        # Revisions per session (see ``base.revision_at``) instead of one sequence for
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
]

# Any two-int key will do; it only has to be the same in every replica.
_MIGRATION_LOCK = 0x5E55_1011

_SESSION_COLUMNS = (
    "session_id, item_count, extract(epoch FROM created_at)::float8, "
    "extract(epoch FROM updated_at)::float8, revision, extract(epoch FROM expires_at)::float8, "
    "metadata"
)
_LIVE = "(expires_at IS NULL OR expires_at > now())"

# Errors that mean "the database is not there right now", not "the query is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
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


@functools.cache
def _read_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    # One statement, so the revision and the items come from one snapshot.
    # Parameters: $1 tenant, $2 session id, then after, before and the row count.
    join = ["i.session = s.id"]
    for wanted, op in ((after, ">"), (before, "<")):
        if wanted:
            join.append(f"i.seq {op} ${len(join) + 2}")
    sql = (
        "SELECT s.revision, i.seq, i.body FROM sessions s "
        f"LEFT JOIN items i ON {' AND '.join(join)} "
        "WHERE s.tenant = $1 AND s.session_id = $2 "
        "AND (s.expires_at IS NULL OR s.expires_at > now()) "
        f"ORDER BY i.seq {'ASC' if forward else 'DESC'}"
    )
    return sql + (f" LIMIT ${len(join) + 2}" if limited else "")


# Deleting sessions: RETURNING this, for ``_deleted``.
_GONE = "RETURNING id, tenant, revision, session_id, item_count"

# Deleting idempotency records: release the items they kept (the CTE ``forgot``).
_RELEASE_KEPT = """
    UPDATE sessions AS s SET kept_items = s.kept_items - d.n
    FROM (SELECT tenant, session_id, count(*) AS n FROM forgot WHERE kept
          GROUP BY tenant, session_id) AS d
    WHERE s.tenant = d.tenant AND s.session_id = d.session_id
"""


@functools.cache
def _bounded_read_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    """``_read_sql``, keeping rows only until their bodies pass a byte bound (last $).

    ``octet_length`` reads a stored value's size from its header (TOAST keeps it), so
    the rows past the bound are never fetched or sent; the one that passes it is
    (the second, when the first alone passes it), and ``page_from_rows`` cuts before
    it and says there is more.
    """
    inner = _read_sql(after, before, forward, limited)
    bound = f"${2 + after + before + limited + 1}"
    order = f"ORDER BY r.seq {'ASC' if forward else 'DESC'}"
    return (
        "SELECT revision, seq, body FROM ("
        "SELECT r.revision, r.seq, r.body, row_number() OVER w AS n, "
        "coalesce(sum(octet_length(r.body)) OVER w, 0) - coalesce(octet_length(r.body), 0)"
        f" AS before_it FROM ({inner}) r WINDOW w AS ({order} ROWS UNBOUNDED PRECEDING)"
        f") page WHERE before_it <= {bound} OR n <= 2 "
        f"ORDER BY seq {'ASC' if forward else 'DESC'}"
    )


async def _deleted(conn: Connection, rows: Sequence[asyncpg.Record], inline: int) -> None:
    """Sessions (``_GONE``) were deleted: delete their items and idempotency records,
    and raise the revision floors.

    Items of a session holding up to ``inline`` go now; a bigger session is retired
    and the sweep deletes its items a batch at a time, so no transaction grows huge.
    The floor keeps a recreated session from ever repeating a revision (an ETag).
    """
    if not rows:
        return
    await conn.execute(
        "DELETE FROM items WHERE session = ANY($1::bigint[])",
        [row["id"] for row in rows if row["item_count"] <= inline],
    )
    await conn.execute(
        "INSERT INTO retired_sessions (id) SELECT unnest($1::bigint[])",
        [row["id"] for row in rows if row["item_count"] > inline],
    )
    await conn.execute(
        "DELETE FROM idempotency_keys AS k USING unnest($1::text[], $2::text[]) AS d(t, s) "
        "WHERE k.tenant = d.t AND k.session_id = d.s",
        [row["tenant"] for row in rows],
        [row["session_id"] for row in rows],
    )
    await conn.execute(
        """
        INSERT INTO revision_floors AS f (tenant, revision)
        SELECT tenant, max(revision) FROM unnest($1::text[], $2::bigint[]) AS d(tenant, revision)
        GROUP BY tenant
        ON CONFLICT (tenant) DO UPDATE SET revision = greatest(f.revision, excluded.revision)
        """,
        [row["tenant"] for row in rows],
        [row["revision"] for row in rows],
    )


async def _keep_session(conn: Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    That query (unlock advisory locks, close cursors, UNLISTEN, RESET ALL) would be a
    second round trip on every operation. The store leaves no session state behind:
    its locks are transaction-scoped, it declares no cursors outside a transaction,
    listens to nothing and sets nothing; asyncpg still rolls back an open transaction.
    """


# What the write functions get for "no Idempotency-Key".
_NO_KEY = Idempotency(key="", fingerprint="", ttl=0)


class PostgresStore(PostgresHistory):
    """A ``SessionStore`` on PostgreSQL through an asyncpg connection pool."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        session_ttl: float = 0,
        max_sessions_per_tenant: int = 0,
        sweep_batch_rows: int = SWEEP_BATCH_ROWS,
    ) -> None:
        self.dsn = dsn
        self._sweep_batch_rows = sweep_batch_rows
        self._max_sessions = max_sessions_per_tenant
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._default_ttl = session_ttl
        self._pool: asyncpg.Pool | None = None

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> PostgresStore:
        return cls(
            url.replace("postgresql+asyncpg://", "postgresql://", 1),
            pool_size=settings.pg_pool_size,
            connect_timeout=settings.pg_connect_timeout,
            statement_timeout=settings.pg_statement_timeout,
            session_ttl=settings.session_ttl_seconds,
            max_sessions_per_tenant=settings.max_sessions_per_tenant,
            sweep_batch_rows=settings.sweep_batch_rows,
        )

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                command_timeout=self._statement_timeout,
                server_settings={
                    "statement_timeout": str(int(self._statement_timeout * 1000)),
                    "application_name": "session-memory",
                },
                reset=_keep_session,
            )
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL: cannot connect: {exc}") from exc
        async with self._pool.acquire() as conn:
            await migrate(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, mapping outages to StoreUnavailableError."""
        if self._pool is None:
            raise StoreUnavailableError("the store is not open")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                return await work(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        async def work(conn: Connection) -> None:
            await conn.fetchval("SELECT 1 FROM sessions LIMIT 1")

        await self._run(work)

    async def append(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[str],
        *,
        max_items: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        ttl: float | None = None,
        metadata: str | None = None,
    ) -> AppendResult:
        count = len(items)
        if count == 0:
            return AppendResult(count=0, first_seq=None, last_seq=None)
        key = idempotency or _NO_KEY

        async def call(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT * FROM session_memory_append("
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                tenant,
                session_id,
                list(items),
                max_items,
                self._max_sessions,
                None if idempotency is None else key.key,
                key.fingerprint,
                key.ttl,
                expected_revision,
                ttl,
                self._default_ttl,
                self._sweep_batch_rows,
            )

        async def work(conn: Connection) -> asyncpg.Record | None:
            if metadata is None:
                return await call(conn)
            # Metadata given at creation: the append and the metadata in one
            # transaction (a round trip more, only for such appends).
            async with conn.transaction():
                row = await call(conn)
                if row is not None and row["r_status"] == "ok" and row["r_first"] == 1:
                    rowid = await conn.fetchval(
                        "UPDATE sessions SET metadata = $3 WHERE tenant = $1 AND session_id = $2 "
                        "RETURNING id",
                        tenant,
                        session_id,
                        metadata,
                    )
                    await store_labels(conn, tenant, rowid, metadata)
                return row

        return self._written(await self._run(work), key, count, max_items)

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> str | None:
        key = idempotency or _NO_KEY

        async def work(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT * FROM session_memory_pop($1, $2, $3, $4, $5, $6, $7, $8)",
                tenant,
                session_id,
                None if idempotency is None else key.key,
                key.fingerprint,
                key.ttl,
                expected_revision,
                self._default_ttl,
                self._sweep_batch_rows,
            )

        row = refused(await self._run(work), key)
        if row["r_status"] == "replay":
            return decode_pop(row["r_replay"])
        item: str | None = row["r_item"]
        return item

    async def sweep(self) -> Swept:
        swept = Swept()
        while True:
            batch = await self._run(self._sweep_batch)
            swept += batch
            if max(batch.sessions, batch.items, batch.records) < self._sweep_batch_rows:
                return swept

    async def _sweep_batch(self, conn: Connection) -> Swept:
        """Up to a batch of expired sessions (retired), items of retired sessions and
        expired idempotency records, in one transaction."""
        rows = self._sweep_batch_rows
        async with conn.transaction():
            gone = await conn.fetch(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
                f"WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) {_GONE}",
                rows,
            )
            await _deleted(conn, gone, 0)
            items = await conn.fetchval(
                """
                WITH gone AS (
                    DELETE FROM items WHERE (session, seq) IN (
                        SELECT i.session, i.seq FROM retired_sessions r
                        JOIN items i ON i.session = r.id LIMIT $1)
                    RETURNING 1
                )
                SELECT count(*) FROM gone
                """,
                rows,
            )
            await conn.execute(
                "DELETE FROM retired_sessions r "
                "WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.session = r.id)"
            )
            forgot = await conn.fetchval(
                f"""
                WITH forgot AS (
                    DELETE FROM idempotency_keys WHERE (tenant, key) IN (
                        SELECT tenant, key FROM idempotency_keys WHERE expires_at <= now()
                        LIMIT $1 FOR UPDATE SKIP LOCKED)
                    RETURNING tenant, session_id, kept
                ), released AS ({_RELEASE_KEPT})
                SELECT count(*) FROM forgot
                """,
                rows,
            )
        return Swept(len(gone), int(items), int(forgot), 1)

    async def clear(
        self, tenant: str, session_id: str, *, expected_revision: int | None = None
    ) -> None:
        async def work(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT * FROM session_memory_clear($1, $2, $3, $4)",
                tenant,
                session_id,
                expected_revision,
                self._sweep_batch_rows,
            )

        refused(await self._run(work), _NO_KEY)

    async def read(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        after: int | None = None,
        before: int | None = None,
        max_bytes: int | None = None,
    ) -> ItemPage:
        if limit == 0:
            return EMPTY_PAGE
        forward, fetch = read_shape(limit, after)
        params = [value for value in (after, before, fetch, max_bytes) if value is not None]
        shape = (after is not None, before is not None, forward, fetch is not None)
        sql = _read_sql(*shape) if max_bytes is None else _bounded_read_sql(*shape)

        async def work(conn: Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, tenant, session_id, *params))

        return page_from_rows(await self._run(work), limit, forward, max_bytes)

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        async def work(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                f"SELECT {_SESSION_COLUMNS} FROM sessions "
                f"WHERE tenant = $1 AND session_id = $2 AND {_LIVE}",
                tenant,
                session_id,
            )

        row = await self._run(work)
        return SessionInfo(*row) if row is not None else None

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        tenant, session_id = after or ("", None)

        async def work(conn: Connection) -> list[tuple[str, str]]:
            rows = await conn.fetch(
                f"SELECT tenant, session_id FROM sessions WHERE {_LIVE} AND "
                "(tenant > $1 OR (tenant = $1 AND ($2::text IS NULL OR session_id > $2))) "
                "ORDER BY tenant, session_id LIMIT $3",
                tenant,
                session_id,
                limit,
            )
            return [(row[0], row[1]) for row in rows]

        return await self._run(work)

    async def count_sessions(self) -> int:
        async def work(conn: Connection) -> int:
            return int(await conn.fetchval(f"SELECT count(*) FROM sessions WHERE {_LIVE}"))

        return await self._run(work)

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        revision, session_id = (None, None) if cursor is None else parse_session_cursor(cursor)

        async def work(conn: Connection) -> list[asyncpg.Record]:
            return list(
                await conn.fetch(
                    f"""
                    SELECT {_SESSION_COLUMNS} FROM sessions
                    WHERE tenant = $1 AND {_LIVE}
                      AND ($2::bigint IS NULL OR (revision, session_id) < ($2, $3::text))
                    ORDER BY revision DESC, session_id DESC LIMIT $4
                    """,
                    tenant,
                    revision,
                    session_id,
                    limit + 1,
                )
            )

        rows = await self._run(work)
        sessions = [SessionInfo(*row) for row in rows[:limit]]
        last = sessions[-1] if len(rows) > limit else None
        return SessionPage(
            sessions=sessions,
            next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
        )


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
