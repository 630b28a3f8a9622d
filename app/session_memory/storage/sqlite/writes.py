"""SQLite's writes: each a plain function of the writer's connection and its parameters.

The group-commit writer (``writer``) runs each inside a savepoint of its group's
transaction, so a write may raise a refusal (a store error) at any point and nothing
it did stays. The rules every write keeps:

- an expired session is purged first (``purge_expired``), so the write starts it afresh;
- revisions are per session (``records.revision_at``) and never reused: a deleted
  session raises its tenant's floor (``deleted``), and a new one starts above it;
- a new session is made by ``schema.INSERT_SESSION``, within the tenant's session
  limit (``check_room``);
- idempotency records belong to their session (``recorded``, ``forget``);
- a write that deletes a session's items tells a fork still copying them
  (``disturb``; the fork itself is ``forks``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from ..errors import (
    IdempotencyMismatchError,
    MetadataTooLargeError,
    SessionFullError,
    SessionMissingError,
    TooManySessionsError,
    check_revision,
)
from ..metadata import labels_of, merge_patch
from ..records import AppendResult, ForkLimits, Idempotency, SessionInfo, Swept, revision_at
from . import leases
from .schema import GONE, INSERT_SESSION, LIVE, SESSION_COLUMNS, TOUCH

__all__ = [
    "Codec",
    "Policy",
    "append",
    "check_room",
    "clear",
    "deleted",
    "disturb",
    "forget",
    "new_session",
    "patch_metadata",
    "pop",
    "purge_expired",
    "record",
    "recorded",
    "replace",
    "replayed",
    "session_row",
    "store_labels",
    "sweep_batch",
]

T = TypeVar("T")
# How a write's outcome is kept in an idempotency record: (encode, decode).
Codec: TypeAlias = tuple[Callable[[T], str], Callable[[str], T]]


# Forks copy without bounds unless the store is given some.
_UNBOUNDED_FORKS = ForkLimits()


@dataclass(frozen=True, slots=True)
class Policy:
    """The store's settings that its writes obey."""

    clock: Callable[[], float]  # what expiry is measured by: wall-clock seconds
    default_ttl: float  # a session's time-to-live when it has none of its own; 0: never
    max_sessions: int  # live sessions per tenant; 0: no limit
    # Rows one sweep batch deletes of each kind; a deleted session holding more items
    # is retired instead, and the sweep deletes them a batch at a time.
    batch_rows: int
    fork: ForkLimits = _UNBOUNDED_FORKS  # what one fork may copy
    # One step of a fork's copy, one write: at most this many items and about this
    # many bytes (a first item copies whatever its size).
    fork_step_items: int = 1000
    fork_step_bytes: int = 1024 * 1024


def _params(policy: Policy, now: float, **values: Any) -> dict[str, Any]:
    """A statement's named parameters, with the ones ``schema``'s fragments use."""
    return {"now": now, "now_us": revision_at(now), "default": policy.default_ttl, **values}


def session_row(
    conn: sqlite3.Connection, tenant: str, session_id: str, columns: str
) -> tuple[Any, ...] | None:
    """``columns`` of the session's row (expired or not), or None."""
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {columns} FROM sessions WHERE tenant = ? AND session_id = ?", (tenant, session_id)
    ).fetchone()
    return row


def _revision(conn: sqlite3.Connection, tenant: str, session_id: str) -> int:
    row = session_row(conn, tenant, session_id, "revision")
    return int(row[0]) if row else 0


def _insert_items(
    conn: sqlite3.Connection, rowid: int, first_seq: int, items: Sequence[str]
) -> None:
    conn.executemany(
        "INSERT INTO items (session, seq, body) VALUES (?, ?, ?)",
        [(rowid, first_seq + i, body) for i, body in enumerate(items)],
    )


# -- sessions made and deleted -------------------------------------------------------


def deleted(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, str, int, str, int]], inline: int
) -> None:
    """Sessions (``schema.GONE``) were deleted: delete their items and idempotency
    records, and raise the revision floors.

    Items of a session holding up to ``inline`` go now; a bigger session is retired
    and the sweep deletes its items a batch at a time, so no single write holds the
    writer for long. The floor keeps a recreated session from ever repeating a
    revision (an ETag).
    """
    if not rows:  # the common case: every write purges an expired session, if any
        return
    for row in rows:
        disturb(conn, row[0])
    conn.executemany(
        "DELETE FROM items WHERE session = ?", [(row[0],) for row in rows if row[4] <= inline]
    )
    conn.executemany(
        "INSERT INTO retired_sessions (id) VALUES (?)",
        [(row[0],) for row in rows if row[4] > inline],
    )
    conn.executemany(
        "DELETE FROM idempotency_keys WHERE tenant = ? AND session_id = ?",
        [(row[1], row[3]) for row in rows],
    )
    conn.executemany(
        "INSERT INTO revision_floors (tenant, revision) VALUES (?, ?) "
        "ON CONFLICT (tenant) DO UPDATE SET revision = max(revision, excluded.revision)",
        [(row[1], row[2]) for row in rows],
    )


