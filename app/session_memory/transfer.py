"""Export and import: every session of every tenant as JSON Lines, one item per line.

    {"tenant": "team-a", "session_id": "user-42", "item": {...}}

Lines come session by session, items oldest first; each item is written byte for
byte as stored. Importing is idempotent: a session that already holds k items skips
the first k lines of that session, so importing a file twice, or resuming an
interrupted import, adds nothing twice. Export, import into an empty database and
export again gives the same file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

from session_memory_client import SessionMemoryClient

from .items.payload import parse_item_batch, split_items
from .storage import SessionStore

__all__ = ["export_from_server", "export_lines", "import_lines"]

PAGE = 1000
_ITEM_KEY = b',"item":'


def _head(tenant: str | None, session_id: str) -> bytes:
    return b'{"tenant":%b,"session_id":%b,"item":' % (
        json.dumps(tenant, ensure_ascii=False).encode(),
        json.dumps(session_id, ensure_ascii=False).encode(),
    )


async def export_lines(store: SessionStore) -> AsyncIterator[bytes]:
    """Yield the export, line by line (each ends with a newline)."""
    after: tuple[str, str] | None = None
    while sessions := await store.all_sessions(after=after):
        for tenant, session_id in sessions:
            head = _head(tenant, session_id)
            cursor = 0
            while True:
                page = await store.read(tenant, session_id, limit=PAGE, after=cursor)
                for item in page.items:
                    yield head + item.encode() + b"}\n"
                if not page.has_more or page.last_seq is None:
                    break
                cursor = page.last_seq
        after = sessions[-1]


async def export_from_server(base_url: str, api_key: str | None) -> AsyncIterator[bytes]:
    """The export of the sessions one API key sees, read over HTTP from a running server.

    The key's tenant is not known to its holder, so lines carry ``"tenant": null``;
    ``import --tenant`` says where they go. Errors are the client's
    (``session_memory_client.SessionMemoryError``).
    """
    async with SessionMemoryClient(base_url=base_url, api_key=api_key, timeout=60) as client:
        async for record in client.iter_sessions(page_size=PAGE):
            head = _head(None, record["id"])
            session = client.session(record["id"])
            after = 0
            while True:
                page = await session.read_items(limit=PAGE, after=after)
                # The service returns items byte for byte: keep them so.
                for item in split_items(page.content):
                    yield head + item.encode() + b"}\n"
                if not page.has_more or page.last_seq is None:
                    break
                after = page.last_seq


def _parse(line: bytes, number: int) -> tuple[str | None, str, str]:
    # The item is the last member, written as stored: take its text as it is, since
    # decoding and re-encoding it could change it. A quote inside a JSON string is
    # always escaped, so the first ',"item":' is this key.
    cut = line.find(_ITEM_KEY)
    if cut < 0 or not line.endswith(b"}"):
        raise ValueError(f"line {number}: not an export line")
    head = json.loads(line[:cut] + b"}")
    if not isinstance(head, dict) or not {"tenant", "session_id"} <= head.keys():
        raise ValueError(f"line {number}: needs tenant and session_id")
    try:
        (item,) = parse_item_batch(b'{"items":[' + line[cut + len(_ITEM_KEY) : -1] + b"]}")
    except Exception as exc:
        raise ValueError(f"line {number}: {exc}") from None
    tenant = head["tenant"]
    return None if tenant is None else str(tenant), str(head["session_id"]), item


async def import_lines(
    store: SessionStore, lines: Iterable[bytes], *, default_tenant: str = ""
) -> tuple[int, int]:
    """Load an export; return (items added, items already there and skipped).

    Lines without a tenant (exported from a server) go to ``default_tenant``.
    """
    added = skipped = 0
    current: tuple[str, str] | None = None
    to_skip = 0
    batch: list[str] = []

    async def flush() -> None:
        nonlocal added
        if current is not None and batch:
            await store.append(current[0], current[1], batch)
            added += len(batch)
            batch.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        found_tenant, session_id, item = _parse(line, number)
        tenant = default_tenant if found_tenant is None else found_tenant
        if (tenant, session_id) != current:
            await flush()
            current = (tenant, session_id)
            info = await store.get_session(tenant, session_id)
            to_skip = info.item_count if info else 0
        if to_skip:
            to_skip -= 1
            skipped += 1
            continue
        batch.append(item)
        if len(batch) >= PAGE:
            await flush()
    await flush()
    return added, skipped
