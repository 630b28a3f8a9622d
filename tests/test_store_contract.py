"""The storage contract, written once and run against every backend."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from session_memory.config import Settings
from session_memory.storage import (
    ANY_REVISION,
    Idempotency,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidCursorError,
    PreconditionFailedError,
    SessionFullError,
    SessionStore,
    TooManySessionsError,
    store_from_url,
)
from session_memory.storage.sqlite import SQLiteStore, sqlite_path_from_url

T = "tenant-a"


class Clock:
    """Moves a store's time forward: SQLite's by an injected clock, at once; PostgreSQL's
    only by waiting, because it expires by the database's own ``now()``."""

    def __init__(self, *, manual: bool) -> None:
        self.manual = manual
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        if self.manual:
            self.now += seconds
        else:
            await asyncio.sleep(seconds)


# Rows per sweep transaction in the ``timed`` stores: small, to see the batches.
SWEEP_BATCH = 50


@pytest.fixture
async def timed(database_url: str) -> AsyncIterator[tuple[SessionStore, Clock]]:
    """A store of each backend with the clock that moves its time."""
    clock = Clock(manual=database_url.startswith("sqlite"))
    backend: SessionStore = (
        SQLiteStore(sqlite_path_from_url(database_url), clock=clock, sweep_batch_rows=SWEEP_BATCH)
        if clock.manual
        else store_from_url(
            database_url, Settings(database_url=database_url, sweep_batch_rows=SWEEP_BATCH)
        )
    )
    await backend.open()
    try:
        yield backend, clock
    finally:
        await backend.close()


def item(n: int) -> str:
    return json.dumps({"n": n})


async def test_append_assigns_contiguous_increasing_seqs(store: SessionStore) -> None:
    first = await store.append(T, "s", [item(1), item(2)])
    second = await store.append(T, "s", [item(3)])
    assert (first.count, first.first_seq, first.last_seq) == (2, 1, 2)
    assert (second.first_seq, second.last_seq) == (3, 3)


async def test_append_empty_is_a_noop(store: SessionStore) -> None:
    result = await store.append(T, "s", [])
    assert (result.count, result.first_seq, result.last_seq) == (0, None, None)
    assert await store.get_session(T, "s") is None


async def test_read_returns_items_oldest_first_exactly_as_stored(store: SessionStore) -> None:
    texts = ['{"b": 1,  "a": 2}', '{"z":[1.50, 1e2]}', '{"k":"\\u00e9"}']
    await store.append(T, "s", texts)
    page = await store.read(T, "s")
    assert page.items == texts
    assert (page.first_seq, page.last_seq, page.has_more) == (1, 3, False)


async def test_read_unknown_session_is_empty(store: SessionStore) -> None:
    page = await store.read(T, "nobody", limit=5)
    assert (page.items, page.first_seq, page.last_seq, page.has_more) == ([], None, None, False)


@pytest.mark.parametrize(
    ("limit", "expected", "has_more"),
    [
        (0, [], False),
        (1, [5], True),
        (3, [3, 4, 5], True),
        (5, [1, 2, 3, 4, 5], False),
        (50, [1, 2, 3, 4, 5], False),
    ],
)
async def test_read_limit_gives_latest_n_oldest_first(
    store: SessionStore, limit: int, expected: list[int], has_more: bool
) -> None:
    await store.append(T, "s", [item(n) for n in range(1, 6)])
    page = await store.read(T, "s", limit=limit)
    assert [json.loads(text)["n"] for text in page.items] == expected
    assert page.has_more is has_more


async def test_keyset_paging_walks_forward_and_backward(store: SessionStore) -> None:
    await store.append(T, "s", [item(n) for n in range(1, 11)])
    forward: list[int] = []
    cursor = 0
    while True:
        page = await store.read(T, "s", limit=3, after=cursor)
        forward += [json.loads(text)["n"] for text in page.items]
        if not page.has_more:
            break
        assert page.last_seq is not None
        cursor = page.last_seq
    assert forward == list(range(1, 11))

    backward: list[list[int]] = []
    page = await store.read(T, "s", limit=4)
    backward.append([json.loads(text)["n"] for text in page.items])
    while page.has_more:
        assert page.first_seq is not None
        page = await store.read(T, "s", limit=4, before=page.first_seq)
        backward.append([json.loads(text)["n"] for text in page.items])
    assert backward == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2]]


