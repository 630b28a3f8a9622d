"""The Python load generator: one function run in each client process.

The same code drives the SDK's SQLiteSession, RemoteSession against session-memory,
and RemoteSession against the bare-ASGI ceiling, so the three are compared like for
like.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

ITEM: dict[str, Any] = {"role": "user", "content": "x" * 1000}  # about 1 KB as JSON

OPS = ("add_items(1)", "add_items(10)", "get_items(20)", "pop_item")


def _session(kind: str, target: str, session_id: str, http: Any) -> Any:
    if kind == "sqlite_session":
        from agents import SQLiteSession

        return SQLiteSession(session_id, target)
    from session_memory_client import RemoteSession

    return RemoteSession(session_id, base_url=target, http_client=http)


async def _call(session: Any, op: str) -> None:
    if op == "add_items(1)":
        await session.add_items([ITEM])
    elif op == "add_items(10)":
        await session.add_items([ITEM] * 10)
    elif op == "get_items(20)":
        await session.get_items(limit=20)
    else:
        await session.pop_item()


def run_clients(
    kind: str, target: str, op: str, session_id: str, tasks: int, seconds: float
) -> list[float]:
    """Run ``tasks`` concurrent loops of ``op`` for ``seconds``; return each call's latency."""

    async def main() -> list[float]:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=tasks)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            # One session object per process, shared by its tasks, as an agent process would.
            session = _session(kind, target, session_id, http)
            await _call(session, "get_items(20)")  # warm the connection and the file
            latencies: list[float] = []
            deadline = time.perf_counter() + seconds

            async def loop() -> None:
                while (start := time.perf_counter()) < deadline:
                    await _call(session, op)
                    latencies.append(time.perf_counter() - start)

            await asyncio.gather(*(loop() for _ in range(tasks)))
            if kind == "sqlite_session":
                session.close()
            return latencies

    return asyncio.run(main())


def prefill(kind: str, target: str, session_id: str, count: int) -> None:
    """Put ``count`` items into a session, in large batches."""

    async def main() -> None:
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            session = _session(kind, target, session_id, http)
            await session.clear_session()
            for start in range(0, count, 1000):
                await session.add_items([ITEM] * min(1000, count - start))
            if kind == "sqlite_session":
                session.close()

    asyncio.run(main())
