"""PostgreSQL writes, as plain functions over a connection.

Append, pop, clear, replace and fork are each one call of their PL/pgSQL function
(``migrations``), fenced by the session's run lease (migration 12; the check in the
function's own body since migration 14): one round trip, in the statement's own
transaction, refusals decided before anything changed and returned as a status that
``_refused`` and ``_written`` turn into the matching ``StoreError``. Concurrency rests
on the session row's lock, taken inside those functions, so writes to one session
queue whichever replica runs them.

A metadata PATCH is one transaction that locks the session row first, in its own
statement, so the statements after it see every write committed while it waited.
The expiry sweep is the one write of several statements, in small transactions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import (
    ForkTooLargeError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    LeaseLostError,
    MetadataTooLargeError,
    PreconditionFailedError,
    SessionExistsError,
    SessionFullError,
    SessionLeasedError,
    SessionMissingError,
    TooManySessionsError,
    check_revision,
)
from ..metadata import labels_of, merge_patch
from ..records import (
    MAX_SEQ,
    AppendResult,
    ForkLimits,
    Idempotency,
    SessionInfo,
    Swept,
    decode_append,
    decode_pop,
)
from . import leases
from .driver import Connection, Record
from .sql import SESSION_COLUMNS

__all__ = [
    "Rules",
    "append",
    "clear",
    "fork",
    "lease_refused",
    "patch_metadata",
    "pop",
    "replace",
    "store_labels",
    "sweep_batch",
]


# Forks copy without bounds unless the store is given some.
_UNBOUNDED_FORKS = ForkLimits()


@dataclass(frozen=True, slots=True)
class Rules:
    """What every write follows besides its own arguments: the store's settings."""

    default_ttl: float  # a session's time-to-live when it has none of its own (0: never)
    max_sessions: int  # live sessions per tenant (0: no limit)
    # Rows per sweep transaction; a deleted session holding up to this many items
    # loses them at once, a bigger one is left to the sweep.
    batch_rows: int
    fork: ForkLimits = _UNBOUNDED_FORKS  # what one fork may copy


# What the write functions get for "no Idempotency-Key".
_NO_KEY = Idempotency(key="", fingerprint="", ttl=0)


def _refused(row: Record | None, key: Idempotency) -> Record:
    """A write function's row; the refusals every write may meet raised."""
    assert row is not None
    status = row["r_status"]
    if status == "inflight":
        raise IdempotencyInFlightError(f"request {key.key!r} is still running")
    if status == "mismatch":
        raise IdempotencyMismatchError(
            f"idempotency key {key.key!r} was used for a different request"
        )
    if status == "precondition":
        raise PreconditionFailedError(current=row["r_revision"])
    lease_refused(status)
    return row


def lease_refused(status: str | None) -> None:
    """Raise the refusal a run lease check (``session_memory_lease_check``) returned."""
    if status == "lease_lost":
        raise LeaseLostError("the run lease the write carries is not the session's lease")
    if status == "leased":
        raise SessionLeasedError()


def _written(
    row: Record | None, key: Idempotency, count: int, max_items: int | None, rules: Rules
) -> AppendResult:
    """Where an append or a replace landed, from its write function's row (or why not)."""
    row = _refused(row, key)
    if row["r_status"] == "replay":
        return decode_append(row["r_replay"])
    if row["r_status"] == "full":
        assert max_items is not None
        held, kept = row["r_held"], row["r_kept"]
        raise SessionFullError(limit=max_items, count=held + kept, adding=count, kept=kept)
    if row["r_status"] == "sessions":
        raise TooManySessionsError(limit=rules.max_sessions)
    return AppendResult(
        count=count,
        first_seq=row["r_first"],
        last_seq=row["r_last"],
        revision=row["r_revision"],
    )


async def store_labels(conn: Connection, tenant: str, rowid: int, metadata: str | None) -> None:
    """Make session_labels hold exactly the labels of ``metadata`` for session ``rowid``."""
    await conn.execute("DELETE FROM session_labels WHERE session = $1", rowid)
    labels = labels_of(metadata)
    if labels:
        await conn.execute(
            "INSERT INTO session_labels SELECT $1, key, value, $2 "
            "FROM unnest($3::text[], $4::text[]) AS l(key, value)",
            tenant,
            rowid,
            [key for key, _ in labels],
            [value for _, value in labels],
        )


