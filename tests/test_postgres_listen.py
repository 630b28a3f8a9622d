"""PostgreSQL's change feed on its own: writes through the store reach a sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from session_memory.storage import store_from_url
from session_memory.storage.contract import ChangeFeed, HistoryStore

from tests.utils.postgres import schema_url

Delivered = tuple[str, str, str, int]


class RecordingSink:
    """A ``ChangeSink`` that keeps what it is given."""

    def __init__(self, follows: list[tuple[str, str]]) -> None:
        self.stopping = False
        self.follows = follows
        self.changes: asyncio.Queue[Delivered] = asyncio.Queue()
        self.woken = asyncio.Event()

    def deliver(self, tenant: str, session_id: str, kind: str, revision: int) -> None:
        self.changes.put_nowait((tenant, session_id, kind, revision))

    def wake_all(self) -> None:
        self.woken.set()

    def followed(self) -> list[tuple[str, str]]:
        return list(self.follows)

    async def next(self) -> Delivered:
        return await asyncio.wait_for(self.changes.get(), 10)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    with schema_url() as url:
        yield url


@pytest.fixture
async def store(url: str) -> AsyncIterator[HistoryStore]:
    store = store_from_url(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sink_and_feed(store: HistoryStore) -> AsyncIterator[tuple[RecordingSink, ChangeFeed]]:
    sink = RecordingSink([("t", "s")])  # followed before the feed starts
    feed = store.change_feed(sink)
    assert feed is not None
    await feed.start()
    try:
        yield sink, feed
    finally:
        sink.stopping = True
        await feed.stop()


async def _followers(url: str, session_id: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT backend_pid FROM session_followers WHERE session_id = $1", session_id
        )
        return [row[0] for row in rows]
    finally:
        await conn.close()


async def test_writes_of_followed_sessions_reach_the_sink_with_kind_and_revision(
    store: HistoryStore, sink_and_feed: tuple[RecordingSink, ChangeFeed]
) -> None:
    sink, _ = sink_and_feed
    await store.append("t", "unfollowed", ['{"n":1}'])
    appended = await store.append("t", "s", ['{"n":1}', '{"n":2}'])
    # Notifications come in commit order: the unfollowed write sent none.
    assert await sink.next() == ("t", "s", "append", appended.revision)
    assert await store.pop("t", "s") == '{"n":2}'
    info = await store.get_session("t", "s")
    assert info is not None
    assert await sink.next() == ("t", "s", "pop", info.revision)
    replaced = await store.replace("t", "s", ['{"n":3}'])
    assert await sink.next() == ("t", "s", "replace", replaced.revision)
    await store.clear("t", "s")
    assert await sink.next() == ("t", "s", "clear", 0)
    assert sink.changes.empty()


async def test_add_and_remove_choose_the_sessions_announced(
    url: str, store: HistoryStore, sink_and_feed: tuple[RecordingSink, ChangeFeed]
) -> None:
    sink, feed = sink_and_feed
    await feed.add("t", "later")
    appended = await store.append("t", "later", ['{"n":1}'])
    assert await sink.next() == ("t", "later", "append", appended.revision)
    feed.remove_soon("t", "s")
    for _ in range(100):
        if not await _followers(url, "s"):
            break
        await asyncio.sleep(0.05)
    await store.append("t", "s", ['{"n":1}'])
    appended = await store.append("t", "later", ['{"n":2}'])
    assert await sink.next() == ("t", "later", "append", appended.revision)


async def test_a_lost_connection_is_reopened_and_wakes_every_follower(
    url: str, store: HistoryStore, sink_and_feed: tuple[RecordingSink, ChangeFeed]
) -> None:
    sink, _ = sink_and_feed
    [pid] = await _followers(url, "s")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await asyncio.wait_for(sink.woken.wait(), 10)
    # Registered again on the new connection: writes are announced as before.
    assert await _followers(url, "s") != [pid]
    appended = await store.append("t", "s", ['{"n":1}'])
    assert await sink.next() == ("t", "s", "append", appended.revision)
