"""Functions run in separate OS processes by the concurrency tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from client import RemoteSession


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