async def test_pop_returns_newest_then_none(store: SessionStore) -> None:
    await store.append(T, "s", [item(1), item(2)])
    assert await store.pop(T, "s") == item(2)
    assert await store.pop(T, "s") == item(1)
    assert await store.pop(T, "s") is None
    info = await store.get_session(T, "s")
    assert info is not None
    assert info.item_count == 0


async def test_seq_never_reused_after_pop(store: SessionStore) -> None:
    await store.append(T, "s", [item(1), item(2)])
    await store.pop(T, "s")
    result = await store.append(T, "s", [item(3)])
    assert result.first_seq == 3


async def test_clear_removes_items_and_record(store: SessionStore) -> None:
    await store.append(T, "s", [item(1)])
    await store.clear(T, "s")
    assert await store.get_session(T, "s") is None
    assert (await store.read(T, "s")).items == []
    await store.clear(T, "never-existed")
    restarted = await store.append(T, "s", [item(9)])
    assert restarted.first_seq == 1


async def test_sessions_and_tenants_are_isolated(store: SessionStore) -> None:
    await store.append(T, "s", [item(1)])
    await store.append(T, "S", [item(2)])
    await store.append("tenant-b", "s", [item(3)])
    assert (await store.read(T, "s")).items == [item(1)]
    assert (await store.read(T, "S")).items == [item(2)]
    assert (await store.read("tenant-b", "s")).items == [item(3)]
    assert await store.pop("tenant-b", "s") == item(3)
    assert (await store.read(T, "s")).items == [item(1)]
    listed = await store.list_sessions("tenant-b", limit=10)
    assert [info.session_id for info in listed.sessions] == ["s"]


async def test_session_record_tracks_count_and_times(store: SessionStore) -> None:
    await store.append(T, "s", [item(1), item(2)])
    first = await store.get_session(T, "s")
    await asyncio.sleep(0.01)
    await store.append(T, "s", [item(3)])
    second = await store.get_session(T, "s")
    assert first is not None
    assert second is not None
    assert (first.item_count, second.item_count) == (2, 3)
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert second.revision > first.revision


