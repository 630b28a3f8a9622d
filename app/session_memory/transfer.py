"""Export and import: every session of every tenant as JSON Lines, restored exactly.

Each session is one session line, then one line per item, oldest first:

    {"tenant":"team-a","session_id":"user-42","session":{"created_at":1764096016.635544,
     "updated_at":1764096020.1,"last_seq":4,"ttl":3600.0,"expires_at":1764099620.1,
     "metadata":{"user":"ada"}}}
    {"tenant":"team-a","session_id":"user-42","seq":1,"item":{...}}
    {"tenant":"team-a","session_id":"user-42","seq":3,"item_text":"{\n  \"role\": ...}"}

(the session line is one line). Times are seconds since the Unix epoch; ``ttl`` is
the session's own time-to-live (null: the store's default applies), ``expires_at``
when it expires unless written again (null: never), ``last_seq`` the highest seq it
has given. Each item is written byte for byte as stored, with its own seq; an item
holding a line break (legal whitespace between its tokens) goes in ``item_text``, as
a JSON string of its exact text, so every line is one line whatever the item holds.

Import restores each session as its line says (``HistoryStore.restore``): the same
items, seqs, metadata, time-to-live, expiry and times. A session already expired
when imported is left out (and counted). Importing is idempotent: items at or below
a session's newest item are taken as already there, so importing a file twice, or
resuming an interrupted import, adds nothing twice. Export, import into an empty
database and export again gives the same file.

Lines of the first format (``{"tenant", "session_id", "item"}``: no session line and
no seqs) still import as they always did: appended after skipping as many lines of
a session as it already holds.

Import skips nothing silently: a bad line is reported by number, and the later lines
of its session are not imported (an item missing from the middle would shift every
later one) and reported too; every other session is imported, and the report says
what was left out.

Import honours run leases as any write without a token does: a session a run holds
(its lease refusing unleased writes) is not written under it. Its items from the
refused batch on are left out and reported; the other sessions are imported. The
import can be run again once the run ended and adds only what is missing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from session_memory_client import RemoteSession, SessionMemoryClient

from .storage import HistoryStore, SessionBackup, SessionLeasedError
from .wire.headers import MAX_SESSION_TTL
from .wire.items import parse_item_batch, split_items

__all__ = [
    "ImportReport",
    "export_from_server",
    "export_line",
    "export_lines",
    "import_lines",
    "session_line",
]

PAGE = 1000
# Bytes of items one export read, or one import write, holds at most (about).
PAGE_BYTES = 16 * 1024 * 1024
_ITEM_KEY = b',"item":'
_SESSION_KEY = b',"session":'
_ITEM_TEXT = "item_text"


def _head(tenant: str | None, session_id: str, seq: int | None = None) -> bytes:
    head = b'{"tenant":%b,"session_id":%b' % (
        json.dumps(tenant, ensure_ascii=False).encode(),
        json.dumps(session_id, ensure_ascii=False).encode(),
    )
    return head if seq is None else head + b',"seq":%d' % seq


def export_line(head: bytes, item: str) -> bytes:
    """One export line (ending in a newline) for ``item`` under ``head``, on one line."""
    if "\n" in item or "\r" in item:
        # JSON escapes the line breaks inside a string; loading it gives the text back.
        text = json.dumps(item, ensure_ascii=False).encode()
        return head + b',"%b":%b}\n' % (_ITEM_TEXT.encode(), text)
    return head + _ITEM_KEY + item.encode() + b"}\n"


def session_line(tenant: str | None, session_id: str, backup: SessionBackup) -> bytes:
    """The line that opens a session's lines: its record as a backup keeps it."""
    record = {
        "created_at": backup.created_at,
        "updated_at": backup.updated_at,
        "last_seq": backup.last_seq,
        "ttl": backup.ttl,
        "expires_at": backup.expires_at,
        "metadata": None if backup.metadata is None else json.loads(backup.metadata),
    }
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return _head(tenant, session_id) + _SESSION_KEY + text.encode() + b"}\n"


