"""A fork is bounded: what one fork may copy, copied in steps that let other writes in
(SQLite), and counted against the tenant's session limit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest
from session_memory.config import Settings
from session_memory.observability import Metrics
from session_memory.problems import InvalidInput, as_problem
from session_memory.storage import (
    ForkTooLargeError,
    HistoryStore,
    Idempotency,
    IdempotencyInFlightError,
    SessionMissingError,
    TooManySessionsError,
    store_from_url,
)
from session_memory.storage.sqlite import SQLiteStore

T = "tenant-a"


def item(n: int, pad: int = 0) -> str:
    return json.dumps({"n": n, "pad": "x" * pad})


def numbers(texts: list[str]) -> list[int]:
    return [json.loads(text)["n"] for text in texts]


@pytest.fixture
async def bounded(database_url: str) -> AsyncIterator[HistoryStore]:
    """A store whose forks may copy at most 5 items and 1000 bytes of them."""
    settings = Settings(database_url=database_url, max_fork_items=5, max_fork_bytes=1000)
    store = store_from_url(database_url, settings)
    await store.open()
    try:
        yield cast(HistoryStore, store)
    finally:
        await store.close()


def test_forks_are_bounded_by_default() -> None:
    settings = Settings()
    assert settings.max_fork_items == 10_000
    assert settings.max_fork_bytes == 32 * 1024 * 1024


async def test_a_fork_of_more_items_than_allowed_makes_nothing(bounded: HistoryStore) -> None:
    await bounded.append(T, "src", [item(n) for n in range(1, 8)])
    with pytest.raises(ForkTooLargeError) as caught:
        await bounded.fork(T, "src", "copy")
    assert (caught.value.what, caught.value.limit, caught.value.size) == ("items", 5, 7)
    assert await bounded.get_session(T, "copy") is None
    # Through an earlier seq it is within the bound.
    made = await bounded.fork(T, "src", "copy", through_seq=5)
    assert made.count == 5
    assert numbers((await bounded.read(T, "copy")).items) == [1, 2, 3, 4, 5]


async def test_a_fork_of_more_bytes_than_allowed_makes_nothing(bounded: HistoryStore) -> None:
    await bounded.append(T, "src", [item(n, pad=300) for n in range(1, 5)])  # ~320 B each
    with pytest.raises(ForkTooLargeError) as caught:
        await bounded.fork(T, "src", "copy")
    assert (caught.value.what, caught.value.limit) == ("bytes", 1000)
    assert caught.value.size > 1000
    assert await bounded.get_session(T, "copy") is None
    assert (await bounded.fork(T, "src", "copy", through_seq=3)).count == 3


def test_a_fork_past_its_bound_is_a_422_naming_the_limit() -> None:
    for what in ("items", "bytes"):
        problem = as_problem(ForkTooLargeError(what=what, limit=5, size=7), Metrics(), "test")
        assert isinstance(problem, InvalidInput)
        assert problem.status == 422
        assert problem.extra == {"limit": f"max_fork_{what}", "max": 5}
        assert "Nothing was made" in problem.detail


async def test_a_fork_counts_against_the_tenant_session_limit(database_url: str) -> None:
    store = cast(
        HistoryStore,
        store_from_url(
            database_url, Settings(database_url=database_url, max_sessions_per_tenant=2)
        ),
    )
    await store.open()
    try:
        await store.append(T, "a", [item(1)])
        await store.fork(T, "a", "b")
        with pytest.raises(TooManySessionsError):
            await store.fork(T, "a", "c")
        assert await store.get_session(T, "c") is None
        await store.append("tenant-b", "x", [item(1)])
        await store.fork("tenant-b", "x", "y")
        assert await store.get_session("tenant-b", "y") is not None
    finally:
        await store.close()


# -- SQLite: the copy runs in steps ---------------------------------------------------


@pytest.fixture
async def stepping(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A SQLite store that copies 20 items per step."""
    store = SQLiteStore(tmp_path / "s.db", fork_step_items=20, max_sessions_per_tenant=3)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


SOURCE = [item(n) for n in range(1, 2001)]


