"""The PostgreSQL store: several server replicas share one database.

A thin ``HistoryStore``: it owns the connection pool and its timeouts, runs each
operation (``writes``, ``reads``) on a pooled connection, and turns the driver's
errors into ``StoreError``. Every write is one call of a PL/pgSQL function (one
round trip; the sweep excepted), every read one statement. Idempotency keys in
flight are held by transaction-scoped advisory locks inside those functions, so a
retry through any replica is told the first is still running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from ...config import Database, Settings
from ..contract import ChangeFeed, ChangeSink
from ..errors import StoreError, StoreUnavailableError
from ..records import (
    EMPTY_PAGE,
    SWEEP_BATCH_ROWS,
    AppendResult,
    ForkLimits,
    Idempotency,
    ItemPage,
    SeqPage,
    SessionBackup,
    SessionInfo,
    SessionPage,
    Swept,
)
from ..tails import ReadMark, TailPage
from . import reads, restore, writes
from .driver import UNAVAILABLE, Connection, Pool, PostgresError, create_pool
from .leases import PostgresLeases
from .listen import PostgresListener
from .migrations import migrate

__all__ = ["PostgresStore"]

T = TypeVar("T")


async def _keep_session(conn: Connection) -> None:
    """Release a connection to the pool without asyncpg's reset query.

    That query (unlock advisory locks, close cursors, UNLISTEN, RESET ALL) would be a
    second round trip on every operation. The store leaves no session state behind:
    its locks are transaction-scoped, it declares no cursors outside a transaction,
    listens to nothing and sets nothing; asyncpg still rolls back an open transaction.
    """


class PostgresStore:
    """A ``HistoryStore`` on PostgreSQL through an asyncpg connection pool."""

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
        fork_limits: ForkLimits | None = None,
    ) -> None:
        self.dsn = dsn
        self._rules = writes.Rules(
            default_ttl=session_ttl,
            max_sessions=max_sessions_per_tenant,
            batch_rows=sweep_batch_rows,
            fork=fork_limits or ForkLimits(),
        )
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._pool: Pool | None = None
        self.leases = PostgresLeases(self._run)

    @classmethod
    def from_database(cls, database: Database, settings: Settings) -> PostgresStore:
        assert database.postgres_dsn is not None
        return cls(
            database.postgres_dsn,
            pool_size=settings.pg_pool_size,
            connect_timeout=settings.pg_connect_timeout,
            statement_timeout=settings.pg_statement_timeout,
            session_ttl=settings.session_ttl_seconds,
            max_sessions_per_tenant=settings.max_sessions_per_tenant,
            sweep_batch_rows=settings.sweep_batch_rows,
            fork_limits=ForkLimits(settings.max_fork_items, settings.max_fork_bytes),
        )

    async def open(self) -> None:
        try:
            self._pool = await create_pool(
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
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL: cannot connect: {exc}") from exc
        async with self._pool.acquire() as conn:
            await migrate(conn)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def change_feed(self, sink: ChangeSink) -> ChangeFeed | None:
        """A listener (not started) on this store's database: writes of every replica."""
        return PostgresListener(self.dsn, sink)

    async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection, mapping outages to StoreUnavailableError."""
        if self._pool is None:
            raise StoreUnavailableError("the store is not open")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout) as conn:
                return await work(conn)
        except UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
        except PostgresError as exc:
            raise StoreError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        await self._run(reads.ping)

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
        run_lease: int | None = None,
    ) -> AppendResult:
        if not items:
            return AppendResult(count=0, first_seq=None, last_seq=None)
        return await self._run(
            lambda conn: writes.append(
                conn,
                self._rules,
                tenant,
                session_id,
                items,
                max_items=max_items,
                idempotency=idempotency,
                expected_revision=expected_revision,
                ttl=ttl,
                metadata=metadata,
                run_lease=run_lease,
            )
        )

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> str | None:
        return await self._run(
            lambda conn: writes.pop(
                conn,
                self._rules,
                tenant,
                session_id,
                idempotency=idempotency,
                expected_revision=expected_revision,
                run_lease=run_lease,
            )
        )

    async def clear(
        self,
        tenant: str,
        session_id: str,
        *,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> None:
        await self._run(
            lambda conn: writes.clear(
                conn,
                self._rules,
                tenant,
                session_id,
                expected_revision=expected_revision,
                run_lease=run_lease,
            )
        )

    async def sweep(self) -> Swept:
        swept = Swept()
        rows = self._rules.batch_rows
        while True:
            batch = await self._run(lambda conn: writes.sweep_batch(conn, rows))
            swept += batch
            if max(batch.sessions, batch.items, batch.records) < rows:
                return swept

    async def replace(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[str],
        *,
        from_seq: int | None = None,
        max_items: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        ttl: float | None = None,
        run_lease: int | None = None,
    ) -> AppendResult:
        return await self._run(
            lambda conn: writes.replace(
                conn,
                self._rules,
                tenant,
                session_id,
                items,
                from_seq=from_seq,
                max_items=max_items,
                idempotency=idempotency,
                expected_revision=expected_revision,
                ttl=ttl,
                run_lease=run_lease,
            )
        )

    async def fork(
        self,
        tenant: str,
        session_id: str,
        target_id: str,
        *,
        through_seq: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> AppendResult:
        return await self._run(
            lambda conn: writes.fork(
                conn,
                self._rules,
                tenant,
                session_id,
                target_id,
                through_seq=through_seq,
                idempotency=idempotency,
                expected_revision=expected_revision,
                run_lease=run_lease,
            )
        )

    async def restore(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[tuple[int, str]],
        backup: SessionBackup,
        *,
        honour_lease: bool = True,
    ) -> int:
        return await self._run(
            lambda conn: restore.restore(
                conn, self._rules, tenant, session_id, items, backup, honour_lease=honour_lease
            )
        )

    async def patch_metadata(
        self,
        tenant: str,
        session_id: str,
        patch: str,
        *,
        max_bytes: int,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> SessionInfo:
        return await self._run(
            lambda conn: writes.patch_metadata(
                conn,
                self._rules,
                tenant,
                session_id,
                patch,
                max_bytes=max_bytes,
                expected_revision=expected_revision,
                run_lease=run_lease,
            )
        )

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
        return await self._run(
            lambda conn: reads.read(
                conn,
                tenant,
                session_id,
                limit=limit,
                after=after,
                before=before,
                max_bytes=max_bytes,
            )
        )

    async def read_since(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        known: ReadMark | None = None,
        max_bytes: int | None = None,
    ) -> TailPage:
        return await self._run(
            lambda conn: reads.read_since(
                conn, tenant, session_id, limit=limit, known=known, max_bytes=max_bytes
            )
        )

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> SeqPage:
        return await self._run(
            lambda conn: reads.read_seqs(
                conn, tenant, session_id, after=after, limit=limit, max_bytes=max_bytes
            )
        )

    async def last_seq(self, tenant: str, session_id: str) -> int:
        return await self._run(lambda conn: reads.last_seq(conn, tenant, session_id))

    async def backup(self, tenant: str, session_id: str) -> SessionBackup | None:
        return await self._run(lambda conn: reads.backup(conn, tenant, session_id))

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        return await self._run(lambda conn: reads.get_session(conn, tenant, session_id))

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        return await self._run(lambda conn: reads.all_sessions(conn, after=after, limit=limit))

    async def count_sessions(self) -> int:
        return await self._run(reads.count_sessions)

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        return await self.find_sessions(tenant, limit=limit, cursor=cursor)

    async def find_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> SessionPage:
        return await self._run(
            lambda conn: reads.find_sessions(
                conn, tenant, limit=limit, cursor=cursor, metadata=metadata, prefix=prefix
            )
        )
