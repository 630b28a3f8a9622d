"""Live follow against real server processes: restarts, replicas, shutdown, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from session_memory_client.protocol import ProblemType, session_path

from tests.test_history_api import events, next_event
from tests.utils.postgres import schema_url
from tests.utils.server import ServerProcess


async def _append(base_url: str, session_id: str, *ns: int) -> None:
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post(
            session_path(session_id) + "/items", json={"items": [{"n": n} for n in ns]}
        )
        assert response.status_code == 201, response.text


async def _ids(
    base_url: str, session_id: str, count: int, headers: dict[str, str]
) -> AsyncIterator[str]:
    async with (
        httpx2.AsyncClient(base_url=base_url, timeout=30) as http,
        http.stream("GET", session_path(session_id) + "/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        stream = events(response)
        for _ in range(count):
            yield (await next_event(stream))["id"]


@pytest.mark.slow
async def test_follow_resumes_across_a_restart_with_last_event_id(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/follow.db"
    with ServerProcess(url, log_path=tmp_path / "first.log") as first:
        await _append(first.base_url, "s", 1, 2, 3)
        seen = [i async for i in _ids(first.base_url, "s", 2, {"Last-Event-ID": "0"})]
    assert seen == ["1", "2"]
    with ServerProcess(url, log_path=tmp_path / "second.log") as second:
        await _append(second.base_url, "s", 4)
        resumed = [i async for i in _ids(second.base_url, "s", 2, {"Last-Event-ID": seen[-1]})]
    assert resumed == ["3", "4"]


@pytest.mark.slow
async def test_follow_through_one_replica_sees_writes_through_another(tmp_path: Path) -> None:
    with (
        schema_url() as url,
        ServerProcess(url, log_path=tmp_path / "a.log") as a,
        ServerProcess(url, log_path=tmp_path / "b.log") as b,
    ):
        async with (
            httpx2.AsyncClient(base_url=b.base_url, timeout=30) as http,
            http.stream("GET", session_path("shared") + "/events") as response,
        ):
            stream = events(response)
            assert await asyncio.wait_for(anext(stream), 10) == {"comment": "following"}
            await _append(a.base_url, "shared", 1)
            event = await next_event(stream)
            assert (event["id"], event["data"]) == ("1", '{"n":1}')
            async with httpx2.AsyncClient(base_url=a.base_url) as other:
                await other.delete(session_path("shared"))
            assert (await next_event(stream))["event"] == "clear"


@pytest.mark.slow
async def test_heartbeat_cap_and_prompt_shutdown(tmp_path: Path) -> None:
    env = {
        "SESSION_MEMORY_FOLLOW_HEARTBEAT_SECONDS": "0.2",
        "SESSION_MEMORY_MAX_FOLLOW_STREAMS": "1",
        # Far longer than the stop below waits: only ending the stream lets it exit.
        "SESSION_MEMORY_SHUTDOWN_TIMEOUT_SECONDS": "120",
    }
    server = ServerProcess(f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "s.log", env=env)
    with server:
        async with (
            httpx2.AsyncClient(base_url=server.base_url, timeout=30) as http,
            http.stream("GET", session_path("s") + "/events") as response,
        ):
            stream = events(response)
            assert await asyncio.wait_for(anext(stream), 10) == {"comment": "following"}
            assert await asyncio.wait_for(anext(stream), 10) == {"comment": "heartbeat"}
            refused = await http.get(session_path("t") + "/events")
            assert refused.status_code == 503
            assert refused.json()["type"] == ProblemType.TOO_MANY_STREAMS
            assert await asyncio.to_thread(server.stop, timeout=15) == 0
            rest = [event async for event in stream]
            assert all("comment" in event for event in rest)


async def test_postgres_notifies_only_followed_sessions() -> None:
    import asyncpg
    from session_memory.storage import store_from_url

    with schema_url() as url:
        store = store_from_url(url)
        await store.open()
        listener = await asyncpg.connect(url)
        received: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener("session_memory", lambda *args: received.put_nowait(args[3]))
        try:
            await store.append("t", "unfollowed", ['{"n":1}'])
            await listener.execute(
                "INSERT INTO session_followers VALUES ('t', 'followed', pg_backend_pid())"
            )
            await store.append("t", "followed", ['{"n":1}'])
            # Notifications arrive in commit order: the first one is the followed write's.
            payload = json.loads(await asyncio.wait_for(received.get(), 10))
            assert payload[0] == "append"
            assert payload[2:4] == ["t", "followed"]
        finally:
            await listener.close()
            await store.close()


@pytest.mark.slow
async def test_head_of_an_event_stream_ends_and_frees_its_slot(tmp_path: Path) -> None:
    env = {"SESSION_MEMORY_MAX_FOLLOW_STREAMS": "1"}
    server = ServerProcess(f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "s.log", env=env)
    with server:
        async with httpx2.AsyncClient(base_url=server.base_url, timeout=10) as http:
            for _ in range(3):
                head = await http.head(session_path("s") + "/events")
                assert head.status_code == 200
                assert head.headers["content-type"].startswith("text/event-stream")
                assert head.content == b""
            # The one slot is free again: HEADs held none once answered.
            async with http.stream("GET", session_path("s") + "/events") as response:
                assert response.status_code == 200
                stream = events(response)
                assert await asyncio.wait_for(anext(stream), 10) == {"comment": "following"}
