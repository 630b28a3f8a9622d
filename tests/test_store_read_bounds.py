"""Reads bounded by bytes as well as by count, on every backend (the ``store`` fixture),
and the client reading past a page cut short by bytes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from session_memory.storage import SessionStore
from session_memory_client import RemoteSession

from .utils.server import ServerProcess

T = "tenant-a"


def item(n: int, size: int) -> str:
    """A JSON object of exactly ``size`` bytes."""
    head = f'{{"n":{n},"pad":"'
    return head + "x" * (size - len(head) - 2) + '"}'


async def test_a_tail_read_stops_at_the_byte_bound(store: SessionStore) -> None:
    items = [item(n, 100) for n in range(1, 11)]
    await store.append(T, "s", items)
    page = await store.read(T, "s", limit=10, max_bytes=250)
    assert page.items == items[-2:]
    assert (page.first_seq, page.last_seq, page.has_more) == (9, 10, True)
    older = await store.read(T, "s", limit=10, before=page.first_seq, max_bytes=250)
    assert older.items == items[-4:-2]
    assert older.has_more


async def test_a_forward_read_stops_at_the_byte_bound(store: SessionStore) -> None:
    items = [item(n, 100) for n in range(1, 11)]
    await store.append(T, "s", items)
    page = await store.read(T, "s", limit=10, after=0, max_bytes=300)
    assert page.items == items[:3]  # exactly the bound: kept
    assert (page.first_seq, page.last_seq, page.has_more) == (1, 3, True)
    rest = await store.read(T, "s", limit=100, after=8, max_bytes=300)
    assert (rest.items, rest.has_more) == (items[8:], False)


async def test_an_item_over_the_bound_comes_alone(store: SessionStore) -> None:
    await store.append(T, "s", [item(1, 50), item(2, 5000), item(3, 5000)])
    page = await store.read(T, "s", limit=3, max_bytes=1000)
    assert (page.items, page.first_seq, page.has_more) == ([item(3, 5000)], 3, True)
    page = await store.read(T, "s", limit=3, before=3, max_bytes=1000)
    assert (page.items, page.has_more) == ([item(2, 5000)], True)
    page = await store.read(T, "s", limit=3, before=2, max_bytes=1000)
    assert (page.items, page.has_more) == ([item(1, 50)], False)


async def test_the_bound_counts_utf8_bytes(store: SessionStore) -> None:
    wide = json.dumps({"s": "é" * 40}, ensure_ascii=False)  # 40 characters, 80 bytes
    await store.append(T, "s", [wide, wide])
    assert len(wide) * 2 < 150 < len(wide.encode()) * 2
    page = await store.read(T, "s", limit=2, max_bytes=150)
    assert (len(page.items), page.has_more) == (1, True)


async def test_a_bounded_read_keeps_the_revision(store: SessionStore) -> None:
    result = await store.append(T, "s", [item(1, 100)])
    assert (await store.read(T, "s", limit=5, max_bytes=10)).revision == result.revision
    empty = await store.read(T, "s", limit=5, after=1, max_bytes=10)
    assert (empty.items, empty.revision) == ([], result.revision)
    assert (await store.read(T, "nobody", limit=5, max_bytes=10)).revision == 0


@pytest.mark.slow
async def test_remote_session_gets_limit_items_across_byte_bounded_pages(
    tmp_path: Path,
) -> None:
    # 1 KiB pages and items of 600 bytes: every page holds one item.
    with ServerProcess(
        f"sqlite:///{tmp_path}/pages.db",
        log_path=tmp_path / "server.log",
        env={"SESSION_MEMORY_MAX_READ_PAGE_BYTES": "1024"},
    ) as server:
        async with RemoteSession("paged", base_url=server.base_url) as session:
            items = [json.loads(item(n, 600)) for n in range(8)]
            await session.add_items(items)  # type: ignore[arg-type]
            assert await session.get_items(limit=5) == items[-5:]
            assert await session.get_items(limit=20) == items
            assert await session.get_items() == items  # streamed, page by page
            answer = httpx2.get(server.base_url + "/v1/sessions/paged/items?limit=5")
            assert len(answer.json()["items"]) == 1
