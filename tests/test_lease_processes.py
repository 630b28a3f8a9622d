"""Run leases between processes: a stale holder is fenced off, one lease is held at a
time, under load nothing is lost or duplicated, and followers see runs. On SQLite (one
server) and on PostgreSQL through two replicas, each client going through either."""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from session_memory_client.protocol import RUN_LEASE, ProblemType, session_path

from tests.test_history_api import events, next_event
from tests.utils.lease_workers import turns_worker
from tests.utils.postgres import schema_url
from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP

ROOT = Path(__file__).resolve().parent.parent
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture(params=["sqlite", "postgres-replicas"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The base URLs to spread clients over: one SQLite server, or two replicas."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/leases.db"
            count = 1
        else:
            url = stack.enter_context(schema_url())
            count = 2
        processes = [
            stack.enter_context(ServerProcess(url, log_path=tmp_path / f"server{n}.log"))
            for n in range(count)
        ]
        yield [process.base_url for process in processes]


def _items(base_url: str, session_id: str) -> list[dict[str, Any]]:
    response = httpx2.get(base_url + session_path(session_id) + "/items", timeout=30)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_stale_holder_s_late_writes_are_refused(servers: list[str]) -> None:
    session_id = "stale"
    holder = spawn(
        [sys.executable, "-m", "tests.utils.lease_workers", servers[0], session_id],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        held = holder.stdout.readline().split()
        assert held[0] == "held", held
        # Paused past its TTL (1 s): it cannot renew, and the lease expires.
        holder.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        lease_url = servers[-1] + session_path(session_id) + "/lease"
        acquired = httpx2.post(lease_url, json={"ttl": 30, "wait": 10}, timeout=30)
        assert acquired.status_code == 200, acquired.text
        assert time.monotonic() - started < 5
        token = acquired.json()["token"]
        assert token > int(held[1])
        items_url = servers[-1] + session_path(session_id) + "/items"
        written = httpx2.post(
            items_url, json={"items": [{"by": "fresh", "n": 1}]}, headers={RUN_LEASE: str(token)}
        )
        assert written.status_code == 201
        # Resumed: its late write is refused, and changes nothing.
        holder.stdin.write("go\n")
        holder.stdin.flush()
        holder.send_signal(signal.SIGCONT)
        outcome = holder.stdout.readline().split()
        assert outcome == ["refused", ProblemType.LEASE_LOST], outcome
        assert holder.wait(30) == 0
    finally:
        holder.send_signal(signal.SIGCONT)
        end_group(holder)
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()
    assert _items(servers[0], session_id) == [{"by": "stale", "n": 1}, {"by": "fresh", "n": 1}]
    # The fresh holder still holds the lease: the stale one's exit released nothing.
    still = httpx2.post(servers[0] + session_path(session_id) + "/lease", json={})
    assert still.status_code == 409
    assert still.json()["type"] == ProblemType.SESSION_LEASED


WORKERS = 4
TURNS = 12
WRITES = 3


def test_one_lease_at_a_time_and_whole_turns_under_load(servers: list[str]) -> None:
    session_id = "turns"
    with ProcessPoolExecutor(WORKERS, mp_context=SPAWN) as pool:
        futures = [
            pool.submit(turns_worker, servers, session_id, worker, TURNS, WRITES)
            for worker in range(WORKERS)
        ]
        held = sorted(span for future in futures for span in future.result(timeout=300))

    # No two runs held the lease at once (each span was taken while its run held it).
    for (_, end), (start, _) in itertools.pairwise(held):
        assert end <= start, "two runs held the lease at the same time"
    views = [_items(url, session_id) for url in servers]
    assert all(view == views[0] for view in views)
    items = views[0]
    # Every write landed once, and each run's writes lie together, in order.
    assert len(items) == WORKERS * TURNS * WRITES
    turns = [items[n : n + WRITES] for n in range(0, len(items), WRITES)]
    seen = set()
    for turn in turns:
        key = (turn[0]["w"], turn[0]["t"])
        assert turn == [{"w": key[0], "t": key[1], "p": p} for p in range(WRITES)], turn
        assert key not in seen
        seen.add(key)
    assert seen == {(w, t) for w in range(WORKERS) for t in range(TURNS)}


async def test_followers_on_any_replica_see_runs(servers: list[str]) -> None:
    session_id = "followed-run"
    lease_url = session_path(session_id) + "/lease"
    async with (
        httpx2.AsyncClient(base_url=servers[-1], timeout=30) as follower,
        httpx2.AsyncClient(base_url=servers[0], timeout=30) as runner,
        follower.stream("GET", session_path(session_id) + "/events") as response,
    ):
        stream = events(response)
        assert await asyncio.wait_for(anext(stream), 10) == {"comment": "following"}
        acquired = await runner.post(lease_url, json={"ttl": 30})
        token = acquired.json()["token"]
        event = await next_event(stream)
        assert event["event"] == "lease"
        assert json.loads(event["data"])["token"] == token
        released = await runner.delete(lease_url, headers={RUN_LEASE: str(token)})
        assert released.status_code == 204
        event = await next_event(stream)
        assert (event["event"], json.loads(event["data"])) == ("lease-end", {"token": token})


def test_an_acquisition_whose_caller_left_while_waiting_is_never_granted(
    servers: list[str],
) -> None:
    """A waiting acquisition stops when its client closes the connection: were it
    granted later, nobody could use or release that lease until its TTL ends."""
    session_id = "left-waiting"
    lease_path = session_path(session_id) + "/lease"
    held = httpx2.post(servers[0] + lease_path, json={"ttl": 60}, timeout=30)
    assert held.status_code == 200, held.text
    host, port = servers[-1].removeprefix("http://").split(":")
    body = json.dumps({"ttl": 60, "wait": 20}).encode()
    head = (
        f"POST {lease_path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as waiter:
        waiter.sendall(head + body)
        # It is waiting (nothing answered yet) when it leaves.
        waiter.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiter.recv(1)
    release = httpx2.delete(
        servers[0] + lease_path, headers={RUN_LEASE: str(held.json()["token"])}, timeout=30
    )
    assert release.status_code == 204, release.text
    # The lease is free: the waiter that left took nothing (it would have, a moment
    # after the release, had it kept waiting).
    time.sleep(0.6)
    free = httpx2.post(servers[0] + lease_path, json={"ttl": 5}, timeout=30)
    assert free.status_code == 200, free.text
