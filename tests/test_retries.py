"""RemoteSession retries: transient failures are retried, writes never land twice."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from session_memory_client import ConnectError, ProblemError, RemoteSession

from tests.utils.scripted import Answer, Seen, in_turn, scripted_server
from tests.utils.server import ServerProcess, free_port

pytestmark = pytest.mark.slow  # real processes over TCP


CREATED = Answer(201, {"count": 1, "first_seq": 1, "last_seq": 1})


def answers(statuses: list[int]) -> list[Answer]:
    return [CREATED if status == 201 else Answer.problem(status) for status in statuses]


async def test_transient_statuses_are_retried_with_one_key() -> None:
    seen: list[Seen] = []
    async with (
        scripted_server(in_turn(answers([503, 502, 504, 201, 201])), seen) as url,
        RemoteSession("s", base_url=url, backoff=0.001) as remote,
    ):
        await remote.add_items([{"n": 1}])  # type: ignore[list-item]
        await remote.add_items([{"n": 2}])  # type: ignore[list-item]
    keys = [request.headers["idempotency-key"] for request in seen]
    assert len(set(keys[:4])) == 1  # one logical call, one key for all its attempts
    assert keys[4] != keys[0]  # the next call has its own
    assert [request.body for request in seen[:4]] == [b'{"items":[{"n":1}]}'] * 4


async def test_client_errors_are_not_retried() -> None:
    seen: list[Seen] = []
    async with (
        scripted_server(in_turn(answers([422, 201])), seen) as url,
        RemoteSession("s", base_url=url, backoff=0.001) as remote,
    ):
        with pytest.raises(ProblemError) as caught:
            await remote.add_items([{"n": 1}])  # type: ignore[list-item]
    assert caught.value.status == 422
    assert caught.value.problem["title"] == "x"
    assert len(seen) == 1


async def test_gives_up_after_the_retries() -> None:
    seen: list[Seen] = []
    async with (
        scripted_server(in_turn(answers([503] * 3)), seen) as url,
        RemoteSession("s", base_url=url, retries=2, backoff=0.001) as remote,
    ):
        with pytest.raises(ProblemError) as caught:
            await remote.pop_item()
    assert caught.value.status == 503
    assert len(seen) == 3


async def test_refused_connections_are_retried_then_raised() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RemoteSession("s", base_url=url, retries=2, backoff=0.01) as remote:
        with pytest.raises(ConnectError, match=url):
            await remote.get_items()


async def test_writes_retried_across_a_server_crash_land_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/r.db"
    port = free_port()
    server = ServerProcess(url, port=port, log_path=tmp_path / "server.log").start()
    milestones = {30: threading.Event(), 70: threading.Event(), 110: threading.Event()}
    crashes: list[int] = []

    def crash_and_restart() -> None:
        nonlocal server
        for reached in milestones.values():
            if not reached.wait(60):
                return
            crashes.append(server.kill())
            server = ServerProcess(url, port=port, log_path=tmp_path / "server.log").start()

    chaos = threading.Thread(target=crash_and_restart)
    chaos.start()
    try:
        async with RemoteSession("crashy", base_url=server.base_url, retries=12, backoff=0.05) as r:
            for n in range(150):
                if n in milestones:
                    milestones[n].set()  # the crash comes while the next calls are under way
                await r.add_items([{"n": n}, {"n": n, "second": True}])  # type: ignore[list-item]
                if n % 10 == 9:
                    await r.pop_item()
                    await r.add_items([{"n": n, "again": True}])  # type: ignore[list-item]
            await asyncio.to_thread(chaos.join)
            items = await r.get_items()
    finally:
        for event in milestones.values():
            event.set()
        chaos.join()
        server.kill()

    assert len(crashes) == 3
    expected = []
    for n in range(150):
        expected += [{"n": n}, {"n": n, "second": True}]
        if n % 10 == 9:
            expected[-1:] = [{"n": n, "again": True}]
    assert [json.dumps(i) for i in items] == [json.dumps(i) for i in expected]


async def test_default_retries_ride_out_ten_seconds_of_503() -> None:
    seen: list[Seen] = []
    now = 0.0
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        nonlocal now
        waits.append(seconds)
        now += seconds

    def answer(request: Seen) -> Answer:
        # A restart: the service answers 503 for twelve seconds (of the injected clock).
        return Answer.problem(503) if now < 12.0 else CREATED

    async with (
        scripted_server(answer, seen) as url,
        RemoteSession("s", base_url=url) as remote,
    ):  # default retry settings
        remote._transport._clock = lambda: now
        remote._transport._sleep = sleep
        await remote.add_items([{"n": 1}])  # type: ignore[list-item]
    assert now >= 12.0
    assert max(waits) <= 2.0  # backoff capped at a few seconds
    assert len({request.headers["idempotency-key"] for request in seen}) == 1
