"""The incremental read (``HistoryStore.read_since``), written once and run on every backend.

Each test reads a session, changes it, then reads again with the first read's mark and
checks the answer against a plain read of the same moment: unchanged, appended (only
the new items), or full, and never anything a plain read would not give.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import cast

import pytest
from session_memory.storage import SessionStore
from session_memory.storage.contract import HistoryStore
from session_memory.storage.sqlite import SQLiteStore, sqlite_path_from_url
from session_memory.storage.tails import APPENDED, FULL, UNCHANGED, ReadMark, TailPage

from tests.test_store_contract import Clock

T = "tenant-a"


def item(n: int) -> str:
    return json.dumps({"n": n})


def numbers(texts: list[str]) -> list[int]:
    return [json.loads(text)["n"] for text in texts]


@pytest.fixture
def history(store: SessionStore) -> HistoryStore:
    assert isinstance(store, HistoryStore)
    return cast(HistoryStore, store)


async def read(
    history: HistoryStore,
    known: ReadMark | None,
    limit: int | None = None,
    session_id: str = "s",
    max_bytes: int | None = None,
) -> TailPage:
    return await history.read_since(T, session_id, limit=limit, known=known, max_bytes=max_bytes)


async def agrees_with_a_plain_read(
    history: HistoryStore, tail: TailPage, limit: int | None = None, session_id: str = "s"
) -> None:
    """A full page is exactly the plain read of the latest items; the mark says what it is."""
    plain = await history.read(T, session_id, limit=limit)
    assert tail.mode == FULL
    assert tail.since is None
    assert tail.page == plain
    assert tail.mark.revision == plain.revision
    assert tail.mark.seq == (plain.last_seq or 0)


async def test_first_read_is_a_full_page_with_a_mark(history: HistoryStore) -> None:
    missing = await read(history, None)
    assert (missing.mode, missing.page.items, missing.mark) == (FULL, [], ReadMark(0, 0, 0, 0))
    await history.append(T, "s", [item(n) for n in range(5)])
    tail = await read(history, None, limit=3)
    await agrees_with_a_plain_read(history, tail, limit=3)
    assert (tail.mark.seq, tail.mark.count) == (5, 5)
    assert tail.mark.lineage > 0


async def test_nothing_changed_reads_no_items(history: HistoryStore) -> None:
    await history.append(T, "s", [item(n) for n in range(5)])
    first = await read(history, None)
    again = await read(history, first.mark, limit=2)
    assert (again.mode, again.since, again.page.items) == (UNCHANGED, 5, [])
    assert again.mark == first.mark
    assert again.page.revision == first.page.revision
    # A missing session stays unchanged too (revision 0).
    gone = await read(history, None, session_id="never")
    assert (await read(history, gone.mark, session_id="never")).mode == UNCHANGED


async def test_appends_read_only_the_new_items(history: HistoryStore) -> None:
    await history.append(T, "s", [item(n) for n in range(5)])
    first = await read(history, None)
    await history.append(T, "s", [item(5), item(6)])
    await history.append(T, "s", [item(7)])
    tail = await read(history, first.mark)
    assert (tail.mode, tail.since, numbers(tail.page.items)) == (APPENDED, 5, [5, 6, 7])
    assert (tail.page.first_seq, tail.page.last_seq, tail.page.has_more) == (6, 8, False)
    assert (tail.mark.seq, tail.mark.count) == (8, 8)
    assert tail.mark.revision == (await history.read(T, "s", limit=1)).revision
    # With a limit: the latest of the new items, and has_more when some were left out.
    cut = await read(history, first.mark, limit=2)
    assert (cut.mode, numbers(cut.page.items), cut.page.has_more) == (APPENDED, [6, 7], True)
    assert cut.mark == tail.mark
    # The next read goes on from the new mark.
    assert (await read(history, tail.mark)).mode == UNCHANGED


async def test_a_write_that_adds_no_items_is_appended_nothing(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1)])
    first = await read(history, None)
    await history.patch_metadata(T, "s", '{"k":"v"}', max_bytes=1000)
    tail = await read(history, first.mark)
    assert (tail.mode, tail.since, tail.page.items) == (APPENDED, 1, [])
    assert tail.mark.revision != first.mark.revision
    assert (tail.mark.seq, tail.mark.count) == (1, 1)


@pytest.mark.parametrize("change", ["pop", "pop_then_append", "replace_tail", "replace_all"])
async def test_anything_but_appends_reads_in_full(history: HistoryStore, change: str) -> None:
    await history.append(T, "s", [item(n) for n in range(5)])
    first = await read(history, None)
    if change == "pop":
        await history.pop(T, "s")
    elif change == "pop_then_append":
        # As many items as before, and seqs above the mark's: only the count tells.
        await history.pop(T, "s")
        await history.append(T, "s", [item(9)])
    elif change == "replace_tail":
        await history.replace(T, "s", [item(7), item(8)], from_seq=4)
    else:
        await history.replace(T, "s", [item(n) for n in range(10, 15)])
    await agrees_with_a_plain_read(history, await read(history, first.mark))
    await agrees_with_a_plain_read(history, await read(history, first.mark, limit=2), limit=2)


@pytest.mark.parametrize("recreate", ["append", "fork"])
async def test_a_session_made_again_reads_in_full(history: HistoryStore, recreate: str) -> None:
    # More items than before under the same id, so the counts alone would match.
    await history.append(T, "s", [item(n) for n in range(5)])
    first = await read(history, None)
    await history.clear(T, "s")
    if recreate == "append":
        await history.append(T, "s", [item(n) for n in range(100, 107)])
    else:
        await history.append(T, "source", [item(n) for n in range(100, 107)])
        await history.fork(T, "source", "s")
    tail = await read(history, first.mark)
    await agrees_with_a_plain_read(history, tail)
    assert numbers(tail.page.items) == list(range(100, 107))
    assert tail.mark.lineage != first.mark.lineage or tail.mark.revision > first.mark.revision
    assert (await read(history, tail.mark)).mode == UNCHANGED


async def test_a_cleared_session_reads_empty(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1)])
    first = await read(history, None)
    await history.clear(T, "s")
    tail = await read(history, first.mark)
    assert (tail.mode, tail.page.items, tail.page.revision) == (FULL, [], 0)
    assert tail.mark == ReadMark(0, 0, 0, 0)


async def test_a_mark_of_another_session_reads_in_full(history: HistoryStore) -> None:
    await history.append(T, "a", [item(1), item(2)])
    await history.append(T, "b", [item(1), item(2)])
    of_a = await read(history, None, session_id="a")
    await history.append(T, "b", [item(3)])
    await agrees_with_a_plain_read(
        history, await read(history, of_a.mark, session_id="b"), None, "b"
    )


async def test_a_revision_alone_is_unchanged_or_full(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1), item(2)])
    first = await read(history, None)
    only = ReadMark.revision_only(first.mark.revision)
    assert (await read(history, only, limit=1)).mode == UNCHANGED
    await history.append(T, "s", [item(3)])
    await agrees_with_a_plain_read(history, await read(history, only, limit=2), limit=2)


async def test_pages_are_bounded_by_bytes_as_plain_reads_are(history: HistoryStore) -> None:
    big = json.dumps({"n": 0, "pad": "x" * 400})
    await history.append(T, "s", [big] * 3)
    first = await read(history, None)
    await history.append(T, "s", [big] * 4)
    tail = await read(history, first.mark, max_bytes=1000)
    assert (tail.mode, len(tail.page.items), tail.page.has_more) == (APPENDED, 2, True)
    assert (tail.page.first_seq, tail.page.last_seq) == (6, 7)
    plain = await history.read(T, "s", limit=100, max_bytes=1000)
    full = await read(history, None, limit=100, max_bytes=1000)
    assert full.page == plain


async def test_a_read_racing_writes_is_never_stale(history: HistoryStore) -> None:
    """Reads interleaved with appends and pops: applying each answer to what the reader
    held always gives exactly the session as a plain read saw it right after."""
    await history.append(T, "s", [item(0)])
    tail = await read(history, None)
    held = numbers(tail.page.items)
    for step in range(40):
        if step % 5 == 4:
            await history.pop(T, "s")
        else:
            await history.append(T, "s", [item(step + 1)] * (step % 3 + 1))
        tail = await read(history, tail.mark)
        if tail.mode == FULL:
            held = numbers(tail.page.items)
        elif tail.mode == APPENDED:
            held += numbers(tail.page.items)
        assert held == numbers((await history.read(T, "s")).items)


# -- expiry: the clock moves (SQLite's injected, PostgreSQL's by waiting) ----------------


@pytest.fixture
async def timed(database_url: str) -> AsyncIterator[tuple[HistoryStore, Clock]]:
    from session_memory.storage import store_from_url

    clock = Clock(manual=database_url.startswith("sqlite"))
    backend = (
        SQLiteStore(sqlite_path_from_url(database_url), clock=clock)
        if clock.manual
        else store_from_url(database_url)
    )
    await backend.open()
    try:
        yield cast(HistoryStore, backend), clock
    finally:
        await backend.close()


async def test_an_expired_session_reads_empty_then_new(timed: tuple[HistoryStore, Clock]) -> None:
    history, clock = timed
    await history.append(T, "s", [item(n) for n in range(5)], ttl=0.3)
    first = await read(history, None)
    await clock.advance(0.5)
    expired = await read(history, first.mark)
    assert (expired.mode, expired.page.items) == (FULL, [])
    await asyncio.sleep(0.01)
    await history.append(T, "s", [item(n) for n in range(100, 107)])
    tail = await read(history, first.mark)
    await agrees_with_a_plain_read(history, tail)
    assert numbers(tail.page.items) == list(range(100, 107))


# -- PostgreSQL: the statement stays cheap enough to plan and run as plain SQL ---------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_plans_it_below_the_jit_threshold(
    history: HistoryStore, database_url: str
) -> None:
    """Planned at a cost past jit_above_cost, every execution would be JIT-compiled
    first (hundreds of milliseconds): with many items stored, it is not."""
    import asyncpg
    from session_memory.storage.postgres import reads

    body = json.dumps({"n": 0})
    for n in range(20):
        await history.append(T, f"other-{n}", [body] * 2000)
    await history.append(T, "s", [body] * 200)
    mark = (await read(history, None)).mark
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
        threshold = float(await conn.fetchval("SHOW jit_above_cost"))
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        for known in (mark, ReadMark(0, 0, 0, 0)):
            for limit in (21, 10_001):
                plan = await conn.fetchval(
                    "EXPLAIN (FORMAT JSON) " + reads._SINCE_SQL,
                    T,
                    "s",
                    known.lineage,
                    known.seq,
                    known.count,
                    known.revision,
                    limit,
                    16 * 2**20,
                )
                cost = json.loads(plan)[0]["Plan"]["Total Cost"]
                assert cost < threshold, (known, limit, cost)
    finally:
        await conn.close()
