"""SQLite's reads: statements, and plain functions of a read connection.

The store runs each on a connection it owns (``store``): a threaded reader's, or for
a small page of items the event loop's own. Every read sees live sessions only, by the
time it is given (``now``).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..paging import item_bytes, seq_page, session_cursor
from ..records import MAX_SEQ, SeqPage, SessionBackup, SessionInfo, SessionPage
from ..tails import ANY_LINEAGE, APPENDED, FULL, UNCHANGED, ReadMark, TailPage, tail_page
from .schema import LIVE, SESSION_COLUMNS

__all__ = [
    "SINCE_SQL",
    "all_sessions",
    "backup",
    "bounded_rows",
    "count_sessions",
    "fetch_rows",
    "get_session",
    "items_sql",
    "last_seq",
    "ping",
    "read_seqs",
    "read_since",
    "session_page",
    "since_params",
]


@functools.cache
def items_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    """A page of (revision, seq, body) rows, for ``paging.page_from_rows``; its parameters:
    after, before (those given), tenant, session id, now, and the limit (if any)."""
    # One statement, so the revision and the items come from one snapshot.
    return (
        "SELECT s.revision, i.seq, i.body FROM sessions s LEFT JOIN items i ON i.session = s.id"
        + (" AND i.seq > ?" if after else "")
        + (" AND i.seq < ?" if before else "")
        + f" WHERE s.tenant = ? AND s.session_id = ? AND {LIVE}"
        + f" ORDER BY i.seq {'ASC' if forward else 'DESC'}"
        + (" LIMIT ?" if limited else "")
    )


# ``HistoryStore.read_since`` in one statement, so the check and the items come from
# one snapshot. The session's row comes first: (revision, NULL, NULL, lineage, item
# count, mode), mode as in ``tails``; then the items above the mode's lower bound
# (the mark's seq when appended, past every seq when unchanged, else 0), newest first,
# as (NULL, seq, body). The CTE is computed once (MATERIALIZED); its values reach the
# items' search as scalar subqueries, so the search is an index range walked
# backwards, stopped by the LIMIT (-1: none).
#
# The lineage is the session's row id, which SQLite gives again to a session made
# after the highest one was deleted. So "appended" also asks that no session of the
# tenant was deleted at or after the mark's revision (the tenant's revision floor,
# which every delete raises to the deleted session's revision, is below it): a
# session deleted and made again since the read fails that, and reads in full.
SINCE_SQL = f"""
WITH m AS MATERIALIZED (
    SELECT s.id, s.revision, s.item_count, CASE
        WHEN (s.id = :lineage OR :lineage = {ANY_LINEAGE}) AND s.revision = :revision
            THEN {UNCHANGED}
        WHEN s.id = :lineage AND coalesce(
            (SELECT revision FROM revision_floors WHERE tenant = :tenant), 0) < :revision
            AND s.item_count - (
                SELECT count(*) FROM items c WHERE c.session = s.id AND c.seq > :seq) = :count
            THEN {APPENDED}
        ELSE {FULL} END AS mode
    FROM sessions s
    WHERE s.tenant = :tenant AND s.session_id = :session_id AND {LIVE.replace("?", ":now")}
)
SELECT revision, NULL, NULL, id, item_count, mode FROM m
UNION ALL
SELECT * FROM (
    SELECT NULL, i.seq, i.body, NULL, NULL, NULL FROM items i
    WHERE i.session = (SELECT id FROM m) AND i.seq > (
        SELECT CASE mode WHEN {APPENDED} THEN :seq WHEN {UNCHANGED} THEN {MAX_SEQ} ELSE 0 END
        FROM m)
    ORDER BY i.seq DESC LIMIT :fetch
)
"""

# A mark that matches no session (a reader that knows nothing yet).
_NOTHING_KNOWN = ReadMark(0, 0, 0, 0)


def since_params(
    tenant: str, session_id: str, *, limit: int | None, known: ReadMark | None, now: float
) -> dict[str, Any]:
    """``SINCE_SQL``'s parameters: one row more than ``limit`` tells ``has_more``."""
    mark = known or _NOTHING_KNOWN
    return {
        "tenant": tenant,
        "session_id": session_id,
        "now": now,
        "lineage": mark.lineage,
        "seq": mark.seq,
        "count": mark.count,
        "revision": mark.revision,
        "fetch": -1 if limit is None else min(limit, MAX_SEQ - 1) + 1,
    }


