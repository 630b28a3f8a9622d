"""Functions run in separate OS processes by the concurrency tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from session_memory_client import RemoteSession


def add_items_worker(base_url: str, session_id: str, writer: int, calls: int) -> int:
    """Call ``add_items`` ``calls`` times, one item each, tagged with writer and order."""

    async def run() -> int:
        async with RemoteSession(session_id, base_url=base_url) as remote:
            for n in range(calls):
                await remote.add_items([{"writer": writer, "n": n}])  # type: ignore[list-item]
        return calls

    return asyncio.run(run())


def pop_worker(base_url: str, session_id: str) -> list[str]:
    """Pop until the session is empty; return what was popped, as canonical JSON."""

    async def run() -> list[str]:
        popped: list[str] = []
        async with RemoteSession(session_id, base_url=base_url) as remote:
            while (item := await remote.pop_item()) is not None:
                popped.append(json.dumps(item, sort_keys=True))
        return popped

    return asyncio.run(run())


def canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def replica_writer(
    base_urls: list[str], session_id: str, writer: int, batches: int, batch_size: int
) -> tuple[list[int], list[int]]:
    """Append ``batches`` batches round-robin over replicas.

    A replica that fails a request is dropped from the rotation and that batch is
    not retried (it may or may not have committed). Returns (acknowledged, failed)
    batch numbers.
    """
    import aiohttp
    from session_memory_client import SessionMemoryError

    async def run() -> tuple[list[int], list[int]]:
        acked: list[int] = []
        failed: list[int] = []
        async with aiohttp.ClientSession() as shared:
            live = [
                RemoteSession(session_id, base_url=url, http_client=shared, timeout=10)
                for url in base_urls
            ]
            for batch in range(batches):
                if not live:
                    failed.extend(range(batch, batches))
                    break
                remote = live[(writer + batch) % len(live)]
                items: Any = [{"w": writer, "b": batch, "i": i} for i in range(batch_size)]
                try:
                    await remote.add_items(items)
                    acked.append(batch)
                except SessionMemoryError:
                    failed.append(batch)
                    live.remove(remote)
        return acked, failed

    return asyncio.run(run())


def replica_popper(base_urls: list[str], session_id: str, offset: int) -> list[str]:
    """Pop until empty, moving to the next replica on every call."""

    async def run() -> list[str]:
        import aiohttp

        popped: list[str] = []
        async with aiohttp.ClientSession() as shared:
            remotes = [RemoteSession(session_id, base_url=u, http_client=shared) for u in base_urls]
            call = offset
            while (item := await remotes[call % len(remotes)].pop_item()) is not None:
                popped.append(json.dumps(item, sort_keys=True))
                call += 1
        return popped

    return asyncio.run(run())
