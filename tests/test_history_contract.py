"""The history contract (replace, fork, metadata), written once and run on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import cast

import pytest
from session_memory.config import Settings
from session_memory.storage import (
    Idempotency,
    IdempotencyMismatchError,
    PreconditionFailedError,
    SessionFullError,
    SessionStore,
    TooManySessionsError,
    store_from_url,
)
from session_memory.storage.contract import HistoryStore
from session_memory.storage.errors import (
    MetadataTooLargeError,
    SessionExistsError,
    SessionMissingError,
)

T = "tenant-a"


def item(n: int) -> str:
    return json.dumps({"n": n})


def numbers(texts: list[str]) -> list[int]:
    return [json.loads(text)["n"] for text in texts]


@pytest.fixture
def history(store: SessionStore) -> HistoryStore:
    assert isinstance(store, HistoryStore)
    return cast(HistoryStore, store)


async def all_seqs(history: HistoryStore, session_id: str) -> list[tuple[int, int]]:
    page = await history.read_seqs(T, session_id, after=0, limit=1000)
    return [(seq, json.loads(body)["n"]) for seq, body in page.rows]


async def test_replace_whole_history_numbers_above_every_seq_given(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1), item(2), item(3)])
    await history.pop(T, "s")
    result = await history.replace(T, "s", [item(10), item(11)])
    assert (result.count, result.first_seq, result.last_seq) == (2, 4, 5)
    assert await all_seqs(history, "s") == [(4, 10), (5, 11)]
    info = await history.get_session(T, "s")
    assert info is not None
    assert info.item_count == 2
    assert info.revision == result.revision


async def test_replace_from_seq_keeps_the_items_before_it(history: HistoryStore) -> None:
    await history.append(T, "s", [item(n) for n in range(1, 6)])
    result = await history.replace(T, "s", ['{"n": 99}'], from_seq=3)
    assert (result.first_seq, result.last_seq) == (6, 6)
    assert await all_seqs(history, "s") == [(1, 1), (2, 2), (6, 99)]
    page = await history.read(T, "s")
    assert page.items == [item(1), item(2), '{"n": 99}']


async def test_replace_with_nothing_empties_but_keeps_numbering(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1), item(2)])
    emptied = await history.replace(T, "s", [])
    assert (emptied.count, emptied.first_seq, emptied.last_seq) == (0, None, None)
    assert (await history.read(T, "s")).items == []
    again = await history.append(T, "s", [item(3)])
    assert again.first_seq == 3


async def test_replace_unknown_session_creates_it(history: HistoryStore) -> None:
    result = await history.replace(T, "new", [item(1)])
    assert (result.first_seq, result.last_seq) == (1, 1)
    assert await history.replace(T, "none", []) == type(result)(0, None, None, 0)
    assert await history.get_session(T, "none") is None


async def test_replace_with_stale_revision_changes_nothing(history: HistoryStore) -> None:
    first = await history.append(T, "s", [item(1)])
    await history.append(T, "s", [item(2)])
    with pytest.raises(PreconditionFailedError):
        await history.replace(T, "s", [item(9)], expected_revision=first.revision)
    assert numbers((await history.read(T, "s")).items) == [1, 2]
    current = (await history.read(T, "s")).revision
    done = await history.replace(T, "s", [item(9)], expected_revision=current)
    assert done.revision is not None
    assert done.revision > current


async def test_replace_respects_the_session_item_limit(history: HistoryStore) -> None:
    await history.append(T, "s", [item(n) for n in range(1, 4)])
    with pytest.raises(SessionFullError):
        await history.replace(T, "s", [item(n) for n in range(5)], from_seq=2, max_items=5)
    assert numbers((await history.read(T, "s")).items) == [1, 2, 3]
    await history.replace(T, "s", [item(n) for n in range(4)], from_seq=2, max_items=5)


async def test_replace_idempotency_key_replays(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1)])
    key = Idempotency(key="k1", fingerprint="f", ttl=60)
    first = await history.replace(T, "s", [item(2)], idempotency=key)
    again = await history.replace(T, "s", [item(2)], idempotency=key)
    assert again == first
    assert await all_seqs(history, "s") == [(2, 2)]
    with pytest.raises(IdempotencyMismatchError):
        await history.replace(T, "s", [item(3)], idempotency=Idempotency("k1", "other", 60))


async def test_replace_racing_appends_loses_no_append(history: HistoryStore) -> None:
    await history.append(T, "s", [item(0)])
    appended = list(range(1, 41))

    async def appender(n: int) -> None:
        await history.append(T, "s", [item(n)])

    async def replacer() -> int:
        page = await history.read(T, "s")
        assert page.first_seq is not None
        result = await history.replace(T, "s", [item(-1)], from_seq=page.first_seq)
        assert result.last_seq is not None
        return result.last_seq

    results = await asyncio.gather(
        *(appender(n) for n in appended[:20]), replacer(), *(appender(n) for n in appended[20:])
    )
    marker_seq = results[20]
    assert isinstance(marker_seq, int)
    rows = await all_seqs(history, "s")
    # Every append that committed after the replace is there, after the marker; the
    # ones before it were replaced, whole. Nothing interleaves inside the replace.
    after_marker = [n for seq, n in rows if seq > marker_seq]
    assert [n for seq, n in rows if seq < marker_seq] == []
    assert rows[[seq for seq, _ in rows].index(marker_seq)][1] == -1
    seqs = [seq for seq, _ in rows]
    assert seqs == sorted(seqs)
    info = await history.get_session(T, "s")
    assert info is not None
    assert info.item_count == 1 + len(after_marker)


async def test_fork_copies_through_seq_numbered_from_one(history: HistoryStore) -> None:
    await history.append(T, "src", [item(n) for n in range(1, 6)])
    await history.replace(T, "src", [item(50), item(60)], from_seq=4)  # seqs 1,2,3,6,7
    result = await history.fork(T, "src", "copy", through_seq=6)
    assert (result.count, result.first_seq, result.last_seq) == (4, 1, 4)
    assert await all_seqs(history, "copy") == [(1, 1), (2, 2), (3, 3), (4, 50)]
    whole = await history.fork(T, "src", "whole")
    assert whole.count == 5
    assert numbers((await history.read(T, "src")).items) == [1, 2, 3, 50, 60]
    appended = await history.append(T, "copy", [item(7)])
    assert appended.first_seq == 5


async def test_fork_refuses_existing_target_and_missing_source(history: HistoryStore) -> None:
    await history.append(T, "a", [item(1)])
    await history.append(T, "b", [item(2)])
    with pytest.raises(SessionExistsError):
        await history.fork(T, "a", "b")
    assert numbers((await history.read(T, "b")).items) == [2]
    with pytest.raises(SessionMissingError):
        await history.fork(T, "nobody", "c")
    with pytest.raises(SessionMissingError):
        await history.fork("tenant-b", "a", "c")
    assert await history.get_session(T, "c") is None


async def test_fork_with_stale_revision_and_idempotent_retry(history: HistoryStore) -> None:
    first = await history.append(T, "a", [item(1)])
    await history.append(T, "a", [item(2)])
    with pytest.raises(PreconditionFailedError):
        await history.fork(T, "a", "b", expected_revision=first.revision)
    key = Idempotency(key="fork-1", fingerprint="f", ttl=60)
    made = await history.fork(T, "a", "b", idempotency=key)
    assert await history.fork(T, "a", "b", idempotency=key) == made


async def test_the_record_carries_its_own_ttl_and_the_highest_seq_given(
    history: HistoryStore,
) -> None:
    await history.append(T, "s", [item(1), item(2), item(3)], ttl=3600)
    await history.pop(T, "s")
    await history.append(T, "s", [item(4)])  # no TTL given: its own is kept
    await history.pop(T, "s")
    await history.append(T, "plain", [item(1)])
    await history.fork(T, "s", "copy")  # the source's TTL, numbered from 1
    got = await history.get_session(T, "s")
    patched = await history.patch_metadata(T, "s", '{"k":1}', max_bytes=1024)
    listed = {info.session_id: info for info in (await history.find_sessions(T, limit=10)).sessions}
    for info in (got, patched, listed["s"]):
        assert info is not None
        assert (info.item_count, info.ttl, info.last_seq) == (2, 3600, 4)
    assert (listed["plain"].ttl, listed["plain"].last_seq) == (None, 1)
    assert (listed["copy"].ttl, listed["copy"].last_seq) == (3600, 2)
    # The same two numbers a database backup keeps.
    backup = await history.backup(T, "s")
    assert backup is not None
    assert (backup.ttl, backup.last_seq) == (3600, 4)


async def test_metadata_set_at_creation_patched_and_filtered(history: HistoryStore) -> None:
    await history.append(T, "one", [item(1)], metadata='{"user_id":"u42","tier":3}')
    await history.append(T, "one", [item(2)], metadata='{"user_id":"other"}')
    await history.append(T, "two", [item(1)], metadata='{"user_id":"u42","beta":true}')
    await history.append(T, "three", [item(1)])
    await history.append("tenant-b", "one", [item(1)], metadata='{"user_id":"u42"}')
    info = await history.get_session(T, "one")
    assert info is not None
    assert json.loads(info.metadata or "") == {"user_id": "u42", "tier": 3}

    async def ids(**filters: str) -> list[str]:
        page = await history.find_sessions(T, limit=10, metadata=filters)
        return [s.session_id for s in page.sessions]

    assert await ids(user_id="u42") == ["two", "one"]
    assert await ids(user_id="u42", tier="3") == ["one"]
    assert await ids(beta="true") == ["two"]
    assert await ids(user_id="nobody") == []

    patched = await history.patch_metadata(
        T, "one", '{"tier":null,"team":{"a":1},"user_id":"u7"}', max_bytes=100
    )
    assert json.loads(patched.metadata or "") == {"user_id": "u7", "team": {"a": 1}}
    assert await ids(user_id="u42") == ["two"]
    assert await ids(tier="3") == []
    with pytest.raises(MetadataTooLargeError):
        await history.patch_metadata(T, "one", json.dumps({"x": "y" * 100}), max_bytes=100)
    with pytest.raises(SessionMissingError):
        await history.patch_metadata(T, "nobody", "{}", max_bytes=100)
    with pytest.raises(PreconditionFailedError):
        await history.patch_metadata(T, "one", "{}", max_bytes=100, expected_revision=1)

    await history.fork(T, "two", "two-copy")
    assert await ids(user_id="u42") == ["two-copy", "two"]
    await history.clear(T, "two")
    assert await ids(user_id="u42") == ["two-copy"]


async def test_find_sessions_by_prefix_pages_by_keyset(history: HistoryStore) -> None:
    for n in range(5):
        await history.append(T, f"user-{n}", [item(n)])
    await history.append(T, "other", [item(9)])
    seen: list[str] = []
    cursor = None
    while True:
        page = await history.find_sessions(T, limit=2, cursor=cursor, prefix="user-")
        seen += [s.session_id for s in page.sessions]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"user-{n}" for n in reversed(range(5))]


async def test_compaction_with_if_match_racing_appends_loses_nothing(
    history: HistoryStore,
) -> None:
    """The compaction loop: read, summarise, replace if unchanged, else retry."""
    await history.append(T, "s", [item(0)])
    appended = list(range(1, 31))
    summaries: list[list[int]] = []

    async def appender(n: int) -> None:
        await asyncio.sleep(0)
        await history.append(T, "s", [item(n)])

    async def compactor() -> None:
        while True:
            page = await history.read(T, "s")
            seen: list[int] = []
            for text in page.items:
                body = json.loads(text)
                seen += body.get("summary", [body.get("n")])
            summary = json.dumps({"summary": seen})
            try:
                await history.replace(T, "s", [summary], expected_revision=page.revision)
            except PreconditionFailedError:
                continue
            summaries.append(seen)
            return

    await asyncio.gather(
        *(appender(n) for n in appended[:15]),
        compactor(),
        compactor(),
        *(appender(n) for n in appended[15:]),
    )
    final: list[int] = []
    for text in (await history.read(T, "s")).items:
        body = json.loads(text)
        final += body.get("summary", [body.get("n")])
    # Every item ever appended is in the history exactly once: in a summary or as itself.
    assert sorted(final) == [0, *appended]
    assert len(summaries) == 2


# -- main's storage rules, kept by the history writes ---------------------------------


@pytest.fixture
async def small(database_url: str) -> AsyncIterator[HistoryStore]:
    """A store with two sessions per tenant and sessions of over 2 items retired."""
    store = store_from_url(
        database_url,
        Settings(database_url=database_url, max_sessions_per_tenant=2, sweep_batch_rows=2),
    )
    await store.open()
    try:
        yield cast(HistoryStore, store)
    finally:
        await store.close()


async def test_replace_and_fork_respect_the_tenant_session_limit(small: HistoryStore) -> None:
    await small.append(T, "one", [item(1)])
    await small.replace(T, "two", [item(2)])  # a replace may create the second
    with pytest.raises(TooManySessionsError):
        await small.replace(T, "three", [item(3)])
    with pytest.raises(TooManySessionsError):
        await small.fork(T, "one", "three")
    assert await small.get_session(T, "three") is None
    await small.replace(T, "two", [item(4)])  # an existing session is no new one
    await small.clear(T, "two")
    await small.fork(T, "one", "three")
    assert (await small.read(T, "three")).items == [item(1)]


async def test_a_fork_after_a_retired_session_gets_none_of_its_items(
    small: HistoryStore,
) -> None:
    await small.append(T, "a", [item(n) for n in range(5)])
    await small.fork(T, "a", "b")
    before = await small.get_session(T, "b")
    assert before is not None
    await small.clear(T, "b")  # 5 items > 2: retired, its items left for the sweep
    forked = await small.fork(T, "a", "c", through_seq=2)
    assert (await small.read(T, "c")).items == [item(0), item(1)]
    await small.clear(T, "c")  # room for "b" again (two sessions per tenant)
    again = await small.fork(T, "a", "b", through_seq=1)
    # Above the cleared session's revision (the tenant's floor): no ETag repeats.
    assert again.revision > before.revision
    assert forked.revision > before.revision
    assert (await small.read(T, "b")).items == [item(0)]


async def test_replace_counts_items_kept_for_pop_replays(history: HistoryStore) -> None:
    await history.append(T, "s", [item(1), item(2), item(3)])
    key = Idempotency(key="pop-1", fingerprint="f", ttl=60)
    assert await history.pop(T, "s", idempotency=key) == item(3)
    with pytest.raises(SessionFullError) as caught:
        await history.replace(T, "s", [item(7), item(8), item(9)], max_items=3)
    assert caught.value.kept == 1
    await history.replace(T, "s", [item(7), item(8)], max_items=3)
    assert (await history.read(T, "s")).items == [item(7), item(8)]


async def test_a_forks_idempotency_record_goes_with_the_new_session(
    history: HistoryStore,
) -> None:
    await history.append(T, "a", [item(1)])
    key = Idempotency(key="fork-1", fingerprint="f", ttl=60)
    first = await history.fork(T, "a", "b", idempotency=key)
    assert await history.fork(T, "a", "b", idempotency=key) == first  # a replay
    await history.clear(T, "b")
    # The record went with "b": the same key forks again instead of replaying.
    again = await history.fork(T, "a", "b", idempotency=key)
    assert again.revision > first.revision
    assert (await history.read(T, "b")).items == [item(1)]


async def test_revisions_are_per_session(history: HistoryStore) -> None:
    await history.append(T, "a", [item(1)])
    await history.append(T, "b", [item(1)])
    b = await history.get_session(T, "b")
    a = await history.replace(T, "a", [item(2)])
    info = await history.patch_metadata(T, "a", '{"k":"v"}', max_bytes=100)
    assert info.revision > a.revision
    assert await history.get_session(T, "b") == b  # untouched by a's writes


async def test_read_seqs_pages_by_bytes(history: HistoryStore) -> None:
    bodies = [json.dumps({"n": n, "pad": "x" * 90}) for n in range(4)]
    await history.append(T, "s", bodies)
    size = len(bodies[0])
    page = await history.read_seqs(T, "s", after=0, limit=10, max_bytes=2 * size)
    assert (page.rows, page.has_more) == ([(1, bodies[0]), (2, bodies[1])], True)
    page = await history.read_seqs(T, "s", after=2, limit=10, max_bytes=10)
    assert (page.rows, page.has_more) == ([(3, bodies[2])], True)  # the first, whatever its size
    page = await history.read_seqs(T, "s", after=3, limit=10, max_bytes=10)
    assert (page.rows, page.has_more) == ([(4, bodies[3])], False)
    page = await history.read_seqs(T, "s", after=0, limit=3)
    assert (len(page.rows), page.has_more) == (3, True)


async def test_read_seqs_tells_the_sessions_lineage(history: HistoryStore) -> None:
    assert (await history.read_seqs(T, "s", after=0, limit=10)).lineage is None
    await history.append(T, "s", ['{"n":1}'])
    first = await history.read_seqs(T, "s", after=5, limit=10)
    assert first.rows == []  # no items above 5, yet a session
    assert first.lineage is not None
    assert (await history.read_seqs(T, "s", after=0, limit=10)).lineage == first.lineage
    await history.clear(T, "s")
    assert (await history.read_seqs(T, "s", after=0, limit=10)).lineage is None
    await asyncio.sleep(0.01)  # a creation time of its own
    await history.append(T, "s", ['{"n":2}'])
    again = await history.read_seqs(T, "s", after=0, limit=10)
    assert again.lineage is not None
    assert again.lineage != first.lineage
