"""Follow streams under many followers and hostile timing: per-tenant caps, one read
for a session's followers, a lineage change announced, a lagging stream told to
resync. On real stores and real servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from session_memory.services.events import SharedReads, event_stream
from session_memory.services.hub import MAX_NOTICES, Hub
from session_memory.storage import store_from_url
from session_memory.storage.records import SeqPage
from session_memory_client.protocol import ProblemType, session_path

from tests.test_history_api import events, next_event
from tests.utils.server import ServerProcess

KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


@pytest.mark.slow
async def test_one_tenant_cannot_take_every_stream(tmp_path: Path) -> None:
    env = {
        "SESSION_MEMORY_API_KEYS": f"alpha:{KEY_A},beta:{KEY_B}",
        "SESSION_MEMORY_MAX_FOLLOW_STREAMS_PER_TENANT": "2",
    }
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "s.log", env=env) as sv:
        a = httpx2.AsyncClient(
            base_url=sv.base_url, timeout=10, headers={"Authorization": f"Bearer {KEY_A}"}
        )
        b = httpx2.AsyncClient(
            base_url=sv.base_url, timeout=10, headers={"Authorization": f"Bearer {KEY_B}"}
        )
        async with a, b:
            held = [
                await a.send(a.build_request("GET", session_path(f"s{i}") + "/events"), stream=True)
                for i in range(2)
            ]
            try:
                assert [r.status_code for r in held] == [200, 200]
                refused = await a.get(session_path("s3") + "/events")
                assert refused.status_code == 503
                assert refused.json()["type"] == ProblemType.TOO_MANY_STREAMS
                assert "max_follow_streams_per_tenant" in refused.json()["detail"]
                async with b.stream("GET", session_path("s0") + "/events") as other:
                    assert other.status_code == 200
            finally:
                for response in held:
                    await response.aclose()


class CountingStore:
    """A real store that counts the catch-up reads made of it."""

    def __init__(self, url: str) -> None:
        self.store = store_from_url(url)
        self.reads = 0

    async def read_seqs(self, *args: object, **kwargs: object) -> SeqPage:
        self.reads += 1
        return await self.store.read_seqs(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_followers_at_one_cursor_share_one_read(database_url: str) -> None:
    counting = CountingStore(database_url)
    await counting.store.open()
    try:
        await counting.store.append("t", "s", ['{"n":1}', '{"n":2}'])
        reads = SharedReads(counting, None)  # type: ignore[arg-type]
        pages = await asyncio.gather(*(reads.page("t", "s", 0) for _ in range(50)))
        assert counting.reads == 1
        assert {page.events for page in pages} == {pages[0].events}
        assert pages[0].events.count(b"event: append") == 2
    finally:
        await counting.store.close()


async def test_a_lagging_stream_is_told_to_resync(database_url: str) -> None:
    store = store_from_url(database_url)
    await store.open()
    hub = Hub(max_streams=10, max_per_tenant=10, local=True)
    stream = event_stream(SharedReads(store, None), hub, "t", "s", after=0, heartbeat=30)
    try:
        await store.append("t", "s", ['{"n":1}'])
        assert await anext(stream) == b": following\n\n"
        assert b"id: 1\n" in await anext(stream)
        # More pop notices than a stream keeps arrive while it is not reading.
        for _ in range(MAX_NOTICES + 1):
            hub.publish("pop", "t", "s", 7)
        waiting = asyncio.ensure_future(anext(stream))
        event = await asyncio.wait_for(waiting, 10)
        assert event.startswith(b"event: resync\n"), event
    finally:
        await stream.aclose()
        await store.close()


async def test_a_session_created_again_is_announced_before_its_items(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = session_path(session_id)
    for n in (1, 2, 3):
        await http.post(url + "/items", json={"items": [{"n": n}]})
    async with http.stream("GET", url + "/events", params={"after": 0}) as response:
        stream = events(response)
        assert [(await next_event(stream))["id"] for _ in range(3)] == ["1", "2", "3"]
        # Ended and begun again (as an expiry does on the next write) with more items
        # than the follower had seen: seqs 1-4 of the new session are new items.
        await http.delete(url)
        await http.post(url + "/items", json={"items": [{"m": n} for n in range(4)]})
        seen = [await next_event(stream) for _ in range(5)]
    assert seen[0]["event"] == "clear"
    assert [(e["event"], e["id"]) for e in seen[1:]] == [("append", str(i)) for i in range(1, 5)]
    assert [e["data"] for e in seen[1:]] == [f'{{"m":{n}}}' for n in range(4)]


async def test_a_session_expired_and_written_again_is_announced(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = session_path(session_id)
    for n in (1, 2, 3):
        await http.post(url + "/items", json={"items": [{"n": n}]}, headers={"Session-TTL": "1"})
    async with http.stream("GET", url + "/events", params={"after": 0}) as response:
        stream = events(response)
        assert [(await next_event(stream))["id"] for _ in range(3)] == ["1", "2", "3"]
        await asyncio.sleep(1.5)  # the session expires; its next write starts it afresh
        await http.post(url + "/items", json={"items": [{"m": 1}]})
        seen = [await next_event(stream) for _ in range(2)]
    assert [(e["event"], e.get("id")) for e in seen] == [("clear", None), ("append", "1")]
