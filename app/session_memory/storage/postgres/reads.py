"""PostgreSQL reads, as plain functions over a connection: each one statement.

One statement, so what a read returns comes from one snapshot (the items and the
revision they are at). Reads bounded by bytes cut in SQL by ``octet_length``, which
PostgreSQL reads from a stored value's header (TOAST keeps it): the rows past the
bound are never fetched or sent. Items are ``text``, not ``jsonb``: they come back
byte for byte.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from ..paging import page_from_rows, parse_session_cursor, read_shape, seq_page, session_cursor
from ..records import MAX_SEQ, ItemPage, SeqPage, SessionBackup, SessionInfo, SessionPage
from ..tails import ANY_LINEAGE, APPENDED, FULL, UNCHANGED, ReadMark, TailPage, tail_page
from .driver import Connection
from .sql import SESSION_COLUMNS, live

__all__ = [
    "all_sessions",
    "backup",
    "count_sessions",
    "find_sessions",
    "get_session",
    "last_seq",
    "ping",
    "read",
    "read_seqs",
    "read_since",
]


@functools.cache
def _read_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    # Parameters: $1 tenant, $2 session id, then after, before and the row count.
    join = ["i.session = s.id"]
    for wanted, op in ((after, ">"), (before, "<")):
        if wanted:
            join.append(f"i.seq {op} ${len(join) + 2}")
    sql = (
        "SELECT s.revision, i.seq, i.body FROM sessions s "
        f"LEFT JOIN items i ON {' AND '.join(join)} "
        f"WHERE s.tenant = $1 AND s.session_id = $2 AND {live('s')} "
        f"ORDER BY i.seq {'ASC' if forward else 'DESC'}"
    )
    return sql + (f" LIMIT ${len(join) + 2}" if limited else "")


@functools.cache
def _bounded_read_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    """``_read_sql``, keeping rows only until their bodies pass a byte bound (last $).

    The row that passes the bound is sent (the second, when the first alone passes
    it), and ``page_from_rows`` cuts before it and says there is more.
    """
    inner = _read_sql(after, before, forward, limited)
    bound = f"${2 + after + before + limited + 1}"
    order = f"ORDER BY r.seq {'ASC' if forward else 'DESC'}"
    return (
        "SELECT revision, seq, body FROM ("
        "SELECT r.revision, r.seq, r.body, row_number() OVER w AS n, "
        "coalesce(sum(octet_length(r.body)) OVER w, 0) - coalesce(octet_length(r.body), 0)"
        f" AS before_it FROM ({inner}) r WINDOW w AS ({order} ROWS UNBOUNDED PRECEDING)"
        f") page WHERE before_it <= {bound} OR n <= 2 "
        f"ORDER BY seq {'ASC' if forward else 'DESC'}"
    )


async def ping(conn: Connection) -> None:
    """A trivial query on the store's own table (so a missing schema fails too)."""
    await conn.fetchval("SELECT 1 FROM sessions LIMIT 1")


async def read(
    conn: Connection,
    tenant: str,
    session_id: str,
    *,
    limit: int | None,
    after: int | None,
    before: int | None,
    max_bytes: int | None,
) -> ItemPage:
    """``SessionStore.read`` with a ``limit`` of None or above 0."""
    forward, fetch = read_shape(limit, after)
    params = [value for value in (after, before, fetch, max_bytes) if value is not None]
    shape = (after is not None, before is not None, forward, fetch is not None)
    sql = _read_sql(*shape) if max_bytes is None else _bounded_read_sql(*shape)
    rows = await conn.fetch(sql, tenant, session_id, *params)
    return page_from_rows(list(rows), limit, forward, max_bytes)


