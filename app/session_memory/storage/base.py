"""The storage contract every backend implements, and the records it returns.

Items cross this boundary as JSON text exactly as the client sent it: a backend
stores and returns that text unchanged and never parses it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ANY_REVISION",
    "EMPTY_PAGE",
    "MAX_SEQ",
    "AppendResult",
    "Idempotency",
    "IdempotencyInFlightError",
    "IdempotencyMismatchError",
    "ItemPage",
    "PreconditionFailedError",
    "SessionFullError",
    "SessionInfo",
    "SessionPage",
    "SessionStore",
    "StoreError",
    "StoreUnavailableError",
    "check_revision",
    "decode_append",
    "decode_pop",
    "encode_append",
    "encode_pop",
    "page_from_rows",
    "read_shape",
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


class PreconditionFailedError(StoreError):
    """The session's revision is not the one the write expected; nothing was done."""

    def __init__(self, *, current: int | None) -> None:
        super().__init__(f"the session is at revision {current}")
        self.current = current


# ``expected_revision`` for "any revision, as long as the session exists" (If-Match: *).
ANY_REVISION = -1


def check_revision(expected: int | None, current: int) -> None:
    """Raise ``PreconditionFailedError`` unless ``current`` (0: no session) is as expected."""
    if expected is None:
        return
    if current > 0 if expected == ANY_REVISION else current == expected:
        return
    raise PreconditionFailedError(current=current)


class SessionFullError(StoreError):
    """An append would take a session past its item limit; nothing was stored."""

    def __init__(self, *, limit: int, count: int, adding: int) -> None:
        super().__init__(f"session holds {count} items; adding {adding} would pass {limit}")
        self.limit = limit
        self.count = count
        self.adding = adding


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
    """Sessions, most recently updated first; ``next_cursor`` continues the walk."""

    sessions: list[SessionInfo]
    next_cursor: int | None


def read_shape(limit: int | None, after: int | None) -> tuple[bool, int | None]:
    """How a read runs: (forward?, rows to fetch). Shared by the backends.

    Forward (oldest first) from an ``after`` cursor or for an unbounded read;
    otherwise backward from the newest (or from ``before``). One row more than the
    limit is fetched to tell ``has_more``, kept within signed 64 bits.
    """
    forward = after is not None or limit is None
    return forward, None if limit is None else min(limit, MAX_SEQ - 1) + 1


def page_from_rows(rows: list[Any], limit: int | None, forward: bool) -> ItemPage:
    """An ``ItemPage`` from (revision, seq, body) rows fetched as ``read_shape`` said.

    The rows come from the session joined to its items, so a session with no
    matching items gives one row with a null seq, and an unknown session none.
    """
    revision = rows[0][0] if rows else 0
    if rows and rows[0][1] is None:
        rows = []
    has_more = limit is not None and len(rows) > limit
    if has_more:
        rows = rows[:limit]
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
        raises ``SessionFullError`` and stores nothing. With ``idempotency``, see
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
    ) -> ItemPage:
        """Read items oldest first.

        - neither cursor: the latest ``limit`` items (all when ``limit`` is None);
        - ``after``: the first ``limit`` items with seq > after;
        - ``before``: the latest ``limit`` items with seq < before.
        ``after`` and ``before`` are not both given. An unknown session reads as empty.
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
        """Delete the session's items and its record. Clearing an unknown session is a no-op.

        ``expected_revision`` works as for ``append``.
        """

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        """Return the session's record, or None when it does not exist."""
        ...

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: int | None = None
    ) -> SessionPage:
        """List a tenant's sessions, most recently updated first.

        ``cursor`` is a previous page's ``next_cursor``: the walk goes on after it.
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

    async def sweep(self) -> int:
        """Delete expired sessions (with their items) and idempotency records.

        Returns how many rows went.
        """
        ...
