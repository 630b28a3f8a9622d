"""Many OS processes on one session through RemoteSession, and durability across restarts."""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from session_memory_client import RemoteSession

from tests.utils.server import ServerProcess
from tests.utils.workers import add_items_worker, canonical, pop_worker

pytestmark = pytest.mark.slow  # real processes over TCP

SPAWN = multiprocessing.get_context("spawn")


async def test_four_processes_append_1000_items_each_once_in_writer_order(
    base_url: str, session_id: str
) -> None:
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        futures = [pool.submit(add_items_worker, base_url, session_id, w, 250) for w in range(4)]
        assert [f.result(timeout=120) for f in futures] == [250] * 4

    async with RemoteSession(session_id, base_url=base_url) as remote:
        items = await remote.get_items()
    assert len(items) == 1000
    assert len({canonical(item) for item in items}) == 1000
    for writer in range(4):
        order = [item["n"] for item in items if item["writer"] == writer]  # type: ignore[typeddict-item]
        assert order == list(range(250))


async def test_eight_concurrent_poppers_each_item_once(base_url: str, session_id: str) -> None:
    expected = [{"n": n} for n in range(400)]
    async with RemoteSession(session_id, base_url=base_url) as remote:
        for start in range(0, 400, 100):
            await remote.add_items(expected[start : start + 100])  # type: ignore[arg-type]

    with ProcessPoolExecutor(8, mp_context=SPAWN) as pool:
        futures = [pool.submit(pop_worker, base_url, session_id) for _ in range(8)]
        results = [f.result(timeout=120) for f in futures]

    popped = [text for result in results for text in result]
    assert sorted(popped) == sorted(canonical(item) for item in expected)
    assert len(popped) == 400
    async with RemoteSession(session_id, base_url=base_url) as remote:
        assert await remote.get_items() == []


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/restart.db"


async def test_items_survive_graceful_restart(tmp_path: Path) -> None:
    first = ServerProcess(_url(tmp_path), log_path=tmp_path / "server.log").start()
    async with RemoteSession("kept", base_url=first.base_url) as remote:
        await remote.add_items([{"n": n} for n in range(10)])  # type: ignore[misc]
    assert first.stop(signal.SIGTERM) == 0

    with ServerProcess(_url(tmp_path), log_path=tmp_path / "server.log") as second:
        async with RemoteSession("kept", base_url=second.base_url) as remote:
            assert await remote.get_items() == [{"n": n} for n in range(10)]


async def test_acknowledged_items_survive_sigkill(tmp_path: Path) -> None:
    first = ServerProcess(_url(tmp_path), log_path=tmp_path / "server.log").start()
    async with RemoteSession("crash", base_url=first.base_url) as remote:
        for n in range(20):
            await remote.add_items([{"n": n}])  # type: ignore[list-item]
    first.kill()

    with ServerProcess(_url(tmp_path), log_path=tmp_path / "server.log") as second:
        async with RemoteSession("crash", base_url=second.base_url) as remote:
            assert await remote.get_items() == [{"n": n} for n in range(20)]
