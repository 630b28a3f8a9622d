"""The client's history operations against a real server: replace, fork, follow, compaction
hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from session_memory_client import FollowEvent, ProblemError, RemoteSession


@pytest.fixture
async def history(base_url: str, session_id: str) -> AsyncIterator[RemoteSession]:
    async with RemoteSession(session_id, base_url=base_url) as session:
        yield session


async def test_replace_items_with_and_without_revision(history: RemoteSession) -> None:
    await history.add_items([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    result = await history.replace_items([{"role": "assistant", "content": "sum"}])
    assert (result.count, result.first_seq, result.last_seq) == (1, 3, 3)
    with pytest.raises(ProblemError) as caught:
        await history.replace_items([], if_revision=result.revision - 1)
    assert caught.value.status == 412
    await history.replace_items(
        [{"role": "assistant", "content": "x"}], from_seq=4, if_revision=result.revision
    )
    assert await history.get_items() == [
        {"role": "assistant", "content": "sum"},
        {"role": "assistant", "content": "x"},
    ]


async def test_fork_copies_through_a_seq_into_a_new_session(
    history: RemoteSession, base_url: str
) -> None:
    await history.add_items([{"n": 1}, {"n": 2}, {"n": 3}])
    made = await history.fork(history.session_id + "-fork", through_seq=2)
    assert (made.session_id, made.count, made.first_seq, made.last_seq) == (
        history.session_id + "-fork",
        2,
        1,
        2,
    )
    assert made.revision > 0
    async with RemoteSession(made.session_id, base_url=base_url) as forked:
        assert await forked.get_items() == [{"n": 1}, {"n": 2}]
    with pytest.raises(ProblemError) as caught:
        await history.fork(made.session_id)
    assert caught.value.status == 409
    with pytest.raises(ValueError, match="refused character"):
        await history.fork("a/b")


async def test_follow_yields_appends_and_pops(history: RemoteSession) -> None:
    await history.add_items([{"n": 1}])
    events = history.follow(after=0)
    first = await asyncio.wait_for(anext(events), 10)
    assert first == FollowEvent("append", seq=1, item={"n": 1})
    await history.add_items([{"n": 2}])
    assert (await asyncio.wait_for(anext(events), 10)).seq == 2
    await history.pop_item()
    popped = await asyncio.wait_for(anext(events), 10)
    assert popped.kind == "pop"
    assert popped.revision
    await events.aclose()  # type: ignore[attr-defined]


async def test_compaction_snapshot_replaces_a_suffix_only_if_unchanged(
    history: RemoteSession,
) -> None:
    await history.add_items([{"n": n} for n in range(5)])
    snapshot = await history._get_compaction_snapshot(3)
    assert snapshot is not None
    assert snapshot.items == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert snapshot.complete is False
    assert await snapshot.replace_suffix(1, [{"summary": "3 and 4"}]) is True
    assert await history.get_items() == [{"n": 0}, {"n": 1}, {"n": 2}, {"summary": "3 and 4"}]
    stale = await history._get_compaction_snapshot(10)
    assert stale is not None
    await history.add_items([{"n": 9}])  # a concurrent append: the replace must not lose it
    assert await stale.replace_suffix(0, [{"summary": "all"}]) is False
    assert (await history.get_items())[-1] == {"n": 9}