def disturb(conn: sqlite3.Connection, source: int, from_seq: int = 0) -> None:
    """The items of session ``source`` from ``from_seq`` on are being deleted: a fork's
    copy that has some of them still to take starts over (``forks``)."""
    conn.execute(
        "UPDATE fork_copies SET disturbed = 1 "
        "WHERE source = ? AND through >= ? AND copied < through",
        (source, from_seq),
    )


def purge_expired(
    conn: sqlite3.Connection, policy: Policy, tenant: str, session_id: str, now: float
) -> None:
    """Delete the session if it has expired, so a write starts it afresh."""
    gone = conn.execute(
        f"DELETE FROM sessions WHERE tenant = ? AND session_id = ? AND expires_at <= ? {GONE}",
        (tenant, session_id, now),
    ).fetchall()
    deleted(conn, gone, policy.batch_rows)


def check_room(conn: sqlite3.Connection, policy: Policy, tenant: str, now: float) -> None:
    """Raise ``TooManySessionsError`` if the tenant cannot start another session."""
    if not policy.max_sessions:
        return
    (held,) = conn.execute(
        f"SELECT count(*) FROM sessions s WHERE tenant = ? AND {LIVE}", (tenant, now)
    ).fetchone()
    if held >= policy.max_sessions:
        raise TooManySessionsError(limit=policy.max_sessions)


def new_session(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    now: float,
    *,
    count: int = 0,
    ttl: float | None = None,
    metadata: str | None = None,
    rowid: int | None = None,
    written_at: float | None = None,
) -> tuple[int, int]:
    """Insert a session the caller found missing: its row id and first revision.

    ``rowid`` is the row id to take (a fork's staged copy's; default a new one);
    ``written_at`` the time its record is made at (a restored session's; default now).
    """
    check_room(conn, policy, tenant, now)
    row = conn.execute(
        f"{INSERT_SESSION} ON CONFLICT (tenant, session_id) DO NOTHING RETURNING id, revision",
        _params(
            policy,
            now if written_at is None else written_at,
            tenant=tenant,
            session_id=session_id,
            count=count,
            ttl=ttl,
            metadata=metadata,
            id=rowid,
        ),
    ).fetchone()
    assert row is not None  # the writer is the only one: the session is still missing
    return row[0], row[1]


def store_labels(conn: sqlite3.Connection, tenant: str, rowid: int, metadata: str | None) -> None:
    """Make session_labels hold exactly the labels of ``metadata`` for session ``rowid``."""
    conn.execute("DELETE FROM session_labels WHERE session = ?", (rowid,))
    conn.executemany(
        "INSERT INTO session_labels VALUES (?, ?, ?, ?)",
        [(tenant, key, value, rowid) for key, value in labels_of(metadata)],
    )


# -- idempotency ---------------------------------------------------------------------


def recorded(
    conn: sqlite3.Connection,
    run: Callable[[sqlite3.Connection], T],
    *,
    tenant: str,
    session_id: str,
    idempotency: Idempotency,
    codec: Codec[T],
    clock: Callable[[], float],
) -> T:
    """``run``, made idempotent: replay a recorded outcome, or run and record it.

    A record that keeps an item (a pop's) counts in its session's ``kept_items``.
    """
    encode, decode = codec
    now = clock()
    found = replayed(conn, tenant, idempotency, now)
    if found is not None:
        return decode(found)
    result = run(conn)
    # Only a pop's outcome is an item, which its record keeps.
    record(conn, tenant, session_id, idempotency, encode(result), now, kept=isinstance(result, str))
    return result


def replayed(
    conn: sqlite3.Connection, tenant: str, idempotency: Idempotency, now: float
) -> str | None:
    """The outcome recorded under the key, encoded; None when there is none."""
    row = conn.execute(
        "SELECT fingerprint, result FROM idempotency_keys "
        "WHERE tenant = ? AND key = ? AND expires_at > ?",
        (tenant, idempotency.key, now),
    ).fetchone()
    if row is None:
        return None
    if row[0] != idempotency.fingerprint:
        raise IdempotencyMismatchError(
            f"idempotency key {idempotency.key!r} was used for a different request"
        )
    return str(row[1])