async def export_lines(store: HistoryStore) -> AsyncIterator[bytes]:
    """Yield the export, line by line (each ends with a newline)."""
    after: tuple[str, str] | None = None
    while sessions := await store.all_sessions(after=after):
        for tenant, session_id in sessions:
            backup = await store.backup(tenant, session_id)
            if backup is None:
                continue  # gone since it was listed
            yield session_line(tenant, session_id, backup)
            cursor, more = 0, True
            while more:
                page = await store.read_seqs(
                    tenant, session_id, after=cursor, limit=PAGE, max_bytes=PAGE_BYTES
                )
                rows, more = page.rows, page.has_more
                for seq, item in rows:
                    yield export_line(_head(tenant, session_id, seq), item)
                if not rows:
                    break
                cursor = rows[-1][0]
        after = sessions[-1]


async def export_from_server(base_url: str, api_key: str | None) -> AsyncIterator[bytes]:
    """The export of the sessions one API key sees, read over HTTP from a running server.

    The key's tenant is not known to its holder, so lines carry ``"tenant": null``;
    ``import --tenant`` says where they go. Errors are the client's
    (``session_memory_client.SessionMemoryError``).
    """
    async with SessionMemoryClient(base_url=base_url, api_key=api_key, timeout=60) as client:
        async for record in client.iter_sessions(page_size=PAGE):
            async for line in _server_session(client, dict(record)):
                yield line


async def _server_session(
    client: SessionMemoryClient, record: dict[str, Any]
) -> AsyncIterator[bytes]:
    """One session's lines, read over HTTP: its record, then its items with their seqs."""
    session = client.session(record["id"])
    last_seq = record.get("last_seq")
    if last_seq is None:  # a server that does not say: the newest item's seq
        last_seq = (await session.read_items(limit=1)).last_seq or 0
    yield session_line(None, record["id"], _backup_of(record, last_seq))
    after, more = 0, True
    while more:
        numbered, more = await _numbered(session, after, PAGE)
        for seq, item in numbered:
            yield export_line(_head(None, record["id"], seq), item)
        if not numbered:
            break
        after = numbered[-1][0]


def _backup_of(record: dict[str, Any], last_seq: int) -> SessionBackup:
    """A session record as the API gives it (ISO 8601 times), as a backup keeps it."""

    def seconds(value: str | None) -> float | None:
        return None if value is None else datetime.fromisoformat(value).timestamp()

    metadata = record.get("metadata") or None
    return SessionBackup(
        created_at=seconds(record["created_at"]) or 0.0,
        updated_at=seconds(record["updated_at"]) or 0.0,
        last_seq=last_seq,
        ttl=record.get("ttl"),
        expires_at=seconds(record.get("expires_at")),
        metadata=None
        if metadata is None
        else json.dumps(metadata, ensure_ascii=False, separators=(",", ":")),
    )


async def _numbered(
    session: RemoteSession, after: int, limit: int
) -> tuple[list[tuple[int, str]], bool]:
    """The items after ``after`` (at most ``limit``), each with its seq, and whether
    more follow.

    A page says the seqs of its first and last items only: when it holds as many
    items as those span, they are consecutive; else (a pop or a replace left a gap)
    its halves are read again until each is. The items are kept byte for byte.
    """
    page = await session.read_items(limit=limit, after=after)
    items = split_items(page.content)
    if not items or page.first_seq is None or page.last_seq is None:
        return [], False
    if page.last_seq - page.first_seq + 1 == len(items):
        return list(enumerate(items, start=page.first_seq)), page.has_more
    half = len(items) // 2
    left, _ = await _numbered(session, after, half)
    right, _ = await _numbered(session, left[-1][0], len(items) - half) if left else ([], False)
    # Fewer than the page held only if the session changed meanwhile: read on from there.
    return left + right, page.has_more or len(left) + len(right) < len(items)


# -- reading lines -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    """One export line, read: a session's record (``backup``) or one of its items."""

    tenant: str | None
    session_id: str
    seq: int | None = None
    item: str = ""
    backup: SessionBackup | None = None


def _parse(line: bytes, number: int) -> _Line:
    # The item is the last member, written as stored: take its text as it is, since
    # decoding and re-encoding it could change it. A quote inside a JSON string is
    # always escaped, so the first ',"item":' or ',"session":' is a member's key: the
    # first of the two says which kind of line this is.
    cut = line.find(_ITEM_KEY)
    record = line.find(_SESSION_KEY)
    if record >= 0 and (cut < 0 or record < cut):
        return _parse_session(line, number)
    if cut < 0:
        return _parse_item_text(line, number)
    if not line.endswith(b"}"):
        raise ValueError(f"line {number}: not an export line")
    head = _load_head(line[:cut] + b"}", number)
    item = _one_item(line[cut + len(_ITEM_KEY) : -1], number)
    return _Line(_tenant(head), str(head["session_id"]), _seq(head, number), item)


