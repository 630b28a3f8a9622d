"""SQLite's half of ``HistoryStore``: replace, fork, metadata and filtered listing.

A mixin of ``SQLiteStore``: every write is a function run by its group-commit writer,
like the store's own, so each is one transaction on the writer's connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    MetadataTooLargeError,
    SessionExistsError,
    SessionFullError,
    SessionMissingError,
    check_revision,
)
from .metadata import labels_of, merge_patch
from .paging import parse_session_cursor, seq_page, session_cursor
from .records import (
    MAX_SEQ,
    AppendResult,
    Idempotency,
    SessionInfo,
    SessionPage,
    decode_append,
    encode_append,
    revision_at,
)

__all__ = ["HISTORY_MIGRATION", "SQLiteHistory", "store_labels"]

T = TypeVar("T")

# Metadata as JSON text on the session; its top-level scalars copied into
# session_labels, whose key leads with what a filter names, so a filter reads only
# the matching sessions' entries. The trigger keeps labels from outliving sessions
# whichever statement deletes them (clear, expiry, sweep).
HISTORY_MIGRATION = """
ALTER TABLE sessions ADD COLUMN metadata TEXT;
CREATE TABLE session_labels (
    tenant  TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    session INTEGER NOT NULL,
    PRIMARY KEY (tenant, key, value, session)
) WITHOUT ROWID;
CREATE INDEX session_labels_by_session ON session_labels (session);
CREATE TRIGGER session_labels_gone AFTER DELETE ON sessions BEGIN
    DELETE FROM session_labels WHERE session = old.id;