def read_since(
    conn: sqlite3.Connection,
    params: dict[str, Any],
    *,
    limit: int | None,
    known: ReadMark | None,
    max_bytes: int | None,
    give_up: int | None = None,
    give_up_rows: int | None = None,
) -> TailPage | None:
    """``HistoryStore.read_since`` with ``since_params``: the session's row, then its
    items fetched as ``bounded_rows`` does (None: given up, past ``give_up`` bytes or
    ``give_up_rows`` rows)."""
    cursor = conn.execute(SINCE_SQL, params)
    try:
        header = cursor.fetchone()
        if header is None:
            return tail_page(None, [], limit, known, max_bytes)
        rows = bounded_rows(cursor, max_bytes, give_up=give_up, give_up_rows=give_up_rows)
    finally:
        cursor.close()
    if rows is None:
        return None
    revision, _, _, lineage, count, mode = header
    items = [(row[1], row[2]) for row in rows]
    return tail_page((lineage, revision, count, mode), items, limit, known, max_bytes)


def bounded_rows(
    cursor: sqlite3.Cursor,
    max_bytes: int | None,
    *,
    give_up: int | None = None,
    give_up_rows: int | None = None,
) -> list[Any] | None:
    """Fetch (revision, seq, body) rows until their bodies pass ``max_bytes``.

    The row that passes it is kept (``page_from_rows`` cuts before it and says
    there is more; when the first row alone passes it, the second is kept), so at
    most ``max_bytes`` (or the first item) plus one item is held. Past
    ``give_up`` bytes or ``give_up_rows`` rows (before the page is full) it stops
    and returns None.
    """
    rows: list[Any] = []
    total = 0
    for row in cursor:
        rows.append(row)
        if row[2] is None:
            continue
        total += item_bytes(row[2])
        # Past the bound with a second row in hand: that row tells has_more.
        if max_bytes is not None and total > max_bytes and len(rows) > 1:
            break
        if give_up is not None and total > give_up:
            return None
        if give_up_rows is not None and len(rows) > give_up_rows:
            return None
    return rows


def fetch_rows(
    conn: sqlite3.Connection,
    sql: str,
    params: Sequence[Any],
    max_bytes: int | None,
    *,
    give_up: int | None = None,
) -> list[Any] | None:
    """``bounded_rows`` of a statement: it stops fetching once the page is full,
    instead of holding every row a LIMIT allows."""
    cursor = conn.execute(sql, params)
    try:
        return bounded_rows(cursor, max_bytes, give_up=give_up)
    finally:
        cursor.close()


def read_seqs(
    conn: sqlite3.Connection,
    tenant: str,
    session_id: str,
    *,
    after: int,
    limit: int,
    max_bytes: int | None,
    now: float,
) -> SeqPage:
    """``HistoryStore.read_seqs``."""
    # (created_at, seq, body) rows, so the byte-bounded fetch applies; the session's
    # row comes even with no items above ``after`` (a null seq), for its lineage.
    rows = fetch_rows(
        conn,
        "SELECT s.created_at, i.seq, i.body FROM sessions s LEFT JOIN items i "
        f"ON i.session = s.id AND i.seq > ? WHERE s.tenant = ? AND s.session_id = ? AND {LIVE} "
        "ORDER BY i.seq LIMIT ?",
        (after, tenant, session_id, now, limit + 1),
        max_bytes,
    )
    assert rows is not None  # nothing to give up without a budget
    lineage = float(rows[0][0]) if rows else None
    page, has_more = seq_page(
        [(row[1], row[2]) for row in rows if row[1] is not None], limit, max_bytes
    )
    return SeqPage(page, has_more, lineage)