def record(
    conn: sqlite3.Connection,
    tenant: str,
    session_id: str,
    idempotency: Idempotency,
    outcome: str,
    now: float,
    *,
    kept: bool = False,
) -> None:
    """Record a write's encoded ``outcome`` under its key, for the session ``session_id``."""
    forget(conn, [(tenant, idempotency.key)])  # an expired record of this key
    conn.execute(
        "INSERT INTO idempotency_keys (tenant, key, fingerprint, result, expires_at, "
        "session_id, kept) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            tenant,
            idempotency.key,
            idempotency.fingerprint,
            outcome,
            now + idempotency.ttl,
            session_id,
            kept,
        ),
    )
    if kept:
        conn.execute(
            "UPDATE sessions SET kept_items = kept_items + 1 WHERE tenant = ? AND session_id = ?",
            (tenant, session_id),
        )


def forget(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> int:
    """Delete idempotency records (tenant, key), releasing the items they kept."""
    gone = 0
    for tenant, key in keys:
        row = conn.execute(
            "DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? RETURNING session_id, kept",
            (tenant, key),
        ).fetchone()
        if row is None:
            continue
        gone += 1
        if row[1]:
            conn.execute(
                "UPDATE sessions SET kept_items = kept_items - 1 "
                "WHERE tenant = ? AND session_id = ?",
                (tenant, row[0]),
            )
    return gone


# -- the store's writes --------------------------------------------------------------

# The append's session: made (holding the batch) or moved on by it.
_APPEND = f"""{INSERT_SESSION}
ON CONFLICT (tenant, session_id) DO UPDATE SET
    item_count = item_count + excluded.item_count,
    last_seq = last_seq + excluded.item_count,
    {TOUCH}
RETURNING id, last_seq, revision
"""


def append(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    items: Sequence[str],
    *,
    max_items: int | None = None,
    expected_revision: int | None = None,
    ttl: float | None = None,
    metadata: str | None = None,
) -> AppendResult:
    """``SessionStore.append`` of at least one item."""
    now, count = policy.clock(), len(items)
    purge_expired(conn, policy, tenant, session_id, now)
    if max_items is not None or expected_revision is not None or policy.max_sessions:
        row = session_row(conn, tenant, session_id, "item_count, kept_items, revision")
        held, kept, revision = row if row else (0, 0, 0)
        check_revision(expected_revision, revision)
        if max_items is not None and held + kept + count > max_items:
            raise SessionFullError(limit=max_items, count=held + kept, adding=count, kept=kept)
        if row is None:
            check_room(conn, policy, tenant, now)
    values = {"tenant": tenant, "session_id": session_id, "count": count, "ttl": ttl}
    rowid, last_seq, revision = conn.execute(
        _APPEND, _params(policy, now, metadata=None, id=None, **values)
    ).fetchone()
    first_seq = last_seq - count + 1
    if metadata is not None and first_seq == 1:
        # The append made the session: it starts with this metadata.
        conn.execute("UPDATE sessions SET metadata = ? WHERE id = ?", (metadata, rowid))
        store_labels(conn, tenant, rowid, metadata)
    _insert_items(conn, rowid, first_seq, items)
    return AppendResult(count=count, first_seq=first_seq, last_seq=last_seq, revision=revision)


def pop(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    *,
    expected_revision: int | None = None,
) -> str | None:
    """``SessionStore.pop``."""
    now = policy.clock()
    purge_expired(conn, policy, tenant, session_id, now)
    if expected_revision is not None:
        check_revision(expected_revision, _revision(conn, tenant, session_id))
    row = conn.execute(
        """
        DELETE FROM items WHERE rowid = (
            SELECT rowid FROM items
            WHERE session = (SELECT id FROM sessions WHERE tenant = ? AND session_id = ?)
            ORDER BY seq DESC LIMIT 1
        )
        RETURNING session, body, seq
        """,
        (tenant, session_id),
    ).fetchone()
    if row is None:
        return None
    rowid, body, seq = row
    disturb(conn, rowid, seq)
    conn.execute(
        f"UPDATE sessions SET item_count = item_count - 1, {TOUCH} WHERE id = :id",
        _params(policy, now, id=rowid, ttl=None),
    )
    return str(body)


def clear(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    *,
    expected_revision: int | None = None,
) -> None:
    """``SessionStore.clear``."""
    purge_expired(conn, policy, tenant, session_id, policy.clock())
    if expected_revision is not None:
        check_revision(expected_revision, _revision(conn, tenant, session_id))
    gone = conn.execute(
        f"DELETE FROM sessions WHERE tenant = ? AND session_id = ? {GONE}", (tenant, session_id)
    ).fetchall()
    deleted(conn, gone, policy.batch_rows)


def sweep_batch(conn: sqlite3.Connection, policy: Policy) -> Swept:
    """Up to a batch of expired sessions (retired), items of retired sessions,
    expired idempotency records and long-ended leases, in one transaction."""
    now, rows = policy.clock(), policy.batch_rows
    gone = conn.execute(
        f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ? "
        f"LIMIT ?) {GONE}",
        (now, rows),
    ).fetchall()
    deleted(conn, gone, 0)
    items = conn.execute(
        "DELETE FROM items WHERE rowid IN (SELECT i.rowid FROM retired_sessions r "
        "JOIN items i ON i.session = r.id LIMIT ?)",
        (rows,),
    ).rowcount
    conn.execute(
        "DELETE FROM retired_sessions WHERE NOT EXISTS "
        "(SELECT 1 FROM items WHERE items.session = retired_sessions.id)"
    )
    expired = conn.execute(
        "SELECT tenant, key FROM idempotency_keys WHERE expires_at <= ? LIMIT ?", (now, rows)
    ).fetchall()
    # Leases long ended; not counted: what a batch leaves, the next sweep deletes.
    leases.sweep_batch(conn, now, rows)
    return Swept(len(gone), items, forget(conn, expired), 1)


# -- the history's writes ------------------------------------------------------------


def replace(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    items: Sequence[str],
    *,
    from_seq: int | None = None,
    max_items: int | None = None,
    expected_revision: int | None = None,
    ttl: float | None = None,
) -> AppendResult:
    """``HistoryStore.replace``."""
    now, count = policy.clock(), len(items)
    purge_expired(conn, policy, tenant, session_id, now)
    row = session_row(conn, tenant, session_id, "id, item_count, last_seq, revision, kept_items")
    check_revision(expected_revision, row[3] if row else 0)
    if row is None:
        if count == 0:
            return AppendResult(count=0, first_seq=None, last_seq=None, revision=0)
        if max_items is not None and count > max_items:
            raise SessionFullError(limit=max_items, count=0, adding=count)
        rowid, revision = new_session(conn, policy, tenant, session_id, now)
        row = (rowid, 0, 0, revision, 0)
    rowid, held, last_seq, _, kept = row
    disturb(conn, rowid, from_seq or 0)
    held -= conn.execute(
        "DELETE FROM items WHERE session = ? AND seq >= ?", (rowid, from_seq or 0)
    ).rowcount
    if max_items is not None and held + kept + count > max_items:
        raise SessionFullError(limit=max_items, count=held + kept, adding=count, kept=kept)
    _insert_items(conn, rowid, last_seq + 1, items)
    (revision,) = conn.execute(
        f"UPDATE sessions SET item_count = :held, last_seq = :last, {TOUCH} "
        "WHERE id = :id RETURNING revision",
        _params(policy, now, held=held + count, last=last_seq + count, ttl=ttl, id=rowid),
    ).fetchone()
    return AppendResult(
        count=count,
        first_seq=last_seq + 1 if count else None,
        last_seq=last_seq + count if count else None,
        revision=revision,
    )


def patch_metadata(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    patch: str,
    *,
    max_bytes: int,
    expected_revision: int | None = None,
) -> SessionInfo:
    """``HistoryStore.patch_metadata``."""
    now = policy.clock()
    purge_expired(conn, policy, tenant, session_id, now)
    row = session_row(conn, tenant, session_id, "id, revision, metadata")
    if row is None:
        raise SessionMissingError(f"no session {session_id!r}")
    check_revision(expected_revision, row[1])
    merged = merge_patch(json.loads(row[2] or "{}"), json.loads(patch))
    text = json.dumps(merged, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > max_bytes:
        raise MetadataTooLargeError(size=len(text.encode()), limit=max_bytes)
    stored = None if merged == {} else text
    info = conn.execute(
        f"UPDATE sessions SET metadata = :metadata, {TOUCH} "
        f"WHERE id = :id RETURNING {SESSION_COLUMNS}",
        _params(policy, now, metadata=stored, ttl=None, id=row[0]),
    ).fetchone()
    store_labels(conn, tenant, row[0], stored)
    return SessionInfo(*info)