async def append(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    items: Sequence[str],
    *,
    max_items: int | None,
    idempotency: Idempotency | None,
    expected_revision: int | None,
    ttl: float | None,
    metadata: str | None,
    run_lease: int | None,
) -> AppendResult:
    """``SessionStore.append`` of at least one item."""
    key = idempotency or _NO_KEY

    async def call() -> Record | None:
        return await conn.fetchrow(
            "SELECT * FROM session_memory_fenced_append("
            "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            tenant,
            session_id,
            list(items),
            max_items,
            rules.max_sessions,
            None if idempotency is None else key.key,
            key.fingerprint,
            key.ttl,
            expected_revision,
            ttl,
            rules.default_ttl,
            rules.batch_rows,
            run_lease,
        )

    if metadata is None:
        row = await call()
    else:
        # Metadata given at creation: the append and the metadata in one
        # transaction (a round trip more, only for such appends).
        async with conn.transaction():
            row = await call()
            if row is not None and row["r_status"] == "ok" and row["r_first"] == 1:
                rowid = await conn.fetchval(
                    "UPDATE sessions SET metadata = $3 WHERE tenant = $1 AND session_id = $2 "
                    "RETURNING id",
                    tenant,
                    session_id,
                    metadata,
                )
                await store_labels(conn, tenant, rowid, metadata)
    # Read after the transaction: a refusal still commits the purge of an expired session.
    return _written(row, key, len(items), max_items, rules)


async def pop(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    *,
    idempotency: Idempotency | None,
    expected_revision: int | None,
    run_lease: int | None,
) -> str | None:
    """``SessionStore.pop``."""
    key = idempotency or _NO_KEY
    row = await conn.fetchrow(
        "SELECT * FROM session_memory_fenced_pop($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        tenant,
        session_id,
        None if idempotency is None else key.key,
        key.fingerprint,
        key.ttl,
        expected_revision,
        rules.default_ttl,
        rules.batch_rows,
        run_lease,
    )
    row = _refused(row, key)
    if row["r_status"] == "replay":
        return decode_pop(row["r_replay"])
    item: str | None = row["r_item"]
    return item


async def clear(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    *,
    expected_revision: int | None,
    run_lease: int | None,
) -> None:
    """``SessionStore.clear``."""
    row = await conn.fetchrow(
        "SELECT * FROM session_memory_fenced_clear($1, $2, $3, $4, $5)",
        tenant,
        session_id,
        expected_revision,
        rules.batch_rows,
        run_lease,
    )
    _refused(row, _NO_KEY)


async def replace(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    items: Sequence[str],
    *,
    from_seq: int | None,
    max_items: int | None,
    idempotency: Idempotency | None,
    expected_revision: int | None,
    ttl: float | None,
    run_lease: int | None,
) -> AppendResult:
    """``HistoryStore.replace``."""
    key = idempotency or _NO_KEY
    row = await conn.fetchrow(
        "SELECT * FROM session_memory_fenced_replace("
        "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        tenant,
        session_id,
        list(items),
        from_seq,
        max_items,
        rules.max_sessions,
        None if idempotency is None else key.key,
        key.fingerprint,
        key.ttl,
        expected_revision,
        ttl,
        rules.default_ttl,
        rules.batch_rows,
        run_lease,
    )
    return _written(row, key, len(items), max_items, rules)


async def fork(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    target_id: str,
    *,
    through_seq: int | None,
    idempotency: Idempotency | None,
    expected_revision: int | None,
    run_lease: int | None,
) -> AppendResult:
    """``HistoryStore.fork``."""
    key = idempotency or _NO_KEY
    row = await conn.fetchrow(
        "SELECT * FROM session_memory_fenced_fork("
        "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        tenant,
        session_id,
        target_id,
        MAX_SEQ if through_seq is None else through_seq,
        rules.max_sessions,
        None if idempotency is None else key.key,
        key.fingerprint,
        key.ttl,
        expected_revision,
        rules.default_ttl,
        rules.batch_rows,
        rules.fork.items,
        rules.fork.bytes,
        run_lease,
    )
    row = _refused(row, key)
    status = row["r_status"]
    if status == "replay":
        return decode_append(row["r_replay"])
    if status == "missing":
        raise SessionMissingError(f"no session {session_id!r}")
    if status == "exists":
        raise SessionExistsError(f"session {target_id!r} already exists")
    if status == "sessions":
        raise TooManySessionsError(limit=rules.max_sessions)
    if status == "too_big":
        if row["r_bytes"] is not None and row["r_bytes"] > rules.fork.bytes:
            raise ForkTooLargeError(what="bytes", limit=rules.fork.bytes, size=row["r_bytes"])
        raise ForkTooLargeError(what="items", limit=rules.fork.items, size=row["r_count"])
    copied = row["r_count"]
    return AppendResult(
        count=copied,
        first_seq=1 if copied else None,
        last_seq=copied or None,
        revision=row["r_revision"],
    )