def _parse_item_text(line: bytes, number: int) -> _Line:
    head = _load_head(line, number)
    text = head.get(_ITEM_TEXT)
    if not isinstance(text, str):
        raise ValueError(f"line {number}: needs an item or an item_text")
    item = _one_item(text.encode(), number)
    return _Line(_tenant(head), str(head["session_id"]), _seq(head, number), item)


def _parse_session(line: bytes, number: int) -> _Line:
    head = _load_head(line, number)
    record = head["session"]

    def number_in(name: str, *, nullable: bool = False) -> Any:
        value = record.get(name) if isinstance(record, dict) else None
        # Finite only: json.loads reads NaN and Infinity, which no record can show.
        if (
            (value is None and nullable)
            or (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, float) and math.isfinite(value))
        ):
            return value
        raise ValueError(f"line {number}: the session's {name!r} must be a number")

    metadata = record.get("metadata") if isinstance(record, dict) else None
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"line {number}: the session's metadata must be an object or null")
    ttl = number_in("ttl", nullable=True)
    if ttl is not None and not 0 <= ttl <= MAX_SESSION_TTL:  # as a Session-TTL header sets it
        raise ValueError(
            f"line {number}: the session's 'ttl' must be 0 to {MAX_SESSION_TTL} seconds"
        )
    last_seq = number_in("last_seq")
    if not isinstance(last_seq, int) or last_seq < 0:
        raise ValueError(f"line {number}: the session's 'last_seq' must be a seq")
    backup = SessionBackup(
        created_at=float(number_in("created_at")),
        updated_at=float(number_in("updated_at")),
        last_seq=last_seq,
        ttl=ttl,
        expires_at=number_in("expires_at", nullable=True),
        # Stored as the service writes metadata: compact, as the text it is.
        metadata=None
        if not metadata
        else json.dumps(metadata, ensure_ascii=False, separators=(",", ":")),
    )
    return _Line(_tenant(head), str(head["session_id"]), backup=backup)


def _load_head(text: bytes, number: int) -> dict[str, Any]:
    try:
        head = json.loads(text)
    except ValueError:
        raise ValueError(f"line {number}: not an export line (not JSON)") from None
    if not isinstance(head, dict) or not {"tenant", "session_id"} <= head.keys():
        raise ValueError(f"line {number}: needs tenant and session_id")
    return head


def _tenant(head: dict[str, Any]) -> str | None:
    tenant = head["tenant"]
    return None if tenant is None else str(tenant)


def _seq(head: dict[str, Any], number: int) -> int | None:
    seq = head.get("seq")
    if seq is None or (isinstance(seq, int) and not isinstance(seq, bool) and seq >= 1):
        return seq
    raise ValueError(f"line {number}: 'seq' must be a sequence number (an integer from 1)")


def _one_item(text: bytes, number: int) -> str:
    try:
        (item,) = parse_item_batch(b'{"items":[' + text + b"]}")
    except Exception as exc:
        raise ValueError(f"line {number}: {exc}") from None
    return item


