"""SQLite's restore: a backed-up session put back as it was (``HistoryStore.restore``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ..records import SessionBackup
from .writes import Policy, new_session, purge_expired, session_row, store_labels

__all__ = ["restore"]


def restore(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    items: Sequence[tuple[int, str]],
    backup: SessionBackup,
) -> int:
    """``HistoryStore.restore``: one write."""
    now = policy.clock()
    purge_expired(conn, policy, tenant, session_id, now)
    row = session_row(conn, tenant, session_id, "id, last_seq")
    made = row is None
    if row is None:
        # Made at its backed-up update time: its first revision follows from that
        # (above the tenant's floor), so listings keep their order.
        rowid, _ = new_session(
            conn,
            policy,
            tenant,
            session_id,
            now,
            ttl=backup.ttl,
            metadata=backup.metadata,
            written_at=backup.updated_at,
        )
        conn.execute(
            "UPDATE sessions SET created_at = ?, expires_at = ? WHERE id = ?",
            (backup.created_at, backup.expires_at, rowid),
        )
        store_labels(conn, tenant, rowid, backup.metadata)
        newest = last = 0
    else:
        rowid, last = row
        (newest,) = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM items WHERE session = ?", (rowid,)
        ).fetchone()
    fresh = [(rowid, seq, body) for seq, body in items if seq > newest]
    top = max(backup.last_seq, last, fresh[-1][1] if fresh else 0)
    if not made and not fresh and top == last:
        return 0  # all there already: nothing changes, not even the revision
    conn.executemany("INSERT INTO items (session, seq, body) VALUES (?, ?, ?)", fresh)
    # An existing session's revision moves by one, not to the clock's, so it keeps its
    # place among the restored sessions, listed by recency.
    conn.execute(
        "UPDATE sessions SET item_count = item_count + ?, last_seq = ?, "
        "revision = revision + ? WHERE id = ?",
        (len(fresh), top, 0 if made else 1, rowid),
    )
    return len(fresh)