END
"""

_COLUMNS = "session_id, item_count, created_at, updated_at, revision, expires_at, metadata"
_RENEW = (
    "ttl_seconds = coalesce(:ttl, ttl_seconds), expires_at = CASE "
    "WHEN coalesce(:ttl, ttl_seconds, :default) > 0 "
    "THEN :now + coalesce(:ttl, ttl_seconds, :default) END"
)


def store_labels(conn: sqlite3.Connection, tenant: str, rowid: int, metadata: str | None) -> None:
    """Make session_labels hold exactly the labels of ``metadata`` for session ``rowid``."""
    conn.execute("DELETE FROM session_labels WHERE session = ?", (rowid,))
    conn.executemany(
        "INSERT INTO session_labels VALUES (?, ?, ?, ?)",
        [(tenant, key, value, rowid) for key, value in labels_of(metadata)],
    )


class SQLiteHistory:
    """Replace, fork, metadata: see ``HistoryStore`` for the contract.

    The writes follow the store's rules (``sqlite``): revisions per session
    (``revision_at``), a new session above its tenant's floor with an id from
    ``_NEW_SESSION_ID``, expired sessions purged through ``_deleted``, the tenant's
    session limit, and idempotency records belonging to their session.
    """

    if TYPE_CHECKING:
        _clock: Callable[[], float]
        _default_ttl: float
        _sweep_batch_rows: int
        _max_sessions: int

        async def _submit(
            self,
            run: Callable[[sqlite3.Connection], T],
            *,
            tenant: str = "",
            session_id: str = "",
            idempotency: Idempotency | None = None,
            codec: tuple[Callable[[T], str], Callable[[str], T]] | None = None,
        ) -> T: ...

        def _check_room(self, conn: sqlite3.Connection, tenant: str, now: float) -> None: ...

        async def _fetchall(self, sql: str, params: Sequence[Any]) -> list[Any]: ...

        async def _fetch_bounded(
            self, sql: str, params: Sequence[Any], max_bytes: int | None
        ) -> list[Any]: ...

    def _new_session(
        self,
        conn: sqlite3.Connection,
        tenant: str,
        session_id: str,
        now: float,
        *,
        count: int = 0,
        ttl: float | None = None,
        metadata: str | None = None,
    ) -> tuple[int, int] | None:
        """Insert a session (None if it exists): its row id and first revision."""
        if self._max_sessions:
            self._check_room(conn, tenant, now)
        row = conn.execute(
            f"""
            INSERT INTO sessions (id, tenant, session_id, created_at, updated_at, item_count,
                                  last_seq, revision, ttl_seconds, expires_at, metadata)
            VALUES ({_sqlite._NEW_SESSION_ID}, :tenant, :session_id, :now, :now, :count,
                    :count, {_sqlite._FIRST_REVISION}, :ttl,
                    CASE WHEN coalesce(:ttl, :default) > 0
                         THEN :now + coalesce(:ttl, :default) END, :metadata)
            ON CONFLICT (tenant, session_id) DO NOTHING
            RETURNING id, revision
            """,
            {
                "tenant": tenant,
                "session_id": session_id,
                "now": now,
                "now_us": revision_at(now),
                "count": count,
                "ttl": ttl,
                "default": self._default_ttl,
                "metadata": metadata,
            },
        ).fetchone()
        return None if row is None else (row[0], row[1])

    async def replace(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[str],
        *,
        from_seq: int | None = None,
        max_items: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        ttl: float | None = None,
    ) -> AppendResult:
        count = len(items)

        def run(conn: sqlite3.Connection) -> AppendResult:
            now = self._clock()
            _sqlite._purge_expired(conn, tenant, session_id, now, self._sweep_batch_rows)
            row = conn.execute(
                "SELECT id, item_count, last_seq, revision, kept_items FROM sessions "
                "WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            check_revision(expected_revision, row[3] if row else 0)
            if row is None:
                if count == 0:
                    return AppendResult(count=0, first_seq=None, last_seq=None, revision=0)
                if max_items is not None and count > max_items:
                    raise _full(max_items, 0, count)
                created = self._new_session(conn, tenant, session_id, now)
                assert created is not None  # the writer is the only one
                row = (created[0], 0, 0, created[1], 0)
            rowid, held, last_seq, _, kept = row
            removed = conn.execute(
                "DELETE FROM items WHERE session = ? AND seq >= ?", (rowid, from_seq or 0)
            ).rowcount
            if max_items is not None and held - removed + kept + count > max_items:
                raise _full(max_items, held - removed + kept, count, kept)
            conn.executemany(
                "INSERT INTO items (session, seq, body) VALUES (?, ?, ?)",
                [(rowid, last_seq + 1 + i, body) for i, body in enumerate(items)],
            )
            (revision,) = conn.execute(
                f"""
                UPDATE sessions SET item_count = :held, last_seq = :last, updated_at = :now,
                    revision = {_sqlite._NEXT_REVISION}, {_RENEW}
                WHERE id = :id RETURNING revision
                """,
                {
                    "held": held - removed + count,
                    "last": last_seq + count,
                    "now": now,
                    "now_us": revision_at(now),
                    "ttl": ttl,
                    "default": self._default_ttl,
                    "id": rowid,
                },
            ).fetchone()
            first = last_seq + 1 if count else None
            return AppendResult(
                count=count,
                first_seq=first,
                last_seq=last_seq + count if count else None,
                revision=revision,
            )

        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=(encode_append, decode_append),
        )

    async def fork(
        self,
        tenant: str,
        session_id: str,
        target_id: str,
        *,
        through_seq: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> AppendResult:
        def run(conn: sqlite3.Connection) -> AppendResult:
            now = self._clock()
            inline = self._sweep_batch_rows
            _sqlite._purge_expired(conn, tenant, session_id, now, inline)
            _sqlite._purge_expired(conn, tenant, target_id, now, inline)
            source = conn.execute(
                "SELECT id, revision, ttl_seconds, metadata FROM sessions "
                "WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            if source is None:
                raise SessionMissingError(f"no session {session_id!r}")
            check_revision(expected_revision, source[1])
            exists = conn.execute(
                "SELECT 1 FROM sessions WHERE tenant = ? AND session_id = ?", (tenant, target_id)
            ).fetchone()
            if exists is not None:
                raise SessionExistsError(f"session {target_id!r} already exists")
            (count,) = conn.execute(
                "SELECT count(*) FROM items WHERE session = ? AND seq <= ?",
                (source[0], _through(through_seq)),
            ).fetchone()
            created = self._new_session(
                conn, tenant, target_id, now, count=count, ttl=source[2], metadata=source[3]
            )
            assert created is not None
            rowid, revision = created
            # One statement, so the copy never passes through Python.
            conn.execute(
                "INSERT INTO items (session, seq, body) "
                "SELECT ?, row_number() OVER (ORDER BY seq), body FROM items "
                "WHERE session = ? AND seq <= ? ORDER BY seq",
                (rowid, source[0], _through(through_seq)),
            )
            conn.execute(
                "INSERT INTO session_labels SELECT tenant, key, value, ? FROM session_labels "
                "WHERE session = ?",
                (rowid, source[0]),
            )
            return AppendResult(
                count=count,
                first_seq=1 if count else None,
                last_seq=count or None,
                revision=revision,
            )

        # The record belongs to the session the fork made: clearing it forgets the key.
        return await self._submit(
            run,
            tenant=tenant,
            session_id=target_id,
            idempotency=idempotency,
            codec=(encode_append, decode_append),
        )

    async def patch_metadata(
        self,
        tenant: str,
        session_id: str,
        patch: str,
        *,
        max_bytes: int,
        expected_revision: int | None = None,
    ) -> SessionInfo:
        def run(conn: sqlite3.Connection) -> SessionInfo:
            now = self._clock()
            _sqlite._purge_expired(conn, tenant, session_id, now, self._sweep_batch_rows)
            row = conn.execute(
                "SELECT id, revision, metadata FROM sessions WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            if row is None:
                raise SessionMissingError(f"no session {session_id!r}")
            check_revision(expected_revision, row[1])
            merged = merge_patch(json.loads(row[2] or "{}"), json.loads(patch))
            text = json.dumps(merged, ensure_ascii=False, separators=(",", ":"))
            if len(text.encode()) > max_bytes:
                raise MetadataTooLargeError(size=len(text.encode()), limit=max_bytes)
            stored = None if merged == {} else text
            info = conn.execute(
                f"""
                UPDATE sessions SET metadata = :metadata, updated_at = :now,
                    revision = {_sqlite._NEXT_REVISION}, {_RENEW}
                WHERE id = :id RETURNING {_COLUMNS}
                """,
                {
                    "metadata": stored,
                    "now": now,
                    "now_us": revision_at(now),
                    "ttl": None,
                    "default": self._default_ttl,
                    "id": row[0],
                },
            ).fetchone()
            store_labels(conn, tenant, row[0], stored)
            return SessionInfo(*info)

        return await self._submit(run)

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> tuple[list[tuple[int, str]], bool]:
        # (revision, seq, body) rows, so the store's byte-bounded fetch applies.
        rows = await self._fetch_bounded(
            "SELECT s.revision, i.seq, i.body FROM sessions s JOIN items i ON i.session = s.id "
            "WHERE s.tenant = ? AND s.session_id = ? AND i.seq > ? "
            "AND (s.expires_at IS NULL OR s.expires_at > ?) ORDER BY i.seq LIMIT ?",
            (tenant, session_id, after, self._clock(), limit + 1),
            max_bytes,
        )
        return seq_page([(row[1], row[2]) for row in rows], limit, max_bytes)

    async def last_seq(self, tenant: str, session_id: str) -> int:
        rows = await self._fetchall(
            "SELECT last_seq FROM sessions WHERE tenant = ? AND session_id = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (tenant, session_id, self._clock()),
        )
        return int(rows[0][0]) if rows else 0

    async def find_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> SessionPage:
        # The first label drives the query through session_labels' key; the rest and
        # the prefix are checked on the sessions it leads to.
        pairs = list((metadata or {}).items())
        params: list[Any] = []
        sql = f"SELECT {', '.join('s.' + c for c in _COLUMNS.split(', '))} FROM "
        if pairs:
            key, value = pairs.pop(0)
            # CROSS JOIN: SQLite keeps this order, so it never walks the tenant's
            # sessions looking for labels (it would, to avoid the sort).
            sql += (
                "session_labels l CROSS JOIN sessions s "
                "WHERE l.tenant = ? AND l.key = ? AND l.value = ? AND s.id = l.session AND "
            )
            params += [tenant, key, value]
        else:
            sql += "sessions s WHERE "
        sql += "s.tenant = ? AND (s.expires_at IS NULL OR s.expires_at > ?)"
        params += [tenant, self._clock()]
        for key, value in pairs:
            sql += (
                " AND EXISTS (SELECT 1 FROM session_labels m WHERE m.tenant = ? AND m.key = ?"
                " AND m.value = ? AND m.session = s.id)"
            )
            params += [tenant, key, value]
        if prefix:
            sql += " AND substr(s.session_id, 1, ?) = ?"
            params += [len(prefix), prefix]
        if cursor is not None:
            # The listing's own cursor scheme (``session_cursor``): (revision, id).
            sql += " AND (s.revision, s.session_id) < (?, ?)"
            params += parse_session_cursor(cursor)
        sql += " ORDER BY s.revision DESC, s.session_id DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._fetchall(sql, params)
        sessions = [SessionInfo(*row) for row in rows[:limit]]
        last = sessions[-1] if len(rows) > limit else None
        return SessionPage(
            sessions=sessions,
            next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
        )


def _through(through_seq: int | None) -> int:
    return MAX_SEQ if through_seq is None else through_seq


def _full(limit: int, count: int, adding: int, kept: int = 0) -> SessionFullError:
    return SessionFullError(limit=limit, count=count, adding=adding, kept=kept)


# Last, so either module may be imported first: the store's helpers are only used
# when a write runs.
from . import sqlite as _sqlite  # noqa: E402