async def patch_metadata(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    patch: str,
    *,
    max_bytes: int,
    expected_revision: int | None,
    run_lease: int | None,
) -> SessionInfo:
    """``HistoryStore.patch_metadata``, in one transaction (a refusal changes nothing)."""
    async with conn.transaction():
        # The lease check first, as in every write (its lock, taken before the row's,
        # held to the commit); a round trip more, a patch being rare.
        lease_refused(
            await conn.fetchval(
                "SELECT session_memory_lease_check($1, $2, $3)", tenant, session_id, run_lease
            )
        )
        # An expired session is deleted first, as every write does: it is missing.
        await conn.execute(
            "SELECT session_memory_purge($1, $2, $3)", tenant, session_id, rules.batch_rows
        )
        row = await conn.fetchrow(
            "SELECT id, revision, metadata FROM sessions "
            "WHERE tenant = $1 AND session_id = $2 FOR UPDATE",
            tenant,
            session_id,
        )
        if row is None:
            raise SessionMissingError(f"no session {session_id!r}")
        check_revision(expected_revision, row["revision"])
        merged = merge_patch(json.loads(row["metadata"] or "{}"), json.loads(patch))
        text = json.dumps(merged, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > max_bytes:
            raise MetadataTooLargeError(size=len(text.encode()), limit=max_bytes)
        stored = None if merged == {} else text
        # Revision and expiry as the write functions compute them (migration 10).
        info = await conn.fetchrow(
            f"""
            UPDATE sessions SET metadata = $2, updated_at = clock_timestamp(),
                revision = greatest(revision + 1, session_memory_now_us()),
                expires_at = session_memory_expiry(coalesce(ttl_seconds, $3::float8),
                                                   clock_timestamp())
            WHERE id = $1 RETURNING {SESSION_COLUMNS}
            """,
            row["id"],
            stored,
            rules.default_ttl,
        )
        assert info is not None
        await store_labels(conn, tenant, row["id"], stored)
        return SessionInfo(*info)


# Deleting sessions: RETURNING this, for ``_deleted``.
_GONE = "RETURNING id, tenant, revision, session_id, item_count"

# Deleting idempotency records: release the items they kept (the CTE ``forgot``).
_RELEASE_KEPT = """
    UPDATE sessions AS s SET kept_items = s.kept_items - d.n
    FROM (SELECT tenant, session_id, count(*) AS n FROM forgot WHERE kept
          GROUP BY tenant, session_id) AS d
    WHERE s.tenant = d.tenant AND s.session_id = d.session_id
"""


async def _deleted(conn: Connection, rows: Sequence[Record], inline: int) -> None:
    """Sessions (``_GONE``) were deleted: delete their items and idempotency records,
    and raise the revision floors.

    Items of a session holding up to ``inline`` go now; a bigger session is retired
    and the sweep deletes its items a batch at a time, so no transaction grows huge.
    The floor keeps a recreated session from ever repeating a revision (an ETag).
    """
    if not rows:
        return
    await conn.execute(
        "DELETE FROM items WHERE session = ANY($1::bigint[])",
        [row["id"] for row in rows if row["item_count"] <= inline],
    )
    await conn.execute(
        "INSERT INTO retired_sessions (id) SELECT unnest($1::bigint[])",
        [row["id"] for row in rows if row["item_count"] > inline],
    )
    await conn.execute(
        "DELETE FROM idempotency_keys AS k USING unnest($1::text[], $2::text[]) AS d(t, s) "
        "WHERE k.tenant = d.t AND k.session_id = d.s",
        [row["tenant"] for row in rows],
        [row["session_id"] for row in rows],
    )
    await conn.execute(
        """
        INSERT INTO revision_floors AS f (tenant, revision)
        SELECT tenant, max(revision) FROM unnest($1::text[], $2::bigint[]) AS d(tenant, revision)
        GROUP BY tenant
        ON CONFLICT (tenant) DO UPDATE SET revision = greatest(f.revision, excluded.revision)
        """,
        [row["tenant"] for row in rows],
        [row["revision"] for row in rows],
    )


async def sweep_batch(conn: Connection, rows: int) -> Swept:
    """Up to ``rows`` expired sessions (retired), items of retired sessions,
    expired idempotency records and long-ended leases, in one transaction."""
    async with conn.transaction():
        gone = await conn.fetch(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
            f"WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED) {_GONE}",
            rows,
        )
        await _deleted(conn, gone, 0)
        items = await conn.fetchval(
            """
            WITH gone AS (
                DELETE FROM items WHERE (session, seq) IN (
                    SELECT i.session, i.seq FROM retired_sessions r
                    JOIN items i ON i.session = r.id LIMIT $1)
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            rows,
        )
        await conn.execute(
            "DELETE FROM retired_sessions r "
            "WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.session = r.id)"
        )
        forgot = await conn.fetchval(
            f"""
            WITH forgot AS (
                DELETE FROM idempotency_keys WHERE (tenant, key) IN (
                    SELECT tenant, key FROM idempotency_keys WHERE expires_at <= now()
                    LIMIT $1 FOR UPDATE SKIP LOCKED)
                RETURNING tenant, session_id, kept
            ), released AS ({_RELEASE_KEPT})
            SELECT count(*) FROM forgot
            """,
            rows,
        )
        # Leases long ended; not counted: what a batch leaves, the next sweep deletes.
        await leases.sweep_batch(conn, rows)
    return Swept(len(gone), int(items), int(forgot), 1)
