"""The SQLite store: the embedded default, a ``HistoryStore`` on one file.

Thin: it owns the connections, hands each write (``writes``) to the group-commit
writer and each read (``reads``) to a connection, and keeps the idempotency keys in
flight. One writer connection owns every write (``writer.GroupCommitWriter``): writes
queue up and the writer runs all that are waiting in one transaction (group commit),
so concurrent requests share one fsync while each batch stays atomic and contiguous.
Reads go to read-only connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ...config import Database, Settings
from ..contract import ChangeFeed, ChangeSink
from ..errors import IdempotencyInFlightError
from ..paging import page_from_rows, parse_session_cursor, read_shape
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
    decode_append,
    decode_pop,
    encode_append,
    encode_pop,
)
from ..tails import ReadMark, TailPage
from . import forks, reads, restore, writes
from .connection import ReaderPool, connect
from .leases import Fence, SQLiteLeases, fenced
from .schema import migrate
from .writer import GroupCommitWriter, Write

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_APPEND_CODEC: writes.Codec[AppendResult] = (encode_append, decode_append)
_POP_CODEC: writes.Codec[str | None] = (encode_pop, decode_pop)


class SQLiteStore:
    """A ``HistoryStore`` on one SQLite file in WAL mode with ``synchronous=FULL``.

    Which connection does what (one rule each; see ``connection`` for ownership):

    - every write: the ``GroupCommitWriter``'s connection, on its own thread;
    - small reads (``limit`` up to ``inline_read_limit`` and items up to
      ``inline_read_bytes``): the event loop's own read-only connection, made and
      used on the loop's thread (a WAL read of a few rows takes tens of microseconds,
      less than the hop to a thread; it never waits: when busy, or once the rows pass
      the byte bound, the pool below answers; so the loop reads at most that bound
      plus one item);
    - every other read: a pool of read-only connections, each on its own thread;
    - at open only: one aiosqlite connection sets WAL mode and migrates.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        readers: int = 2,
        max_group_ops: int = 512,
        busy_timeout_ms: int = 5000,
        inline_read_limit: int = 100,
        inline_read_bytes: int = 256 * 1024,
        session_ttl: float = 0,
        max_sessions_per_tenant: int = 0,
        sweep_batch_rows: int = SWEEP_BATCH_ROWS,
        fork_limits: ForkLimits | None = None,
        fork_step_items: int = 1000,
        fork_step_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        # What expiry is measured by: wall-clock seconds; tests pass one they move.
        self._clock = clock
        self._policy = writes.Policy(
            clock=clock,
            default_ttl=session_ttl,
            max_sessions=max_sessions_per_tenant,
            batch_rows=sweep_batch_rows,
            fork=fork_limits or ForkLimits(),
            fork_step_items=fork_step_items,
            fork_step_bytes=fork_step_bytes,
        )
        self._busy_timeout_ms = busy_timeout_ms
        self._inline_read_limit = inline_read_limit
        self._inline_read_bytes = inline_read_bytes
        self._writer = GroupCommitWriter(
            self.path, busy_timeout_ms=busy_timeout_ms, max_group_ops=max_group_ops
        )
        self._readers = ReaderPool(readers)
        self._inline: sqlite3.Connection | None = None
        self._in_flight: set[tuple[str, str]] = set()
        # Forks copying in steps: close waits for them, so none is cut off halfway.
        self._forks: set[asyncio.Task[AppendResult]] = set()
        self.leases = SQLiteLeases(self._submit, self._readers.run, clock)

    @classmethod
    def from_database(cls, database: Database, settings: Settings) -> SQLiteStore:
        assert database.sqlite_path is not None
        return cls(
            database.sqlite_path,
            readers=settings.sqlite_readers,
            session_ttl=settings.session_ttl_seconds,
            max_sessions_per_tenant=settings.max_sessions_per_tenant,
            sweep_batch_rows=settings.sweep_batch_rows,
            fork_limits=ForkLimits(settings.max_fork_items, settings.max_fork_bytes),
        )

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(self.path, isolation_level=None) as conn:
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await migrate(conn)
        await self._writer.open()
        await self._writer.submit(forks.retire_copies)
        # Made here, on the loop's thread, which alone may use it. busy_timeout 0: an
        # inline read must never wait; if busy, it takes the threaded path.
        self._inline = connect(self.path, 0, query_only=True)
        await self._readers.open(self.path, self._busy_timeout_ms)

    async def close(self) -> None:
        if self._forks:
            await asyncio.wait(self._forks)
        await self._writer.close()
        await self._readers.close()
        if self._inline is not None:
            self._inline.close()
            self._inline = None

    async def ping(self) -> None:
        await self._readers.run(reads.ping)

    @property
    def group_commits(self) -> int:
        """Transactions the writer has committed (one fsync each), for tests and metrics."""
        return self._writer.commits

    def change_feed(self, sink: ChangeSink) -> ChangeFeed | None:
        # Every write goes through this process: the services publish them themselves.
        return None

    # -- writes: group commit --------------------------------------------------------

    @contextlib.contextmanager
    def _flying(self, tenant: str, idempotency: Idempotency | None) -> Iterator[None]:
        """Hold the key in flight for the block; refused if it is already."""
        if idempotency is None:
            yield
            return
        flight = (tenant, idempotency.key)
        if flight in self._in_flight:
            raise IdempotencyInFlightError(f"request {idempotency.key!r} is still running")
        self._in_flight.add(flight)
        try:
            yield
        finally:
            self._in_flight.discard(flight)

    async def _submit(
        self,
        run: Callable[[sqlite3.Connection], T],
        *,
        tenant: str = "",
        session_id: str = "",
        idempotency: Idempotency | None = None,
        codec: writes.Codec[T] | None = None,
        fence: Fence | None = None,
    ) -> T:
        # The lease check comes first, in the write's savepoint (a replay is refused too).
        fence_it = functools.partial(fenced, fence=fence, tenant=tenant, session_id=session_id)
        if idempotency is None:
            future = self._writer.submit(fence_it(run))
        else:
            # One process owns the file, so this set sees every request in flight.
            flight = (tenant, idempotency.key)
            if flight in self._in_flight:
                raise IdempotencyInFlightError(f"request {idempotency.key!r} is still running")
            assert codec is not None
            recorded = functools.partial(
                writes.recorded,
                run=run,
                tenant=tenant,
                session_id=session_id,
                idempotency=idempotency,
                codec=codec,
                clock=self._clock,
            )
            future = self._writer.submit(fence_it(recorded))
            self._in_flight.add(flight)
            future.add_done_callback(lambda _: self._in_flight.discard(flight))
        # Shielded: a client that goes away does not cancel a write already queued.
        return await asyncio.shield(future)

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
        run = functools.partial(
            writes.append,
            policy=self._policy,
            tenant=tenant,
            session_id=session_id,
            items=items,
            max_items=max_items,
            expected_revision=expected_revision,
            ttl=ttl,
            metadata=metadata,
        )
        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=_APPEND_CODEC,
            fence=Fence(run_lease, self._clock),
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
        run = functools.partial(
            writes.pop,
            policy=self._policy,
            tenant=tenant,
            session_id=session_id,
            expected_revision=expected_revision,
        )
        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=_POP_CODEC,
            fence=Fence(run_lease, self._clock),
        )

    async def clear(
        self,
        tenant: str,
        session_id: str,
        *,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> None:
        await self._submit(
            functools.partial(
                writes.clear,
                policy=self._policy,
                tenant=tenant,
                session_id=session_id,
                expected_revision=expected_revision,
            ),
            tenant=tenant,
            session_id=session_id,
            fence=Fence(run_lease, self._clock),
        )

    async def sweep(self) -> Swept:
        # One write per batch: writes queued meanwhile run between the batches.
        swept = Swept()
        batch_rows = self._policy.batch_rows
        while True:
            batch = await self._submit(functools.partial(writes.sweep_batch, policy=self._policy))
            swept += batch
            if max(batch.sessions, batch.items, batch.records) < batch_rows:
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
        run = functools.partial(
            writes.replace,
            policy=self._policy,
            tenant=tenant,
            session_id=session_id,
            items=items,
            from_seq=from_seq,
            max_items=max_items,
            expected_revision=expected_revision,
            ttl=ttl,
        )
        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=_APPEND_CODEC,
            fence=Fence(run_lease, self._clock),
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
        start = functools.partial(
            forks.start,
            policy=self._policy,
            tenant=tenant,
            session_id=session_id,
            target_id=target_id,
            through_seq=through_seq,
            expected_revision=expected_revision,
            idempotency=idempotency,
        )
        # The source's lease admits the fork's start and its finish (the copy's steps
        # only read the source).
        fence = functools.partial(
            fenced, fence=Fence(run_lease, self._clock), tenant=tenant, session_id=session_id
        )
        task = asyncio.ensure_future(self._fork(start, tenant, idempotency, fence))
        self._forks.add(task)
        task.add_done_callback(self._forks.discard)
        # Shielded, as every write: a client that goes away does not cut a copy short.
        return await asyncio.shield(task)

    async def _fork(
        self,
        start: Callable[..., AppendResult | forks.Plan],
        tenant: str,
        idempotency: Idempotency | None,
        fence: Callable[[Write], Write],
    ) -> AppendResult:
        with self._flying(tenant, idempotency):
            return await forks.run(self._writer.submit, self._policy, start, idempotency, fence)

    async def restore(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[tuple[int, str]],
        backup: SessionBackup,
        *,
        honour_lease: bool = True,
    ) -> int:
        return await self._submit(
            functools.partial(
                restore.restore,
                policy=self._policy,
                tenant=tenant,
                session_id=session_id,
                items=items,
                backup=backup,
            ),
            tenant=tenant,
            session_id=session_id,
            fence=Fence(None, self._clock) if honour_lease else None,
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
        return await self._submit(
            functools.partial(
                writes.patch_metadata,
                policy=self._policy,
                tenant=tenant,
                session_id=session_id,
                patch=patch,
                max_bytes=max_bytes,
                expected_revision=expected_revision,
            ),
            tenant=tenant,
            session_id=session_id,
            fence=Fence(run_lease, self._clock),
        )

    # -- reads -----------------------------------------------------------------------

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
        params: list[Any] = [value for value in (after, before) if value is not None]
        params += [tenant, session_id, self._clock()]
        if fetch is not None:
            params.append(fetch)
        sql = reads.items_sql(after is not None, before is not None, forward, fetch is not None)
        rows = None
        if limit is not None and limit <= self._inline_read_limit:
            rows = self._fetch_inline(sql, params, max_bytes)
        if rows is None:
            rows = await self._readers.run(
                functools.partial(reads.fetch_rows, sql=sql, params=params, max_bytes=max_bytes)
            )
            assert rows is not None  # nothing to give up without a budget
        return page_from_rows(rows, limit, forward, max_bytes)

    def _fetch_inline(self, sql: str, params: Sequence[Any], max_bytes: int | None) -> Any:
        """A small read's rows, on the event loop; None when it is busy or not small.

        A read is small by its size, not only its count: past ``inline_read_bytes``
        it is given up here (having read at most that plus one item) and goes to a
        threaded reader.
        """
        if self._inline is None:
            return None
        try:
            return reads.fetch_rows(
                self._inline, sql, params, max_bytes, give_up=self._inline_read_bytes
            )
        except sqlite3.OperationalError:
            return None  # busy (a checkpoint or recovery): the threaded path waits

    async def read_since(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        known: ReadMark | None = None,
        max_bytes: int | None = None,
    ) -> TailPage:
        params = reads.since_params(tenant, session_id, limit=limit, known=known, now=self._clock())
        run = functools.partial(
            reads.read_since, params=params, limit=limit, known=known, max_bytes=max_bytes
        )
        small = limit is not None and limit <= self._inline_read_limit
        if self._inline is not None and (known is not None or small):
            # On the loop, as a small read is: what changed since a read is mostly a few
            # items. Past the small read's bounds (a full page), a threaded reader runs it.
            try:
                tail = run(
                    self._inline,
                    give_up=self._inline_read_bytes,
                    give_up_rows=self._inline_read_limit,
                )
            except sqlite3.OperationalError:
                tail = None  # busy (a checkpoint or recovery): the threaded path waits
            if tail is not None:
                return tail
        tail = await self._readers.run(run)
        assert tail is not None  # nothing to give up without a budget
        return tail

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> SeqPage:
        return await self._readers.run(
            functools.partial(
                reads.read_seqs,
                tenant=tenant,
                session_id=session_id,
                after=after,
                limit=limit,
                max_bytes=max_bytes,
                now=self._clock(),
            )
        )

    async def last_seq(self, tenant: str, session_id: str) -> int:
        return await self._readers.run(
            functools.partial(
                reads.last_seq, tenant=tenant, session_id=session_id, now=self._clock()
            )
        )

    async def backup(self, tenant: str, session_id: str) -> SessionBackup | None:
        return await self._readers.run(
            functools.partial(reads.backup, tenant=tenant, session_id=session_id, now=self._clock())
        )

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        return await self._readers.run(
            functools.partial(
                reads.get_session, tenant=tenant, session_id=session_id, now=self._clock()
            )
        )

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
        # Parsed here: a cursor no listing gave out is refused before any read.
        after = None if cursor is None else parse_session_cursor(cursor)
        return await self._readers.run(
            functools.partial(
                reads.session_page,
                tenant=tenant,
                limit=limit,
                after=after,
                labels=list((metadata or {}).items()),
                prefix=prefix,
                now=self._clock(),
            )
        )

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        return await self._readers.run(
            functools.partial(reads.all_sessions, after=after, limit=limit, now=self._clock())
        )

    async def count_sessions(self) -> int:
        return await self._readers.run(functools.partial(reads.count_sessions, now=self._clock()))