# -- importing -----------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did: items added, items already there, sessions left out because
    they had expired, and every line left out.

    ``errors`` names each bad line, and each session whose later lines were not
    imported because of one; an import with errors did not load the whole file.
    """

    added: int = 0
    skipped: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Session:
    """The session whose lines are being read."""

    key: tuple[str, str]
    backup: SessionBackup | None  # None: lines of the first format (appended)
    to_skip: int = 0  # first format: the items the session holds already
    last_seq: int = 0  # the seq of its last item line
    written: bool = False  # its record is restored
    expired: bool = False  # left out


class _Importer:
    """Reads an export line by line, writing each session's items a batch at a time."""

    def __init__(self, store: HistoryStore, default_tenant: str, *, honour_leases: bool) -> None:
        self.store = store
        self.default_tenant = default_tenant
        self.honour_leases = honour_leases
        # A session a run holds the lease of: how many of its item lines were left out.
        self.leased: dict[tuple[str, str], int] = {}
        self.report = ImportReport()
        self.current: _Session | None = None
        self.batch: list[tuple[int, str]] = []
        self.batch_bytes = 0
        # A session with a bad line: the line's number and how many later lines were left.
        self.broken: dict[tuple[str, str], list[int]] = {}

    async def line(self, raw: bytes, number: int) -> None:
        line = raw.strip()
        if not line:
            return
        try:
            parsed = _parse(line, number)
        except ValueError as exc:
            await self._bad(str(exc), number, None)
            return
        tenant = self.default_tenant if parsed.tenant is None else parsed.tenant
        key = (tenant, parsed.session_id)
        if key in self.broken:
            self.broken[key][1] += 1
            return
        if key in self.leased:
            self.leased[key] += parsed.backup is None
            return
        if parsed.backup is not None:
            await self._begin(_Session(key, parsed.backup))
            return
        if self.current is None or self.current.key != key:
            info = await self.store.get_session(*key)
            await self._begin(_Session(key, None, to_skip=info.item_count if info else 0))
        try:
            await self._take(parsed, number)
        except ValueError as exc:
            await self._bad(str(exc), number, key)

    async def _bad(self, error: str, number: int, key: tuple[str, str] | None) -> None:
        self.report.errors.append(error)
        # A line whose session is unknown counts against the one being read.
        await self.flush()
        key = key or (self.current.key if self.current else None)
        if key is not None:
            self.broken.setdefault(key, [number, 0])

    async def _begin(self, session: _Session) -> None:
        await self.flush()
        backup = session.backup
        if backup is not None and backup.expires_at is not None:
            session.expired = backup.expires_at <= time.time()
            self.report.expired += session.expired
        self.current = session

    async def _take(self, line: _Line, number: int) -> None:
        session = self.current
        assert session is not None
        if session.backup is None:
            if line.seq is not None:
                raise ValueError(f"line {number}: an item with a seq needs its session's line")
            if session.to_skip:
                session.to_skip -= 1
                self.report.skipped += 1
                return
        elif line.seq is None or line.seq <= session.last_seq:
            raise ValueError(
                f"line {number}: an item of a backed-up session needs a seq above "
                f"{session.last_seq}, its previous item's"
            )
        session.last_seq = line.seq or 0
        if session.expired:
            return
        self.batch.append((line.seq or 0, line.item))
        self.batch_bytes += len(line.item)
        if len(self.batch) >= PAGE or self.batch_bytes >= PAGE_BYTES:
            await self.flush()

    async def flush(self) -> None:
        session, batch = self.current, self.batch
        if session is None or session.expired or session.key in self.leased:
            return
        tenant, session_id = session.key
        try:
            if session.backup is None:
                if batch:
                    await self.store.append(tenant, session_id, [item for _, item in batch])
                    self.report.added += len(batch)
            elif batch or not session.written:
                added = await self.store.restore(
                    tenant, session_id, batch, session.backup, honour_lease=self.honour_leases
                )
                session.written = True
                self.report.added += added
                self.report.skipped += len(batch) - added
        except SessionLeasedError:
            # A run holds the session: its history is being written, and an import
            # would slip items in under it. Left for later; the rest goes on.
            self.leased[session.key] = len(batch)
        self.batch, self.batch_bytes = [], 0

    def finish(self) -> ImportReport:
        for (tenant, session_id), (number, left) in self.broken.items():
            if left:
                self.report.errors.append(
                    f"session {session_id!r} of tenant {tenant!r}: {left} lines after line "
                    f"{number} not imported (fix that line and import again)"
                )
        for (tenant, session_id), left in self.leased.items():
            self.report.errors.append(
                f"session {session_id!r} of tenant {tenant!r}: a run holds its lease, so "
                f"{left} of its items were not imported (import again once the run ended; "
                "what is there already is not added twice)"
            )
        return self.report


async def import_lines(
    store: HistoryStore,
    lines: Iterable[bytes],
    *,
    default_tenant: str = "",
    honour_leases: bool = True,
) -> ImportReport:
    """Load an export and report what was added, skipped and left out.

    Lines without a tenant (exported from a server) go to ``default_tenant``. A
    session whose run lease is held (refusing writes without its token) is left out
    from there on and reported; ``honour_leases=False`` restores backed-up sessions
    whatever their lease (lines of the first format always honour it).
    """
    importer = _Importer(store, default_tenant, honour_leases=honour_leases)
    for number, raw in enumerate(lines, start=1):
        await importer.line(raw, number)
    await importer.flush()
    return importer.finish()
