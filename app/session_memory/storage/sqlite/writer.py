"""The SQLite group-commit writer: the one connection that writes a database file.

Ownership rule: the writer's connection is an ``OwnedConnection``: made, used and
closed only on the writer's own thread (sqlite3 refuses any other), and nothing else
writes the file. Every write is a function of that connection, submitted from the
event loop; the writer runs all the writes waiting (up to ``max_group_ops``) in one
transaction and commits once, so concurrent requests share one fsync (``synchronous
= FULL``: a write's future is answered only after its COMMIT returned). One write that
fails spoils only itself: each write runs under its own savepoint, so a refusal (a
stale If-Match, an idempotency mismatch, a full session) rolls back that write alone
and the group still commits once. (The model: aiosqlite's ``Connection``, one thread
per connection with calls queued to it; datasette's one write thread per database.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError, StoreUnavailableError
from .connection import OwnedConnection, translate

__all__ = ["GroupCommitWriter", "Write"]

T = TypeVar("T")
# One write: a function of the writer's connection.
Write = Callable[[sqlite3.Connection], Any]


@dataclass
class _WriteOp:
    """One write: a function run on the writer's connection inside a group's transaction."""

    run: Write
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _settle(group: list[_WriteOp], done: asyncio.Future[list[tuple[bool, Any]]]) -> None:
    """Hand each op of a committed (or failed) group its outcome."""
    if done.cancelled() or done.exception() is not None:
        error = StoreError("SQLite: the write group did not run")
        outcomes: list[tuple[bool, Any]] = [(False, error)] * len(group)
    else:
        outcomes = done.result()
    for op, (ok, value) in zip(group, outcomes, strict=True):
        if op.future.done():
            continue
        if ok:
            op.future.set_result(value)
        else:
            op.future.set_exception(translate(value))


class GroupCommitWriter:
    """One thread, one connection, one queue of writes; see the module's ownership rule."""

    def __init__(self, path: Path, *, busy_timeout_ms: int, max_group_ops: int) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._max_group_ops = max_group_ops
        self._owner = OwnedConnection("sqlite-writer")
        self._queue: asyncio.Queue[_WriteOp | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Transactions committed: one per group, so tests can count fsyncs.
        self.commits = 0

    async def open(self) -> None:
        """Start the thread, make the connection on it, and start taking writes."""
        await self._owner.open(self.path, self._busy_timeout_ms)
        self._task = asyncio.create_task(self._loop(), name="sqlite-writer")

    async def close(self) -> None:
        """Commit every write already submitted, then close the connection on its thread."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None
        await self._owner.close()

    def submit(self, run: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``run``; the future holds its result once its group has committed.

        Await it shielded: a caller that goes away must not cancel a queued write.
        """
        if self._task is None:
            raise StoreUnavailableError("the store is not open")
        op = _WriteOp(run)
        self._queue.put_nowait(op)
        return op.future

    async def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            # One turn of the loop first: requests whose bodies arrived in the same
            # read as this one's are parsed and queued by then, and share its commit
            # instead of waiting a whole commit for the next group.
            await asyncio.sleep(0)
            group = [first]
            while len(group) < self._max_group_ops and not self._queue.empty():
                op = self._queue.get_nowait()
                if op is None:
                    stopping = True
                    break
                group.append(op)
            commit = self._owner.run(functools.partial(self._commit, [op.run for op in group]))
            await asyncio.wait([commit])
            _settle(group, commit)

    def _commit(self, runs: list[Write], conn: sqlite3.Connection) -> list[tuple[bool, Any]]:
        """On the writer's thread: run every write in one transaction, then commit once.

        Each write runs under a savepoint: one that raises is rolled back to it and
        fails alone, and the others still share the group's single commit (and fsync).
        Only a failure of the transaction itself (BEGIN, COMMIT, a savepoint that cannot
        be rolled back to) fails the whole group.
        """
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for run in runs:
                conn.execute("SAVEPOINT write")
                try:
                    outcomes.append((True, run(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO write")
                    outcomes.append((False, exc))
                conn.execute("RELEASE write")
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(False, exc)] * len(runs)
        self.commits += 1
        return outcomes
