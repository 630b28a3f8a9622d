"""Export and import: every session of every tenant as JSON Lines, one item per line.

    {"tenant": "team-a", "session_id": "user-42", "item": {...}}
    {"tenant": "team-a", "session_id": "user-42", "item_text": "{\n  \"role\": ...}"}

Lines come session by session, items oldest first; each item is written byte for
byte as stored. An item holding a line break (legal whitespace between its tokens)
goes in ``item_text``, as a JSON string of its exact text, so every line is one line
whatever the item holds. Importing is idempotent: a session that already holds k
items skips the first k lines of that session, so importing a file twice, or
resuming an interrupted import, adds nothing twice. Export, import into an empty
database and export again gives the same file.

Import skips nothing silently: a bad line is reported by number, and the later lines
of its session are not imported (an item missing from the middle would shift every
later one) and reported too; every other session is imported, and the report says
what was left out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from session_memory_client import SessionMemoryClient

from .storage import SessionStore
from .wire.items import parse_item_batch, split_items

__all__ = ["ImportReport", "export_from_server", "export_line", "export_lines", "import_lines"]

PAGE = 1000
_ITEM_KEY = b',"item":'


_ITEM_TEXT = "item_text"


def _head(tenant: str | None, session_id: str) -> bytes:
    return b'{"tenant":%b,"session_id":%b' % (
        json.dumps(tenant, ensure_ascii=False).encode(),
        json.dumps(session_id, ensure_ascii=False).encode(),
    )


def export_line(head: bytes, item: str) -> bytes:
    """One export line (ending in a newline) for ``item`` under ``head``, on one line."""
    if "\n" in item or "\r" in item:
        # JSON escapes the line breaks inside a string; loading it gives the text back.
        text = json.dumps(item, ensure_ascii=False).encode()
        return head + b',"%b":%b}\n' % (_ITEM_TEXT.encode(), text)
    return head + _ITEM_KEY + item.encode() + b"}\n"


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
                    yield export_line(head, item)
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
                    yield export_line(head, item)
                if not page.has_more or page.last_seq is None:
                    break
                after = page.last_seq


def _parse(line: bytes, number: int) -> tuple[str | None, str, str]:
    # The item is the last member, written as stored: take its text as it is, since
    # decoding and re-encoding it could change it. A quote inside a JSON string is
    # always escaped, so the first ',"item":' is this key.
    cut = line.find(_ITEM_KEY)
    if cut < 0:
        return _parse_item_text(line, number)
    if not line.endswith(b"}"):
        raise ValueError(f"line {number}: not an export line")
    head = _load_head(line[:cut] + b"}", number)
    item = _one_item(line[cut + len(_ITEM_KEY) : -1], number)
    return _tenant(head), str(head["session_id"]), item


def _parse_item_text(line: bytes, number: int) -> tuple[str | None, str, str]:
    head = _load_head(line, number)
    text = head.get(_ITEM_TEXT)
    if not isinstance(text, str):
        raise ValueError(f"line {number}: needs an item or an item_text")
    return _tenant(head), str(head["session_id"]), _one_item(text.encode(), number)


def _load_head(text: bytes, number: int) -> dict[str, object]:
    try:
        head = json.loads(text)
    except ValueError:
        raise ValueError(f"line {number}: not an export line (not JSON)") from None
    if not isinstance(head, dict) or not {"tenant", "session_id"} <= head.keys():
        raise ValueError(f"line {number}: needs tenant and session_id")
    return head


def _tenant(head: dict[str, object]) -> str | None:
    tenant = head["tenant"]
    return None if tenant is None else str(tenant)


def _one_item(text: bytes, number: int) -> str:
    try:
        (item,) = parse_item_batch(b'{"items":[' + text + b"]}")
    except Exception as exc:
        raise ValueError(f"line {number}: {exc}") from None
    return item


@dataclass
class ImportReport:
    """What an import did: items added, items already there, and every line left out.

    ``errors`` names each bad line, and each session whose later lines were not
    imported because of one; an import with errors did not load the whole file.
    """

    added: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


async def import_lines(
    store: SessionStore, lines: Iterable[bytes], *, default_tenant: str = ""
) -> ImportReport:
    """Load an export and report what was added, skipped and left out.

    Lines without a tenant (exported from a server) go to ``default_tenant``.
    """
    report = ImportReport()
    current: tuple[str, str] | None = None
    to_skip = 0
    batch: list[str] = []
    # A session with a bad line: the line's number and how many later lines were left.
    broken: dict[tuple[str, str], list[int]] = {}

    async def flush() -> None:
        if current is not None and batch:
            await store.append(current[0], current[1], batch)
            report.added += len(batch)
            batch.clear()

    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            found_tenant, session_id, item = _parse(line, number)
        except ValueError as exc:
            report.errors.append(str(exc))
            # The line's session is unknown: count it against the one being read.
            await flush()
            if current is not None:
                broken.setdefault(current, [number, 0])
            continue
        tenant = default_tenant if found_tenant is None else found_tenant
        if (tenant, session_id) in broken:
            broken[(tenant, session_id)][1] += 1
            continue
        if (tenant, session_id) != current:
            await flush()
            current = (tenant, session_id)
            info = await store.get_session(tenant, session_id)
            to_skip = info.item_count if info else 0
        if to_skip:
            to_skip -= 1
            report.skipped += 1
            continue
        batch.append(item)
        if len(batch) >= PAGE:
            await flush()
    await flush()
    for (tenant, session_id), (number, left) in broken.items():
        if left:
            report.errors.append(
                f"session {session_id!r} of tenant {tenant!r}: {left} lines after line "
                f"{number} not imported (fix that line and import again)"
            )
    return report
