"""Run lease clients run in processes of their own by the lease process tests.

``python -m tests.utils.lease_workers BASE_URL SESSION_ID`` is a run that holds the
lease, writes, says so (``held``), waits for a line on its stdin (the test pauses it
past its TTL meanwhile) and then tries to write again, printing whether that write
went through.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from session_memory_client import ProblemError, RemoteSession

__all__ = ["stale_holder", "turns_worker"]


async def stale_holder(base_url: str, session_id: str) -> None:
    async with (
        RemoteSession(session_id, base_url=base_url) as session,
        session.run_lease(ttl=1) as lease,
    ):
        await session.add_items([{"by": "stale", "n": 1}])
        print("held", lease.token, flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        try:
            await session.add_items([{"by": "stale", "n": 2}])
        except ProblemError as exc:
            print("refused", exc.type, flush=True)
        else:
            print("written", flush=True)


def turns_worker(
    urls: list[str], session_id: str, worker: int, turns: int, writes: int
) -> list[tuple[float, float]]:
    """``turns`` runs, each holding the lease for ``writes`` separate writes; through the
    replicas in turn. Returns each run's (start, end) in wall-clock seconds, taken while
    it held the lease."""

    async def run() -> list[tuple[float, float]]:
        held: list[tuple[float, float]] = []
        for turn in range(turns):
            url = urls[(worker + turn) % len(urls)]
            async with (
                RemoteSession(session_id, base_url=url) as session,
                session.run_lease(ttl=10, wait=60),
            ):
                start = time.time()
                for part in range(writes):
                    item: Any = {"w": worker, "t": turn, "p": part}
                    await session.add_items([item])
                held.append((start, time.time()))
        return held

    return asyncio.run(run())


if __name__ == "__main__":
    asyncio.run(stale_holder(sys.argv[1], sys.argv[2]))
