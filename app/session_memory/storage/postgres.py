"""PostgreSQL store: several server replicas share one database.

Concurrency rests on the session row's lock: an append's upsert and a pop's
``SELECT ... FOR UPDATE`` both take it, so appends to one session get contiguous,
increasing sequence numbers and each pop removes a different item, whichever
replica runs them. Items are ``text``, not ``jsonb``: they come back byte for byte.

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
from .base import (
    EMPTY_PAGE,
    AppendResult,
    Idempotency,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    ItemPage,
    PreconditionFailedError,
    SessionFullError,
    SessionInfo,
    SessionPage,
    StoreError,
    StoreUnavailableError,
    check_revision,
    decode_append,
    decode_pop,
    encode_append,
    encode_pop,
    page_from_rows,
    read_shape,
)
from .postgres_history import HISTORY_MIGRATION, PostgresHistory, store_labels

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
    (4, HISTORY_MIGRATION),
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


async def _purge_expired(conn: Connection, tenant: str, session_id: str) -> None:
    """Delete the session if it has expired, so a write starts it afresh."""
    rowid = await conn.fetchval(
        "DELETE FROM sessions WHERE tenant = $1 AND session_id = $2 AND expires_at <= now() "
        "RETURNING id",
        tenant,
        session_id,
    )
    if rowid is not None:
        await conn.execute("DELETE FROM items WHERE session = $1", rowid)


async def _locked_revision(conn: Connection, tenant: str, session_id: str) -> int:
    """The session's revision (0: none), its row locked until the transaction ends."""
    revision = await conn.fetchval(
        "SELECT revision FROM sessions WHERE tenant = $1 AND session_id = $2 FOR UPDATE",
        tenant,
        session_id,
    )
    return int(revision) if revision is not None else 0


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
    ) -> None:
        self.dsn = dsn
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

    async def _write(
        self,
        tenant: str,
        idempotency: Idempotency | None,
        work: Callable[[Connection], Awaitable[T]],
        encode: Callable[[T], str],
        decode: Callable[[str], T],
    ) -> T:
        """Run ``work`` in a transaction, made idempotent when a key is given."""

        async def transaction(conn: Connection) -> T:
            async with conn.transaction():
                if idempotency is None:
                    return await work(conn)
                # Held until commit: a retry arriving meanwhile, on any replica,
                # finds the lock taken and is told the first is still running.
                if not await conn.fetchval(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0))",
                    tenant,
                    idempotency.key,
                ):
                    raise IdempotencyInFlightError(f"request {idempotency.key!r} is still running")
                row = await conn.fetchrow(
                    "SELECT fingerprint, result FROM idempotency_keys "
                    "WHERE tenant = $1 AND key = $2 AND expires_at > now()",
                    tenant,
                    idempotency.key,
                )
                if row is not None:
                    if row["fingerprint"] != idempotency.fingerprint:
                        raise IdempotencyMismatchError(
                            f"idempotency key {idempotency.key!r} was used for a different request"
                        )
                    return decode(row["result"])
                result = await work(conn)
                await conn.execute(
                    """
                    INSERT INTO idempotency_keys (tenant, key, fingerprint, result, expires_at)
                    VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
                    ON CONFLICT (tenant, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                        result = excluded.result, expires_at = excluded.expires_at
                    """,
                    tenant,
                    idempotency.key,
                    idempotency.fingerprint,
                    encode(result),
                    idempotency.ttl,
                )
                return result

        return await self._run(transaction)

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

        async def work(conn: Connection) -> AppendResult:
            await _purge_expired(conn, tenant, session_id)
            if expected_revision is not None:
                current = await _locked_revision(conn, tenant, session_id)
                check_revision(expected_revision, current)
            # The upsert locks the session row until commit: concurrent appends
            # to this session queue here, so each gets a contiguous range.
            row = await conn.fetchrow(
                """
                INSERT INTO sessions AS s (tenant, session_id, created_at, updated_at,
                                           item_count, last_seq, revision, ttl_seconds,
                                           expires_at)
                VALUES ($1, $2, now(), now(), $3, $3, nextval('session_revisions'), $4::float8,
                        CASE WHEN coalesce($4::float8, $5::float8) > 0
                             THEN now() + make_interval(secs => coalesce($4::float8, $5::float8))
                        END)
                ON CONFLICT (tenant, session_id) DO UPDATE SET
                    item_count = s.item_count + excluded.item_count,
                    last_seq = s.last_seq + excluded.item_count,
                    updated_at = clock_timestamp(),
                    revision = excluded.revision,
                    ttl_seconds = coalesce(excluded.ttl_seconds, s.ttl_seconds),
                    expires_at = CASE
                        WHEN coalesce(excluded.ttl_seconds, s.ttl_seconds, $5::float8) > 0
                        THEN clock_timestamp() + make_interval(
                            secs => coalesce(excluded.ttl_seconds, s.ttl_seconds, $5::float8))
                    END
                RETURNING id, last_seq, item_count, revision, (xmax = 0) AS created
                """,
                tenant,
                session_id,
                count,
                ttl,
                self._default_ttl,
            )
            assert row is not None
            if expected_revision == 0 and not row["created"]:
                # Someone created the session between our look and our insert.
                raise PreconditionFailedError(current=None)
            if max_items is not None and row["item_count"] > max_items:
                # Raising rolls the upsert back with the transaction.
                raise SessionFullError(
                    limit=max_items, count=row["item_count"] - count, adding=count
                )
            first_seq = row["last_seq"] - count + 1
            if metadata is not None and row["created"]:
                await conn.execute(
                    "UPDATE sessions SET metadata = $2 WHERE id = $1", row["id"], metadata
                )
                await store_labels(conn, tenant, row["id"], metadata)
            await conn.execute(
                """
                INSERT INTO items (session, seq, body)
                SELECT $1, $2 + ordinality - 1, body
                FROM unnest($3::text[]) WITH ORDINALITY AS batch(body, ordinality)
                """,
                row["id"],
                first_seq,
                list(items),
            )
            return AppendResult(
                count=count,
                first_seq=first_seq,
                last_seq=row["last_seq"],
                revision=row["revision"],
            )

        return await self._write(tenant, idempotency, work, encode_append, decode_append)

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> str | None:
        async def work(conn: Connection) -> str | None:
            await _purge_expired(conn, tenant, session_id)
            # Lock first, in its own statement: the next statement then sees
            # every pop and append committed while we waited for the lock.
            row = await conn.fetchrow(
                "SELECT id, revision FROM sessions "
                "WHERE tenant = $1 AND session_id = $2 FOR UPDATE",
                tenant,
                session_id,
            )
            check_revision(expected_revision, row["revision"] if row else 0)
            if row is None:
                return None
            rowid = row["id"]
            body: str | None = await conn.fetchval(
                """
                WITH popped AS (
                    DELETE FROM items
                    WHERE session = $1
                      AND seq = (SELECT max(seq) FROM items WHERE session = $1)
                    RETURNING body
                ), counted AS (
                    UPDATE sessions SET item_count = item_count - 1,
                        updated_at = clock_timestamp(),
                        revision = nextval('session_revisions'),
                        expires_at = CASE WHEN coalesce(ttl_seconds, $2::float8) > 0
                            THEN clock_timestamp()
                                 + make_interval(secs => coalesce(ttl_seconds, $2::float8))
                        END
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM popped)
                )
                SELECT body FROM popped
                """,
                rowid,
                self._default_ttl,
            )
            return body

        return await self._write(tenant, idempotency, work, encode_pop, decode_pop)

    async def sweep(self) -> int:
        async def work(conn: Connection) -> int:
            async with conn.transaction():
                gone = [
                    row["id"]
                    for row in await conn.fetch(
                        "DELETE FROM sessions WHERE expires_at <= now() RETURNING id"
                    )
                ]
                await conn.execute("DELETE FROM items WHERE session = ANY($1::bigint[])", gone)
                status = await conn.execute(
                    "DELETE FROM idempotency_keys WHERE expires_at <= now()"
                )
            return len(gone) + int(status.split()[-1])

        return await self._run(work)

    async def clear(
        self, tenant: str, session_id: str, *, expected_revision: int | None = None
    ) -> None:
        async def work(conn: Connection) -> None:
            async with conn.transaction():
                await _purge_expired(conn, tenant, session_id)
                if expected_revision is not None:
                    current = await _locked_revision(conn, tenant, session_id)
                    check_revision(expected_revision, current)
                rowid = await conn.fetchval(
                    "DELETE FROM sessions WHERE tenant = $1 AND session_id = $2 RETURNING id",
                    tenant,
                    session_id,
                )
                if rowid is not None:
                    # A separate statement, so it sees items committed by an append
                    # that held the row lock while the DELETE above waited.
                    await conn.execute("DELETE FROM items WHERE session = $1", rowid)

        await self._run(work)

    async def read(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        after: int | None = None,
        before: int | None = None,
    ) -> ItemPage:
        if limit == 0:
            return EMPTY_PAGE
        forward, fetch = read_shape(limit, after)
        params = [value for value in (after, before, fetch) if value is not None]
        sql = _read_sql(after is not None, before is not None, forward, fetch is not None)

        async def work(conn: Connection) -> list[asyncpg.Record]:
            return list(await conn.fetch(sql, tenant, session_id, *params))

        return page_from_rows(await self._run(work), limit, forward)

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
        self, tenant: str, *, limit: int, cursor: int | None = None
    ) -> SessionPage:
        async def work(conn: Connection) -> list[asyncpg.Record]:
            return list(
                await conn.fetch(
                    f"""
                    SELECT {_SESSION_COLUMNS} FROM sessions
                    WHERE tenant = $1 AND ($2::bigint IS NULL OR revision < $2) AND {_LIVE}
                    ORDER BY revision DESC LIMIT $3
                    """,
                    tenant,
                    cursor,
                    limit + 1,
                )
            )

        rows = await self._run(work)
        sessions = [SessionInfo(*row) for row in rows[:limit]]
        next_cursor = sessions[-1].revision if len(rows) > limit else None
        return SessionPage(sessions=sessions, next_cursor=next_cursor)


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