# ``HistoryStore.read_since`` in one statement (one snapshot). Parameters: $1 tenant,
# $2 session id, the mark's $3 lineage, $4 seq, $5 count and $6 revision, $7 the rows
# to fetch (NULL: all), $8 the byte bound (NULL: none). Each row carries the session's
# (revision, lineage, item count, mode) and one item above the mode's lower bound (the
# mark's seq when appended, past every seq when unchanged, else 0), newest first, cut
# by bytes in SQL as ``read`` is; a null seq when there is none. The lineage is the
# session's row id, which a BIGSERIAL never gives twice. MATERIALIZED: the mode is
# worked out once; inlined, its count would be planned at every use, and the plan's
# cost (over PostgreSQL's jit_above_cost) would have it JIT-compiled on every read.
_SINCE_SQL = f"""
WITH m AS MATERIALIZED (
    SELECT s.id, s.revision, s.item_count, CASE
        WHEN (s.id = $3 OR $3 = {ANY_LINEAGE}) AND s.revision = $6 THEN {UNCHANGED}
        WHEN s.id = $3 AND s.item_count - (
            SELECT count(*) FROM items c WHERE c.session = s.id AND c.seq > $4) = $5
            THEN {APPENDED}
        ELSE {FULL} END AS mode
    FROM sessions s WHERE s.tenant = $1 AND s.session_id = $2 AND {live("s")}
)
SELECT m.revision, p.seq, p.body, m.id, m.item_count, m.mode FROM m
LEFT JOIN LATERAL (
    SELECT seq, body FROM (
        SELECT i.seq, i.body, row_number() OVER w AS n,
            coalesce(sum(octet_length(i.body)) OVER w, 0) - octet_length(i.body) AS before
        FROM items i WHERE i.session = m.id AND i.seq > CASE m.mode
            WHEN {APPENDED} THEN $4 WHEN {UNCHANGED} THEN {MAX_SEQ} ELSE 0 END
        WINDOW w AS (ORDER BY i.seq DESC ROWS UNBOUNDED PRECEDING)
        ORDER BY i.seq DESC LIMIT $7
    ) page WHERE $8::bigint IS NULL OR before <= $8 OR n <= 2
) p ON true
ORDER BY p.seq DESC
"""

_NOTHING_KNOWN = ReadMark(0, 0, 0, 0)


async def read_since(
    conn: Connection,
    tenant: str,
    session_id: str,
    *,
    limit: int | None,
    known: ReadMark | None,
    max_bytes: int | None,
) -> TailPage:
    """``HistoryStore.read_since``."""
    mark = known or _NOTHING_KNOWN
    fetch = None if limit is None else min(limit, MAX_SEQ - 1) + 1
    rows = await conn.fetch(
        _SINCE_SQL,
        tenant,
        session_id,
        mark.lineage,
        mark.seq,
        mark.count,
        mark.revision,
        fetch,
        max_bytes,
    )
    if not rows:
        return tail_page(None, [], limit, known, max_bytes)
    revision, _, _, lineage, count, mode = rows[0]
    items = [(row[1], row[2]) for row in rows if row[1] is not None]
    return tail_page((lineage, revision, count, mode), items, limit, known, max_bytes)