async def test_list_sessions_most_recent_first_in_keyset_pages(store: SessionStore) -> None:
    for n in range(7):
        await store.append(T, f"s{n}", [item(n)])
    await store.append(T, "s2", [item(99)])  # s2 becomes the most recently updated
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_sessions(T, limit=3, cursor=cursor)
        seen += [info.session_id for info in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["s2", "s6", "s5", "s4", "s3", "s1", "s0"]


async def test_concurrent_appends_stay_contiguous(store: SessionStore) -> None:
    async def writer(w: int) -> None:
        for batch in range(10):
            await store.append(T, "s", [json.dumps({"w": w, "b": batch, "i": i}) for i in range(5)])

    await asyncio.gather(*(writer(w) for w in range(8)))
    rows = [json.loads(text) for text in (await store.read(T, "s")).items]
    assert len(rows) == 400
    for start in range(0, 400, 5):
        chunk = rows[start : start + 5]
        assert {(row["w"], row["b"]) for row in chunk} == {(chunk[0]["w"], chunk[0]["b"])}
        assert [row["i"] for row in chunk] == list(range(5))


async def test_concurrent_pops_return_each_item_once(store: SessionStore) -> None:
    await store.append(T, "s", [item(n) for n in range(200)])

    async def popper() -> list[str]:
        got = []
        while (popped := await store.pop(T, "s")) is not None:
            got.append(popped)
        return got

    results = await asyncio.gather(*(popper() for _ in range(8)))
    flat = [text for got in results for text in got]
    assert sorted(flat) == sorted(item(n) for n in range(200))


async def test_ping_answers_when_open(store: SessionStore) -> None:
    await store.ping()


def key(name: str, fingerprint: str = "f1", ttl: float = 60) -> Idempotency:
    return Idempotency(key=name, fingerprint=fingerprint, ttl=ttl)


async def test_idempotent_append_lands_once(store: SessionStore) -> None:
    first = await store.append(T, "s", [item(1), item(2)], idempotency=key("k1"))
    again = await store.append(T, "s", [item(1), item(2)], idempotency=key("k1"))
    assert again == first
    assert (await store.read(T, "s")).items == [item(1), item(2)]
    other_tenant = await store.append("tenant-b", "s", [item(1)], idempotency=key("k1"))
    assert other_tenant.first_seq == 1
    assert len((await store.read("tenant-b", "s")).items) == 1


async def test_idempotency_key_with_another_request_is_refused(store: SessionStore) -> None:
    await store.append(T, "s", [item(1)], idempotency=key("k2", "f1"))
    with pytest.raises(IdempotencyMismatchError):
        await store.append(T, "s", [item(9)], idempotency=key("k2", "f2"))
    with pytest.raises(IdempotencyMismatchError):
        await store.pop(T, "s", idempotency=key("k2", "f2"))
    assert (await store.read(T, "s")).items == [item(1)]


async def test_idempotent_pop_removes_one_item(store: SessionStore) -> None:
    await store.append(T, "s", [item(1), item(2), item(3)])
    assert await store.pop(T, "s", idempotency=key("p1")) == item(3)
    assert await store.pop(T, "s", idempotency=key("p1")) == item(3)
    assert (await store.read(T, "s")).items == [item(1), item(2)]
    assert await store.pop(T, "empty", idempotency=key("p2")) is None
    await store.append(T, "empty", [item(5)])
    assert await store.pop(T, "empty", idempotency=key("p2")) is None  # the recorded outcome


async def test_expired_idempotency_records_are_forgotten_and_swept(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    await store.append(T, "s", [item(1)], idempotency=key("short", ttl=0.05))
    await store.append(T, "s", [item(2)], idempotency=key("long", ttl=60))
    await clock.advance(0.2)
    assert (await store.sweep()).records == 1
    again = await store.append(T, "s", [item(1)], idempotency=key("short", ttl=60))
    assert again.first_seq == 3  # ran again: the record had expired
    assert (await store.sweep()).records == 0


async def test_concurrent_retries_of_one_write_land_once(store: SessionStore) -> None:
    async def attempt() -> object:
        try:
            return await store.append(T, "s", [item(7), item(8)], idempotency=key("race"))
        except IdempotencyInFlightError as exc:
            return exc

    outcomes = await asyncio.gather(*(attempt() for _ in range(10)))
    results = {o for o in outcomes if not isinstance(o, IdempotencyInFlightError)}
    assert len(results) == 1  # every attempt that ran saw the same outcome
    assert (await store.read(T, "s")).items == [item(7), item(8)]


async def test_session_item_limit(store: SessionStore) -> None:
    await store.append(T, "s", [item(n) for n in range(8)], max_items=10)
    with pytest.raises(SessionFullError) as caught:
        await store.append(T, "s", [item(n) for n in range(3)], max_items=10)
    assert (caught.value.limit, caught.value.count, caught.value.adding) == (10, 8, 3)
    assert len((await store.read(T, "s")).items) == 8
    await store.append(T, "s", [item(8), item(9)], max_items=10)
    with pytest.raises(SessionFullError):
        await store.append(T, "new", [item(n) for n in range(11)], max_items=10)
    assert await store.get_session(T, "new") is None


async def test_expected_revision_guards_writes(store: SessionStore) -> None:
    created = await store.append(T, "s", [item(1)], expected_revision=0)
    assert created.revision is not None
    assert created.revision > 0
    with pytest.raises(PreconditionFailedError) as caught:
        await store.append(T, "s", [item(2)], expected_revision=0)
    assert caught.value.current == created.revision
    page = await store.read(T, "s", limit=10)
    assert page.revision == created.revision
    moved = await store.append(T, "s", [item(2)], expected_revision=page.revision)
    assert moved.revision is not None
    assert moved.revision > created.revision
    for stale in (
        store.append(T, "s", [item(3)], expected_revision=page.revision),
        store.pop(T, "s", expected_revision=page.revision),
        store.clear(T, "s", expected_revision=page.revision),
    ):
        with pytest.raises(PreconditionFailedError):
            await stale
    assert (await store.read(T, "s")).items == [item(1), item(2)]
    assert await store.pop(T, "s", expected_revision=ANY_REVISION) == item(2)
    with pytest.raises(PreconditionFailedError):
        await store.pop(T, "missing", expected_revision=ANY_REVISION)
    await store.clear(T, "s", expected_revision=(await store.read(T, "s", limit=1)).revision)
    assert (await store.read(T, "s", limit=1)).revision == 0


async def test_expired_session_reads_empty_and_starts_afresh(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    await store.append(T, "brief", [item(1), item(2)], ttl=0.3)
    await store.append(T, "kept", [item(1)], ttl=0)
    info = await store.get_session(T, "brief")
    assert info is not None
    assert info.expires_at is not None
    assert (await store.get_session(T, "kept")).expires_at is None  # type: ignore[union-attr]
    await store.append(T, "brief", [item(3)])  # a write renews the session's own TTL
    assert len((await store.read(T, "brief")).items) == 3
    await clock.advance(0.5)
    page = await store.read(T, "brief", limit=10)
    assert (page.items, page.revision) == ([], 0)
    assert await store.get_session(T, "brief") is None
    listed = await store.list_sessions(T, limit=10)
    assert [info.session_id for info in listed.sessions] == ["kept"]
    assert await store.pop(T, "brief") is None
    restarted = await store.append(T, "brief", [item(9)])
    assert restarted.first_seq == 1
    assert (await store.read(T, "brief")).items == [item(9)]


async def test_sweep_deletes_expired_sessions(timed: tuple[SessionStore, Clock]) -> None:
    store, clock = timed
    await store.append(T, "gone", [item(1), item(2)], ttl=0.1)
    await store.append(T, "stays", [item(1)])
    await clock.advance(0.3)
    swept = await store.sweep()
    assert (swept.sessions, swept.items, swept.records) == (1, 2, 0)
    assert (await store.sweep()).sessions == 0
    assert (await store.read(T, "stays")).items == [item(1)]


async def test_recreated_session_never_repeats_a_revision(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    seen = [(await store.append(T, "s", [item(1)])).revision]
    seen.append((await store.append(T, "s", [item(2)])).revision)
    await store.pop(T, "s")
    seen.append((await store.read(T, "s", limit=1)).revision)
    await store.clear(T, "s")
    if clock.manual:
        clock.now -= 3600  # the clock steps back: revisions still never repeat
    recreated = await store.append(T, "s", [item(3)])
    assert recreated.revision not in seen
    assert recreated.revision is not None
    assert recreated.revision > max(r for r in seen if r is not None)
    for stale in seen:
        with pytest.raises(PreconditionFailedError):
            await store.append(T, "s", [item(4)], expected_revision=stale)
    assert (await store.read(T, "s")).items == [item(3)]


async def test_revisions_follow_the_clock_not_other_writes(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    mine = await store.append(T, "mine", [item(0)])
    for n in range(20):  # another tenant's writes, and another session's
        await store.append("tenant-b", f"other-{n % 3}", [item(n)])
        await store.append(T, "also-mine", [item(n)])
    again = await store.append(T, "mine", [item(1)])
    fresh = await store.append(T, "fresh", [item(0)])
    assert mine.revision is not None
    assert again.revision is not None
    assert fresh.revision is not None
    if clock.manual:  # time stood still: only this session's own write moved it
        assert again.revision == mine.revision + 1
        assert fresh.revision == mine.revision
    else:  # microseconds of the database's clock, not a count of writes
        now = time.time()
        for revision in (mine.revision, again.revision, fresh.revision):
            assert abs(revision - now * 1_000_000) < 60 * 1_000_000


async def test_list_cursor_walks_sessions_written_at_one_instant(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, _ = timed
    names = [f"same-{n}" for n in range(5)]
    await asyncio.gather(*(store.append(T, name, [item(0)]) for name in names))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_sessions(T, limit=2, cursor=cursor)
        seen += [info.session_id for info in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
        assert cursor.isascii()
    assert sorted(seen) == names
    with pytest.raises(InvalidCursorError):
        await store.list_sessions(T, limit=2, cursor="not-a-cursor")


async def test_clear_deletes_the_sessions_idempotency_records(store: SessionStore) -> None:
    await store.append(T, "s", [item(1), item(2)], idempotency=key("a"))
    assert await store.pop(T, "s", idempotency=key("p")) == item(2)
    await store.pop("tenant-b", "s", idempotency=key("p"))  # another tenant's, kept
    await store.clear(T, "s")
    assert await store.pop(T, "s", idempotency=key("p")) is None  # not the popped item
    again = await store.append(T, "s", [item(1), item(2)], idempotency=key("a"))
    assert again.first_seq == 1  # ran again, in the new session
    assert await store.pop(T, "s", idempotency=key("p2")) == item(2)
    with pytest.raises(IdempotencyMismatchError):
        await store.pop("tenant-b", "s", idempotency=key("p", "other"))


async def test_popped_items_kept_for_replay_count_against_the_item_limit(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    for n in range(3):
        await store.append(T, "s", [item(n)], max_items=3, idempotency=key(f"a{n}", ttl=0.2))
        assert await store.pop(T, "s", idempotency=key(f"p{n}", ttl=0.2)) == item(n)
    await store.pop(T, "s", idempotency=key("empty", ttl=0.2))  # kept nothing
    with pytest.raises(SessionFullError) as caught:
        await store.append(T, "s", [item(9)], max_items=3)
    assert (caught.value.count, caught.value.kept) == (3, 3)
    assert (await store.read(T, "s")).items == []
    await store.pop(T, "s", idempotency=key("p0", ttl=0.2))  # a replay keeps no more
    await clock.advance(0.5)
    await store.sweep()  # the records expire and release what they kept
    for n in range(3):
        await store.append(T, "s", [item(n)], max_items=3)
    with pytest.raises(SessionFullError):
        await store.append(T, "s", [item(3)], max_items=3)


async def test_tenant_session_limit(database_url: str) -> None:
    limited = store_from_url(
        database_url, Settings(database_url=database_url, max_sessions_per_tenant=2)
    )
    await limited.open()
    try:
        await limited.append(T, "one", [item(1)])
        await limited.append(T, "two", [item(1)])
        with pytest.raises(TooManySessionsError) as caught:
            await limited.append(T, "three", [item(1)])
        assert caught.value.limit == 2
        assert await limited.get_session(T, "three") is None
        await limited.append(T, "one", [item(2)])  # existing sessions still grow
        await limited.append("tenant-b", "three", [item(1)])  # per tenant
        await limited.clear(T, "one")
        await limited.append(T, "three", [item(1)])
        listed = await limited.list_sessions(T, limit=10)
        assert sorted(info.session_id for info in listed.sessions) == ["three", "two"]
    finally:
        await limited.close()


async def test_sweep_deletes_a_big_session_in_small_transactions(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, clock = timed
    big = [item(n) for n in range(SWEEP_BATCH * 6 + 7)]
    await store.append(T, "big", big, ttl=0.1)
    for n in range(SWEEP_BATCH + 3):  # more expired records than one batch holds
        await store.append(T, "keys", [item(n)], idempotency=key(f"k{n}", ttl=0.1))
    await store.append(T, "stays", [item(1)], ttl=0)
    await clock.advance(0.3)
    swept = await store.sweep()
    assert (swept.sessions, swept.items, swept.records) == (1, len(big), SWEEP_BATCH + 3)
    assert swept.batches >= len(big) // SWEEP_BATCH + 1
    assert (await store.sweep()).items == 0
    assert (await store.read(T, "stays")).items == [item(1)]
    restarted = await store.append(T, "big", [item(0)])  # a new session, none of the old items
    assert (restarted.first_seq, (await store.read(T, "big")).items) == (1, [item(0)])


async def test_clearing_a_big_session_leaves_its_items_to_the_sweep(
    timed: tuple[SessionStore, Clock],
) -> None:
    store, _ = timed
    await store.append(T, "big", [item(n) for n in range(SWEEP_BATCH * 3)])
    await store.clear(T, "big")
    assert (await store.read(T, "big")).items == []
    again = await store.append(T, "big", [item(-1)])
    assert (await store.read(T, "big")).items == [item(-1)]
    assert again.first_seq == 1
    swept = await store.sweep()
    assert (swept.sessions, swept.items) == (0, SWEEP_BATCH * 3)
    assert swept.batches >= 3
    assert (await store.read(T, "big")).items == [item(-1)]