async def test_other_writes_run_while_a_big_fork_copies(stepping: SQLiteStore) -> None:
    await stepping.append(T, "src", SOURCE)
    commits = stepping.group_commits
    fork = asyncio.ensure_future(stepping.fork(T, "src", "copy"))
    appended = 0
    while not fork.done():
        await stepping.append("tenant-b", "busy", [item(appended)])
        appended += 1
        # The copy is seen nowhere until its last write, and then whole.
        info = await stepping.get_session(T, "copy")
        assert info is None or info.item_count == len(SOURCE)
        page = await stepping.read(T, "copy", limit=5000)
        assert page.items in ([], SOURCE)
    result = await fork
    assert (result.count, result.first_seq, result.last_seq) == (2000, 1, 2000)
    assert (await stepping.read(T, "copy")).items == SOURCE
    # A step per 20 items, each its own write; the other tenant's appends ran between.
    assert stepping.group_commits - commits >= 100
    assert appended >= 20


async def test_a_fork_copies_the_source_as_it_was_whatever_happens_to_it(
    stepping: SQLiteStore,
) -> None:
    await stepping.append(T, "src", SOURCE)
    fork = asyncio.ensure_future(stepping.fork(T, "src", "copy"))
    await asyncio.sleep(0)
    await stepping.append(T, "src", [item(9999)])  # above what the fork copies
    popped = await stepping.pop(T, "src")  # that one: nothing the copy needs
    assert popped == item(9999)
    await stepping.replace(T, "src", [item(7777)], from_seq=1500)  # the copy needs these
    result = await fork
    copy = (await stepping.read(T, "copy")).items
    # The source as it was at one moment: before the replace, or after it.
    assert copy in (SOURCE, [*SOURCE[:1499], item(7777)])
    assert result.count == len(copy)
    assert _staged(stepping) == 0


async def test_a_fork_whose_source_is_cleared_meanwhile_finds_it_missing(
    stepping: SQLiteStore,
) -> None:
    await stepping.append(T, "src", SOURCE)
    fork = asyncio.ensure_future(stepping.fork(T, "src", "copy"))
    await asyncio.sleep(0)
    await stepping.clear(T, "src")
    with pytest.raises(SessionMissingError):
        await fork
    assert await stepping.get_session(T, "copy") is None
    await stepping.sweep()
    assert _staged(stepping) == 0
    assert _items(stepping) == 0


async def test_the_session_limit_holds_when_a_fork_finishes(stepping: SQLiteStore) -> None:
    await stepping.append(T, "src", SOURCE)
    await stepping.append(T, "two", [item(1)])
    # Two forks race for the tenant's last place (three sessions): one gets it.
    forks = [asyncio.ensure_future(stepping.fork(T, "src", name)) for name in ("b", "c")]
    outcomes = await asyncio.gather(*forks, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, TooManySessionsError)]
    assert len(refused) == 1, outcomes
    made = [name for name in ("b", "c") if await stepping.get_session(T, name) is not None]
    assert len(made) == 1
    await stepping.sweep()
    assert _staged(stepping) == 0
    assert _items(stepping) == 2 * len(SOURCE) + 1


async def test_a_keyed_fork_in_steps_is_in_flight_then_replays(stepping: SQLiteStore) -> None:
    await stepping.append(T, "src", SOURCE)
    key = Idempotency(key="fork-1", fingerprint="f", ttl=60)
    first = asyncio.ensure_future(stepping.fork(T, "src", "copy", idempotency=key))
    await asyncio.sleep(0)
    with pytest.raises(IdempotencyInFlightError):
        await stepping.fork(T, "src", "copy", idempotency=key)
    made = await first
    assert await stepping.fork(T, "src", "copy", idempotency=key) == made


async def test_a_copy_left_by_a_stopped_process_is_retired_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    await store.append(T, "src", [item(1)])
    await store.close()
    with sqlite3.connect(path) as conn:  # what a process stopped mid-copy leaves
        conn.execute("INSERT INTO fork_copies (id, source, through) VALUES (90, 1, 3)")
        conn.executemany(
            "INSERT INTO items (session, seq, body) VALUES (90, ?, ?)",
            [(n, item(n)) for n in (1, 2)],
        )
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.sweep()
        assert _staged(store) == 0
        assert _items(store) == 1
        made = await store.append(T, "new", [item(2)])
        assert made.first_seq == 1
        assert (await store.read(T, "new")).items == [item(2)]
    finally:
        await store.close()


def _staged(store: SQLiteStore) -> int:
    with sqlite3.connect(store.path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM fork_copies").fetchone()
    return int(count)


def _items(store: SQLiteStore) -> int:
    with sqlite3.connect(store.path) as conn:
        (count,) = conn.execute("SELECT count(*) FROM items").fetchone()
    return int(count)
