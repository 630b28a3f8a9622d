"""History operations, measured: replace latency, live follow latency, fork of a long session.

Follow latency is from just before an append is sent on one connection to its event
arriving on another (through a second replica on PostgreSQL, so it crosses LISTEN/NOTIFY).
Run alone with ``python -m bench.history [--postgres-url URL]``; ``bench.run`` calls it too.
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2

from tests.utils.server import ServerProcess

__all__ = ["history_bench"]

ITEM = {"role": "user", "content": "x" * 150}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "n": len(ordered),
    }


def replace_latency(base_url: str, rounds: int) -> dict[str, float]:
    """Replace the last 10 items of a 100-item session, one request at a time."""
    with httpx2.Client(base_url=base_url, timeout=60) as http:
        url = "/v1/sessions/bench-replace/items"
        http.post(url, json={"items": [ITEM] * 100}).raise_for_status()
        samples = []
        for _ in range(rounds):
            last = http.get(url, params={"limit": 10}).json()["first_seq"]
            started = time.perf_counter()
            http.put(url, json={"items": [ITEM] * 10, "from_seq": last}).raise_for_status()
            samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def follow_latency(write_url: str, follow_url: str, rounds: int) -> dict[str, float]:
    """Append one item at a time on one connection; time until its event arrives on another."""
    session = f"bench-follow-{time.time_ns()}"
    arrived: queue.Queue[tuple[int, float]] = queue.Queue()
    ready = threading.Event()

    def follow() -> None:
        with (
            httpx2.Client(base_url=follow_url, timeout=None) as http,
            http.stream("GET", f"/v1/sessions/{session}/events", params={"after": 0}) as stream,
        ):
            try:
                for line in stream.iter_lines():
                    if line.startswith(":"):
                        ready.set()
                    elif line.startswith("id: "):
                        arrived.put((int(line[4:]), time.perf_counter()))
            except httpx2.TransportError:
                return  # the server stopped: the measurement is over

    threading.Thread(target=follow, daemon=True).start()
    ready.wait(30)
    samples = []
    with httpx2.Client(base_url=write_url, timeout=60) as http:
        url = f"/v1/sessions/{session}/items"
        for _ in range(rounds):
            sent = time.perf_counter()
            seq = http.post(url, json={"items": [ITEM]}).json()["last_seq"]
            while True:
                got, when = arrived.get(timeout=30)
                if got == seq:
                    break
            samples.append(when - sent)
    return _percentiles(samples)


def fork_seconds(base_url: str, items: int) -> float:
    """Build a session of ``items`` items, then time one fork of all of it."""
    with httpx2.Client(base_url=base_url, timeout=600) as http:
        source = f"bench-fork-{time.time_ns()}"
        for start in range(0, items, 10_000):
            batch = min(10_000, items - start)
            response = http.post(f"/v1/sessions/{source}/items", json={"items": [ITEM] * batch})
            response.raise_for_status()
        started = time.perf_counter()
        forked = http.post(f"/v1/sessions/{source}/fork", json={"session_id": source + "-b"})
        forked.raise_for_status()
        assert forked.json()["count"] == items
        return round(time.perf_counter() - started, 3)


def history_bench(work: Path, postgres_url: str | None, quick: bool) -> dict[str, Any]:
    rounds = 100 if quick else 300
    results: dict[str, Any] = {}
    backends = [("SQLite", f"sqlite:///{work}/history.db")]
    if postgres_url:
        backends.append(("PostgreSQL", postgres_url))
    for name, url in backends:
        with ExitStack() as stack:
            # The fork measured copies 100,000 items: past the default max_fork_items.
            unbounded = {"SESSION_MEMORY_MAX_FORK_ITEMS": "0", "SESSION_MEMORY_MAX_FORK_BYTES": "0"}
            a = stack.enter_context(
                ServerProcess(url, log_path=work / f"history-{name}-a.log", env=unbounded)
            )
            # On PostgreSQL the follower listens through a second replica.
            b = a
            if name == "PostgreSQL":
                b = stack.enter_context(ServerProcess(url, log_path=work / f"history-{name}-b.log"))
            row = {
                "replace (10 of 100 items)": replace_latency(a.base_url, rounds),
                "follow (append -> event)": follow_latency(a.base_url, b.base_url, rounds),
                "fork of 100,000 items (s)": fork_seconds(a.base_url, 100_000),
            }
        for key, value in row.items():
            print(f"  {name:11} {key:28} {value}", flush=True)
        results[name] = row
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="session-memory-history-"))
    try:
        print(json.dumps(history_bench(work, args.postgres_url, args.quick), indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