def last_seq(conn: sqlite3.Connection, tenant: str, session_id: str, *, now: float) -> int:
    """``HistoryStore.last_seq``."""
    row = conn.execute(
        f"SELECT last_seq FROM sessions s WHERE tenant = ? AND session_id = ? AND {LIVE}",
        (tenant, session_id, now),
    ).fetchone()
    return int(row[0]) if row else 0


def get_session(
    conn: sqlite3.Connection, tenant: str, session_id: str, *, now: float
) -> SessionInfo | None:
    """``SessionStore.get_session``."""
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions s WHERE tenant = ? AND session_id = ? AND {LIVE}",
        (tenant, session_id, now),
    ).fetchone()
    return None if row is None else SessionInfo(*row)


def backup(
    conn: sqlite3.Connection, tenant: str, session_id: str, *, now: float
) -> SessionBackup | None:
    """``HistoryStore.backup``."""
    row = conn.execute(
        "SELECT created_at, updated_at, last_seq, ttl_seconds, expires_at, metadata "
        f"FROM sessions s WHERE tenant = ? AND session_id = ? AND {LIVE}",
        (tenant, session_id, now),
    ).fetchone()
    return None if row is None else SessionBackup(*row)


def session_page(
    conn: sqlite3.Connection,
    tenant: str,
    *,
    limit: int,
    after: tuple[int, str] | None,
    labels: Sequence[tuple[str, str]],
    prefix: str | None,
    now: float,
) -> SessionPage:
    """A tenant's live sessions by (revision, id), newest first, past ``after``: those
    with every one of ``labels`` and an id starting with ``prefix``."""
    params: list[Any] = []
    sql = f"SELECT {SESSION_COLUMNS} FROM "
    if labels:
        # The first label drives the query through session_labels' key; the rest and
        # the prefix are checked on the sessions it leads to. CROSS JOIN: SQLite keeps
        # this order, so it never walks the tenant's sessions looking for labels (it
        # would, to avoid the sort).
        sql += (
            "session_labels l CROSS JOIN sessions s "
            "WHERE l.tenant = ? AND l.key = ? AND l.value = ? AND s.id = l.session AND "
        )
        params += [tenant, *labels[0]]
    else:
        sql += "sessions s WHERE "
    sql += f"s.tenant = ? AND {LIVE}"
    params += [tenant, now]
    for key, value in labels[1:]:
        sql += (
            " AND EXISTS (SELECT 1 FROM session_labels m WHERE m.tenant = ? AND m.key = ?"
            " AND m.value = ? AND m.session = s.id)"
        )
        params += [tenant, key, value]
    if prefix:
        sql += " AND substr(s.session_id, 1, ?) = ?"
        params += [len(prefix), prefix]
    if after is not None:
        sql += " AND (s.revision, s.session_id) < (?, ?)"
        params += after
    sql += " ORDER BY s.revision DESC, s.session_id DESC LIMIT ?"
    params.append(limit + 1)
    rows = conn.execute(sql, params).fetchall()
    sessions = [SessionInfo(*row) for row in rows[:limit]]
    last = sessions[-1] if len(rows) > limit else None
    return SessionPage(
        sessions=sessions,
        next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
    )


def all_sessions(
    conn: sqlite3.Connection, *, after: tuple[str, str] | None, limit: int, now: float
) -> list[tuple[str, str]]:
    """``SessionStore.all_sessions``."""
    tenant, session_id = after or ("", None)
    rows = conn.execute(
        f"SELECT tenant, session_id FROM sessions s WHERE {LIVE} AND "
        "(tenant > ? OR (tenant = ? AND (? IS NULL OR session_id > ?))) "
        "ORDER BY tenant, session_id LIMIT ?",
        (now, tenant, tenant, session_id, session_id, limit),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def count_sessions(conn: sqlite3.Connection, *, now: float) -> int:
    """``SessionStore.count_sessions``."""
    (count,) = conn.execute(f"SELECT count(*) FROM sessions s WHERE {LIVE}", (now,)).fetchone()
    return int(count)


def ping(conn: sqlite3.Connection) -> None:
    """A trivial query: the file answers."""
    conn.execute("SELECT 1 FROM sessions LIMIT 1").fetchall()
