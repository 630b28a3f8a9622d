"""PostgreSQL's restore: a backed-up session put back as it was (``HistoryStore.restore``).

One transaction of a few statements (restores are rare: an import's), over the
write functions' helpers (migrations 7 and 10): the expiry purge, the tenant's
session limit and its lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import TooManySessionsError
from ..records import SessionBackup, revision_at
from .driver import Connection, Record
from .writes import Rules, lease_refused, store_labels

__all__ = ["restore"]

# A restored session, made at its backed-up times; its first revision follows from
# its update time (above the tenant's floor, so no ETag repeats), as SQLite's does,
# so listings keep their order.
_MAKE = """
INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count, last_seq,
                      revision, ttl_seconds, expires_at, metadata)
VALUES ($1, $2, to_timestamp($3), to_timestamp($4), 0, 0,
        greatest($5, coalesce((SELECT revision FROM revision_floors WHERE tenant = $1), 0) + 1),
        $6, to_timestamp($7), $8)
ON CONFLICT (tenant, session_id) DO NOTHING
RETURNING id, last_seq
"""

_LOCK = "SELECT id, last_seq FROM sessions WHERE tenant = $1 AND session_id = $2 FOR UPDATE"


async def _made(
    conn: Connection, rules: Rules, tenant: str, session_id: str, backup: SessionBackup
) -> Record | None:
    """The session made as ``backup`` says, or None if another writer made it first."""
    if await conn.fetchval("SELECT session_memory_tenant_full($1, $2)", tenant, rules.max_sessions):
        raise TooManySessionsError(limit=rules.max_sessions)
    row = await conn.fetchrow(
        _MAKE,
        tenant,
        session_id,
        backup.created_at,
        backup.updated_at,
        revision_at(backup.updated_at),
        backup.ttl,
        backup.expires_at,
        backup.metadata,
    )
    if row is not None:
        await store_labels(conn, tenant, row["id"], backup.metadata)
    return row


async def restore(
    conn: Connection,
    rules: Rules,
    tenant: str,
    session_id: str,
    items: Sequence[tuple[int, str]],
    backup: SessionBackup,
    *,
    honour_lease: bool = True,
) -> int:
    """``HistoryStore.restore``, in one transaction."""
    async with conn.transaction():
        if honour_lease:
            # First, as a write's check: it holds the session's lease lock shared to
            # the commit, so no acquisition slips in between.
            lease_refused(
                await conn.fetchval(
                    "SELECT session_memory_lease_check($1, $2, NULL)", tenant, session_id
                )
            )
        await conn.execute(
            "SELECT session_memory_purge($1, $2, $3)", tenant, session_id, rules.batch_rows
        )
        row = await conn.fetchrow(_LOCK, tenant, session_id)
        made = False
        if row is None:
            row = await _made(conn, rules, tenant, session_id, backup)
            made = row is not None
            if row is None:  # another writer made it meanwhile (the insert waited for it)
                row = await conn.fetchrow(_LOCK, tenant, session_id)
        assert row is not None
        rowid, last = row["id"], row["last_seq"]
        newest = 0
        if not made:
            newest = await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM items WHERE session = $1", rowid
            )
        fresh = [(seq, body) for seq, body in items if seq > newest]
        top = max(backup.last_seq, last, fresh[-1][0] if fresh else 0)
        if not made and not fresh and top == last:
            return 0  # all there already: nothing changes, not even the revision
        await conn.execute(
            "INSERT INTO items (session, seq, body) "
            "SELECT $1, seq, body FROM unnest($2::bigint[], $3::text[]) AS t(seq, body)",
            rowid,
            [seq for seq, _ in fresh],
            [body for _, body in fresh],
        )
        # An existing session's revision moves by one, not to the clock's, so it keeps
        # its place among the restored sessions, listed by recency.
        await conn.execute(
            "UPDATE sessions SET item_count = item_count + $2, last_seq = $3, "
            "revision = revision + $4 WHERE id = $1",
            rowid,
            len(fresh),
            top,
            0 if made else 1,
        )
        return len(fresh)
