"""The storage contract every backend implements, and the records it returns.

Items cross this boundary as JSON text exactly as the client sent it: a backend
stores and returns that text unchanged and never parses it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ANY_REVISION",
    "EMPTY_PAGE",
    "MAX_SEQ",
    "SWEEP_BATCH_ROWS",
    "AppendResult",
    "Idempotency",
    "IdempotencyInFlightError",
    "IdempotencyMismatchError",
    "InvalidCursorError",
    "ItemPage",
    "PreconditionFailedError",
    "SessionFullError",
    "SessionInfo",
    "SessionPage",
    "SessionStore",
    "StoreError",
    "StoreUnavailableError",
    "Swept",
    "TooManySessionsError",
    "check_revision",
    "decode_append",
    "decode_pop",
    "encode_append",
    "encode_pop",
    "item_bytes",
    "page_from_rows",
    "parse_session_cursor",
    "read_shape",
    "revision_at",
    "session_cursor",
]

# Sequence numbers and cursors are signed 64-bit integers in both backends.
MAX_SEQ = 2**63 - 1


class StoreError(Exception):
    """Base class of the errors a store raises."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or did not answer in time."""


class IdempotencyMismatchError(StoreError):
    """An idempotency key came back with a different request; nothing was done."""


class IdempotencyInFlightError(StoreError):
    """A request with this idempotency key is still running; nothing was done."""


class InvalidCursorError(StoreError, ValueError):
    """A session-listing cursor that no listing gave out."""


class PreconditionFailedError(StoreError):
    """The session's revision is not the one the write expected; nothing was done."""

    def __init__(self, *, current: int | None) -> None:
        super().__init__(f"the session is at revision {current}")
        self.current = current


# ``expected_revision`` for "any revision, as long as the session exists" (If-Match: *).
ANY_REVISION = -1


def revision_at(now: float) -> int:
    """The clock's part of a revision: microseconds since the epoch.

    A session's revision (its ETag) is its own: every write sets it to
    ``max(revision + 1, revision_at(now))``, and a new session starts at
    ``max(revision_at(now), floor + 1)``, where the floor is the highest revision of
    any deleted session of the tenant. So revisions only grow, a cleared and recreated
    session never repeats an ETag it had before (even if the clock steps back), and
    they say nothing about other sessions' or other tenants' writes: between
    sessions they only follow the clock.
    """
    return int(now * 1_000_000)


