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

from .payload import parse_item_batch
from .storage import SessionStore

__all__ = ["export_lines", "import_lines"]

PAGE = 1000
_ITEM_KEY = b',"item":'


async def export_lines(store: SessionStore) -> AsyncIterator[bytes]:
    """Yield the export, line by line (each ends with a newline)."""
    after: tuple[str, str] | None = None
    while sessions := await store.all_sessions(after=after):
        for tenant, session_id in sessions:
            head = b'{"tenant":%b,"session_id":%b,"item":' % (
                json.dumps(tenant, ensure_ascii=False).encode(),
                json.dumps(session_id, ensure_ascii=False).encode(),
            )
            cursor = 0
            while True:
                page = await store.read(tenant, session_id, limit=PAGE, after=cursor)
                for item in page.items:
                    yield head + item.encode() + b"}\n"
                if not page.has_more or page.last_seq is None:
                    break
                cursor = page.last_seq
        after = sessions[-1]


def _parse(line: bytes, number: int) -> tuple[str, str, str]:
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
    return str(head["tenant"]), str(head["session_id"]), item


async def import_lines(store: SessionStore, lines: Iterable[bytes]) -> tuple[int, int]:
    """Load an export; return (items added, items already there and skipped)."""
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
        tenant, session_id, item = _parse(line, number)
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