async def read_seqs(
    conn: Connection,
    tenant: str,
    session_id: str,
    *,
    after: int,
    limit: int,
    max_bytes: int | None,
) -> SeqPage:
    """``HistoryStore.read_seqs``, cut by bytes in SQL as ``read`` is; the session's row
    comes even with no items above ``after`` (a null seq), for its lineage."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM s.created_at)::float8, p.seq, p.body FROM sessions s "
        "LEFT JOIN LATERAL (SELECT seq, body FROM (SELECT i.seq, i.body, "
        "row_number() OVER w AS n, "
        "coalesce(sum(octet_length(i.body)) OVER w, 0) - octet_length(i.body) AS before "
        "FROM items i WHERE i.session = s.id AND i.seq > $3 "
        "WINDOW w AS (ORDER BY i.seq ROWS UNBOUNDED PRECEDING) ORDER BY i.seq LIMIT $4"
        ") page WHERE $5::bigint IS NULL OR before <= $5 OR n <= 2) p ON true "
        f"WHERE s.tenant = $1 AND s.session_id = $2 AND {live('s')} ORDER BY p.seq",
        tenant,
        session_id,
        after,
        limit + 1,
        max_bytes,
    )
    lineage = float(rows[0][0]) if rows else None
    page, has_more = seq_page(
        [(row[1], row[2]) for row in rows if row[1] is not None], limit, max_bytes
    )
    return SeqPage(page, has_more, lineage)


async def last_seq(conn: Connection, tenant: str, session_id: str) -> int:
    """``HistoryStore.last_seq``."""
    value = await conn.fetchval(
        f"SELECT last_seq FROM sessions WHERE tenant = $1 AND session_id = $2 AND {live()}",
        tenant,
        session_id,
    )
    return int(value or 0)


async def backup(conn: Connection, tenant: str, session_id: str) -> SessionBackup | None:
    """``HistoryStore.backup``."""
    row = await conn.fetchrow(
        "SELECT extract(epoch FROM created_at)::float8, extract(epoch FROM updated_at)::float8, "
        "last_seq, ttl_seconds, extract(epoch FROM expires_at)::float8, metadata "
        f"FROM sessions WHERE tenant = $1 AND session_id = $2 AND {live()}",
        tenant,
        session_id,
    )
    return SessionBackup(*row) if row is not None else None


async def get_session(conn: Connection, tenant: str, session_id: str) -> SessionInfo | None:
    """``SessionStore.get_session``."""
    row = await conn.fetchrow(
        f"SELECT {SESSION_COLUMNS} FROM sessions "
        f"WHERE tenant = $1 AND session_id = $2 AND {live()}",
        tenant,
        session_id,
    )
    return SessionInfo(*row) if row is not None else None


async def all_sessions(
    conn: Connection, *, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, str]]:
    """``SessionStore.all_sessions``."""
    tenant, session_id = after or ("", None)
    rows = await conn.fetch(
        f"SELECT tenant, session_id FROM sessions WHERE {live()} AND "
        "(tenant > $1 OR (tenant = $1 AND ($2::text IS NULL OR session_id > $2))) "
        "ORDER BY tenant, session_id LIMIT $3",
        tenant,
        session_id,
        limit,
    )
    return [(row[0], row[1]) for row in rows]


async def count_sessions(conn: Connection) -> int:
    """``SessionStore.count_sessions``."""
    return int(await conn.fetchval(f"SELECT count(*) FROM sessions WHERE {live()}"))


async def find_sessions(
    conn: Connection,
    tenant: str,
    *,
    limit: int,
    cursor: str | None = None,
    metadata: Mapping[str, str] | None = None,
    prefix: str | None = None,
) -> SessionPage:
    """``HistoryStore.find_sessions``; without filters, ``SessionStore.list_sessions``."""
    params: list[Any] = [tenant]
    where = ["s.tenant = $1", live("s")]
    for key, value in (metadata or {}).items():
        params += [key, value]
        where.append(
            "EXISTS (SELECT 1 FROM session_labels l WHERE l.tenant = $1 "
            f"AND l.key = ${len(params) - 1} AND l.value = ${len(params)} "
            "AND l.session = s.id)"
        )
    if prefix:
        params.append(prefix)
        where.append(f"starts_with(s.session_id, ${len(params)})")
    if cursor is not None:
        # The listing's own cursor scheme (``session_cursor``): (revision, id).
        params += parse_session_cursor(cursor)
        where.append(f"(s.revision, s.session_id) < (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    rows = await conn.fetch(
        f"SELECT {SESSION_COLUMNS} FROM sessions s WHERE {' AND '.join(where)} "
        f"ORDER BY s.revision DESC, s.session_id DESC LIMIT ${len(params)}",
        *params,
    )
    sessions = [SessionInfo(*row) for row in rows[:limit]]
    last = sessions[-1] if len(rows) > limit else None
    return SessionPage(
        sessions=sessions,
        next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
    )