def session_cursor(revision: int, session_id: str) -> str:
    """The opaque cursor after a listed session (sessions are listed by revision, id)."""
    text = json.dumps([revision, session_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_session_cursor(cursor: str) -> tuple[int, str]:
    """(revision, session id) from ``session_cursor``; ``InvalidCursorError`` otherwise."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        revision, session_id = json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InvalidCursorError("not a cursor a session listing gave out") from exc
    if type(revision) is not int or not 0 <= revision <= MAX_SEQ or not isinstance(session_id, str):
        raise InvalidCursorError("not a cursor a session listing gave out")
    return revision, session_id


def check_revision(expected: int | None, current: int) -> None:
    """Raise ``PreconditionFailedError`` unless ``current`` (0: no session) is as expected."""
    if expected is None:
        return
    if current > 0 if expected == ANY_REVISION else current == expected:
        return
    raise PreconditionFailedError(current=current)


class SessionFullError(StoreError):
    """An append would take a session past its item limit; nothing was stored.

    ``count`` counts the items the session holds and the popped items it keeps for
    replay (``kept``: see ``Idempotency``).
    """

    def __init__(self, *, limit: int, count: int, adding: int, kept: int = 0) -> None:
        super().__init__(f"session holds {count} items; adding {adding} would pass {limit}")
        self.limit = limit
        self.count = count
        self.adding = adding
        self.kept = kept


class TooManySessionsError(StoreError):
    """A write would create a session past the tenant's session limit; nothing was done."""

    def __init__(self, *, limit: int) -> None:
        super().__init__(f"the tenant already holds {limit} sessions")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where a batch landed: sequence numbers ``first_seq`` to ``last_seq``, contiguous."""

    count: int
    first_seq: int | None
    last_seq: int | None
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class ItemPage:
    """A run of items, oldest first, with the sequence numbers that bound it.

    ``has_more`` says whether more items lie beyond the page in the direction of
    travel: older ones for a tail or ``before`` read, newer ones for an ``after`` read.
    ``revision`` is the session's version when it was read (0: no such session).
    """

    items: list[str]
    first_seq: int | None
    last_seq: int | None
    has_more: bool
    revision: int = 0


@dataclass(frozen=True, slots=True)
class Idempotency:
    """Make a write idempotent: its outcome is recorded under ``key`` for ``ttl`` seconds.

    A later write with the same tenant and key gets the recorded outcome back and
    changes nothing, provided its ``fingerprint`` (a digest of the request) matches;
    otherwise it raises ``IdempotencyMismatchError``. The record is written in the
    same transaction as the write, so a crash cannot separate them.

    A record belongs to its session: clearing the session (or its expiry) deletes
    it, and a pop's record, which keeps the popped item, counts as an item of the
    session against ``max_items`` until it expires.
    """

    key: str
    fingerprint: str
    ttl: float


def encode_append(result: AppendResult) -> str:
    return json.dumps([result.count, result.first_seq, result.last_seq, result.revision])


def decode_append(text: str) -> AppendResult:
    count, first_seq, last_seq, revision = json.loads(text)
    return AppendResult(count=count, first_seq=first_seq, last_seq=last_seq, revision=revision)


def encode_pop(item: str | None) -> str:
    return json.dumps([] if item is None else [item])


def decode_pop(text: str) -> str | None:
    found: list[str] = json.loads(text)
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class Swept:
    """What one ``sweep`` deleted, and in how many transactions (``batches``)."""

    sessions: int = 0
    items: int = 0
    records: int = 0
    batches: int = 0

    def __add__(self, other: Swept) -> Swept:
        return Swept(
            self.sessions + other.sessions,
            self.items + other.items,
            self.records + other.records,
            self.batches + other.batches,
        )


# Rows one sweep transaction deletes at most, of each kind (sessions, items, records).
SWEEP_BATCH_ROWS = 1000

EMPTY_PAGE = ItemPage(items=[], first_seq=None, last_seq=None, has_more=False)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session's record. Times are seconds since the Unix epoch."""

    session_id: str
    item_count: int
    created_at: float
    updated_at: float
    revision: int
    expires_at: float | None = None
    metadata: str | None = None  # a JSON object's text, None when it has none


@dataclass(frozen=True, slots=True)
class SessionPage:
    """Sessions, most recently updated first; ``next_cursor`` (opaque) continues the walk."""

    sessions: list[SessionInfo]
    next_cursor: str | None


def read_shape(limit: int | None, after: int | None) -> tuple[bool, int | None]:
    """How a read runs: (forward?, rows to fetch). Shared by the backends.

    Forward (oldest first) from an ``after`` cursor or for an unbounded read;
    otherwise backward from the newest (or from ``before``). One row more than the
    limit is fetched to tell ``has_more``, kept within signed 64 bits.
    """
    forward = after is not None or limit is None
    return forward, None if limit is None else min(limit, MAX_SEQ - 1) + 1


def item_bytes(body: str) -> int:
    """An item's size in UTF-8 bytes (its length, when it is ASCII, without encoding it)."""
    return len(body) if body.isascii() else len(body.encode())


def page_from_rows(
    rows: list[Any], limit: int | None, forward: bool, max_bytes: int | None = None
) -> ItemPage:
    """An ``ItemPage`` from (revision, seq, body) rows fetched as ``read_shape`` said.

    The rows come from the session joined to its items, so a session with no
    matching items gives one row with a null seq, and an unknown session none.
    With ``max_bytes``, the page ends before the item that would take it past that
    many bytes (the first item is kept whatever its size), and ``has_more`` is true.
    """
    revision = rows[0][0] if rows else 0
    if rows and rows[0][1] is None:
        rows = []
    has_more = limit is not None and len(rows) > limit
    if has_more:
        rows = rows[:limit]
    if max_bytes is not None:
        total = 0
        for index, row in enumerate(rows):
            total += item_bytes(row[2])
            if total > max_bytes and index > 0:
                rows, has_more = rows[:index], True
                break
    if not forward:
        rows.reverse()
    if not rows:
        return ItemPage(items=[], first_seq=None, last_seq=None, has_more=False, revision=revision)
    return ItemPage(
        items=[row[2] for row in rows],
        first_seq=rows[0][1],
        last_seq=rows[-1][1],
        has_more=has_more,
        revision=revision,
    )


@runtime_checkable
class SessionStore(Protocol):
    """Per-tenant, per-session ordered item storage.

    Every method is safe to call concurrently from many tasks (and, for backends
    that allow several server processes, from many processes). A write is
    acknowledged only once its transaction has committed durably.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before any other method."""

    async def close(self) -> None:
        """Finish pending writes and release connections. Idempotent."""

    async def ping(self) -> None:
        """Run a trivial query; raise ``StoreUnavailableError`` if the database does not answer."""

    async def append(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[str],
        *,
        max_items: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        ttl: float | None = None,
        metadata: str | None = None,
    ) -> AppendResult:
        """Append ``items`` (JSON texts) atomically and contiguously.

        Either every item lands, with consecutive sequence numbers and no other
        writer's item between them, or none does. Creates the session on first
        write. An empty sequence is a no-op that returns ``count=0`` and no seqs.
        With ``max_items``, an append that would leave the session holding more
        (popped items kept for replay count) raises ``SessionFullError`` and stores
        nothing. A store made with a session limit per tenant raises
        ``TooManySessionsError`` instead of creating a session past it. With ``idempotency``, see
        ``Idempotency``; a second call with the key while the first still runs
        raises ``IdempotencyInFlightError``. With ``expected_revision`` (0: the
        session must not exist; ``ANY_REVISION``: it must), a session at another
        revision raises ``PreconditionFailedError``. The result carries the new
        revision.

        Every write renews the session's expiry: its own time-to-live if it has one
        (``ttl`` sets it; 0 means never), else the store's default. An expired
        session reads as empty at once, and its next write starts it afresh.

        ``metadata`` (a JSON object's text) becomes the session's metadata when this
        append creates the session; an existing session's metadata is left as it is.
        """
        ...

    async def read(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        after: int | None = None,
        before: int | None = None,
        max_bytes: int | None = None,
    ) -> ItemPage:
        """Read items oldest first.

        - neither cursor: the latest ``limit`` items (all when ``limit`` is None);
        - ``after``: the first ``limit`` items with seq > after;
        - ``before``: the latest ``limit`` items with seq < before.
        ``after`` and ``before`` are not both given. An unknown session reads as empty.

        With ``max_bytes`` the page also stops, in its direction of travel, before
        the item that would take its items past that many bytes of JSON, with
        ``has_more`` true; its first item is returned whatever its size. The read
        holds at most about ``max_bytes`` plus one item in memory.
        """
        ...

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> str | None:
        """Remove and return the newest item atomically, or None when the session is empty.

        With many concurrent callers each item is returned to exactly one of them.
        ``idempotency`` works as for ``append``: a replay returns the same item again
        and removes nothing.
        """
        ...

    async def clear(
        self, tenant: str, session_id: str, *, expected_revision: int | None = None
    ) -> None:
        """Delete the session's items, its record and its idempotency records.

        Clearing an unknown session is a no-op.

        ``expected_revision`` works as for ``append``.
        """

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        """Return the session's record, or None when it does not exist."""
        ...

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        """List a tenant's sessions, most recently updated first.

        ``cursor`` is a previous page's ``next_cursor``: the walk goes on after it. A
        cursor no listing gave out raises ``InvalidCursorError``.
        """
        ...

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(tenant, session id) of live sessions of every tenant, in that order, for export.

        ``after`` is the last pair of the previous page.
        """
        ...

    async def count_sessions(self) -> int:
        """How many live (unexpired) sessions the store holds, all tenants together."""
        ...

    async def sweep(self) -> Swept:
        """Delete expired sessions (with their items) and idempotency records.

        Works in small transactions (a batch of rows of each kind at a time), so a
        huge session never holds other writers back for long; the items of a cleared
        session too big to delete at once are deleted here as well.
        """
        ...
