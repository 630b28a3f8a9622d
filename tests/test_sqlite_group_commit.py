"""SQLite's group commit: a write refused inside a group costs only itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from session_memory.storage import (
    Idempotency,
    IdempotencyMismatchError,
    PreconditionFailedError,
    SessionFullError,
)
from session_memory.storage.sqlite import SQLiteStore
from session_memory.storage.sqlite.writer import GroupCommitWriter

T = "tenant-a"


def item(n: int) -> str:
    return json.dumps({"n": n})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(tmp_path / "store.db")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_refused_writes_in_a_group_leave_the_others_in_one_commit(
    store: SQLiteStore,
) -> None:
    guarded = await store.append(T, "guarded", [item(0)])
    assert guarded.revision is not None
    await store.append(T, "full", [item(0)])
    await store.append(T, "keyed", [item(0)], idempotency=Idempotency("k", "f1", 60))
    await store.append(T, "popped", [item(0), item(1)])
    before = store.group_commits

    # Every write is queued before the writer next runs, so they form one group.
    outcomes = await asyncio.gather(
        store.append(T, "a", [item(1)]),
        store.append(T, "guarded", [item(1)], expected_revision=guarded.revision + 1),
        store.append("tenant-b", "a", [item(2)]),
        store.append(T, "keyed", [item(9)], idempotency=Idempotency("k", "f2", 60)),
        store.pop(T, "popped"),
        store.append(T, "full", [item(1)], max_items=1),
        store.clear(T, "guarded", expected_revision=guarded.revision + 1),
        store.append(T, "b", [item(3)]),
        return_exceptions=True,
    )

    assert store.group_commits == before + 1
    assert [type(o).__name__ for o in outcomes] == [
        "AppendResult",
        PreconditionFailedError.__name__,
        "AppendResult",
        IdempotencyMismatchError.__name__,
        "str",
        SessionFullError.__name__,
        PreconditionFailedError.__name__,
        "AppendResult",
    ]
    assert (await store.read(T, "a")).items == [item(1)]
    assert (await store.read("tenant-b", "a")).items == [item(2)]
    assert (await store.read(T, "b")).items == [item(3)]
    assert (await store.read(T, "popped")).items == [item(0)]
    for untouched in ("guarded", "keyed", "full"):
        assert (await store.read(T, untouched)).items == [item(0)]


async def test_an_append_during_a_long_sweep_waits_for_one_batch_only(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "sweep.db", sweep_batch_rows=100, clock=lambda: now[0])
    await store.open()
    try:
        await store.append(T, "big", [item(n) for n in range(1000)], ttl=10)
        now[0] += 60
        start = store.group_commits
        committed_when_appended: list[int] = []

        async def append() -> None:
            await store.append(T, "other", [item(1)])
            committed_when_appended.append(store.group_commits - start)

        # The sweep queues its first batch, then the append queues behind it.
        swept, _ = await asyncio.gather(store.sweep(), append())
        assert swept.items == 1000
        assert swept.batches >= 10
        assert store.group_commits - start == swept.batches  # the append shared a batch's
        assert committed_when_appended == [1]  # done after the first batch, not the last
    finally:
        await store.close()


async def test_a_write_queued_just_after_the_first_joins_its_group(tmp_path: Path) -> None:
    """The writer gives the loop one turn before it takes its group.

    The second write is queued by a callback that runs after the writer has been
    woken by the first: under load, the next request's handler. It still shares
    the first write's commit (and fsync) instead of waiting for a commit of its own.
    """
    writer = GroupCommitWriter(tmp_path / "w.db", busy_timeout_ms=1000, max_group_ops=512)
    await writer.open()
    try:
        await writer.submit(lambda conn: conn.execute("CREATE TABLE t (n INTEGER)"))
        before = writer.commits
        loop = asyncio.get_running_loop()
        futures = [writer.submit(lambda conn: conn.execute("INSERT INTO t VALUES (1)").rowcount)]
        loop.call_soon(
            lambda: futures.append(
                writer.submit(lambda conn: conn.execute("INSERT INTO t VALUES (2)").rowcount)
            )
        )
        await asyncio.sleep(0)
        assert await asyncio.gather(*futures) == [1, 1]
        assert writer.commits == before + 1
    finally:
        await writer.close()
