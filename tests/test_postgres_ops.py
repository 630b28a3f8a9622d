"""Operating on PostgreSQL: outage and recovery, several worker processes."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx2
import pytest
from session_memory_client import RemoteSession

from tests.utils.postgres import schema_url
from tests.utils.server import ServerProcess
from tests.utils.tcpproxy import TCPProxy

pytestmark = pytest.mark.slow  # real processes over TCP


def _wait_for_status(url: str, status: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx2.get(url, timeout=5).status_code
        except httpx2.TransportError as exc:
            last = repr(exc)
        if last == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"{url} answered {last}, not {status}, within {timeout}s")


async def test_service_recovers_after_the_database_comes_back(tmp_path: Path) -> None:
    with schema_url() as url:
        parts = urlsplit(url)
        proxy = TCPProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
        try:
            via_proxy = urlunsplit(
                parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}")
            )
            server = ServerProcess(
                via_proxy,
                log_path=tmp_path / "server.log",
                env={"SESSION_MEMORY_PG_CONNECT_TIMEOUT": "1"},
            )
            with server:
                async with RemoteSession("s", base_url=server.base_url) as remote:
                    await remote.add_items([{"n": 1}])  # type: ignore[list-item]

                proxy.cut()
                _wait_for_status(server.base_url + "/readyz", 503)
                response = httpx2.get(server.base_url + "/v1/sessions/s/items", timeout=10)
                assert response.status_code == 503
                assert response.headers["content-type"] == "application/problem+json"

                proxy.start()
                _wait_for_status(server.base_url + "/readyz", 200)
                async with RemoteSession("s", base_url=server.base_url) as remote:
                    await remote.add_items([{"n": 2}])  # type: ignore[list-item]
                    assert await remote.get_items() == [{"n": 1}, {"n": 2}]
        finally:
            proxy.close()


async def test_workers_share_one_postgres(tmp_path: Path) -> None:
    with (
        schema_url() as url,
        ServerProcess(
            url, log_path=tmp_path / "server.log", extra_args=["--workers", "2"]
        ) as server,
    ):
        async with RemoteSession("w", base_url=server.base_url) as remote:
            for n in range(50):
                await remote.add_items([{"n": n}])  # type: ignore[list-item]
            assert await remote.get_items() == [{"n": n} for n in range(50)]
        assert server.process is not None
        assert len(_worker_processes(server.process.pid)) == 2


def _worker_processes(pid: int) -> list[int]:
    """Children of ``pid`` started as multiprocessing workers (not its resource tracker)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(proc.name))
    return found
