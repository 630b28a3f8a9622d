"""The records a store returns and takes, and the constants they are bounded by."""

from __future__ import annotations

import json
from dataclasses import dataclass

from session_memory_client.protocol import MAX_SEQ

__all__ = [
    "ANY_REVISION",
    "EMPTY_PAGE",
    "MAX_SEQ",
    "SWEEP_BATCH_ROWS",
    "AppendResult",
    "ForkLimits",
    "Idempotency",
    "ItemPage",
    "SeqPage",
    "SessionBackup",
    "SessionInfo",
    "SessionPage",
    "Swept",
    "decode_append",
    "decode_pop",
    "encode_append",
    "encode_pop",
    "revision_at",
]

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
    """One session's record. Times are seconds since the Unix epoch.

    ``ttl`` and ``last_seq`` mean what they mean in ``SessionBackup``: the session's
    own time-to-live (None: it has none, the store's default applies; 0: it never
    expires) and the highest sequence number it has given (0: none), so a backup
    read through the API restores as exactly as one read from the database.
    """

    session_id: str
    item_count: int
    created_at: float
    updated_at: float
    revision: int
    expires_at: float | None = None
    metadata: str | None = None  # a JSON object's text, None when it has none
    ttl: float | None = None
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class SessionBackup:
    """What a backup keeps of a session besides its items, and ``restore`` puts back.

    Times are seconds since the Unix epoch. ``ttl`` is the session's own time-to-live
    (None: it has none, the store's default applies); ``expires_at`` is when it expires
    unless written again. ``last_seq`` is the highest sequence number the session has
    given (above its newest item's after a pop), so restored numbering goes on from it.
    """

    created_at: float
    updated_at: float
    last_seq: int
    ttl: float | None = None
    expires_at: float | None = None
    metadata: str | None = None  # a JSON object's text, None when it has none


@dataclass(frozen=True, slots=True)
class ForkLimits:
    """What one fork may copy: at most ``items`` items and ``bytes`` bytes of item
    text (0: no limit), so one small request cannot make the store copy without end."""

    items: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class SessionPage:
    """Sessions, most recently updated first; ``next_cursor`` (opaque) continues the walk."""

    sessions: list[SessionInfo]
    next_cursor: str | None


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
class SeqPage:
    """Items above a cursor, oldest first with their seqs, and the session's lineage.

    ``lineage`` is when the live session was created (None: there is none), read in
    the same snapshot as the items: a session cleared (or expired) and created
    again has a new lineage, and seqs from before mean nothing in it.
    """

    rows: list[tuple[int, str]]
    has_more: bool
    lineage: float | None
