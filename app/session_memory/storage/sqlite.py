"""SQLite store: the embedded default.

One writer connection owns every write (``sqlite_writer.GroupCommitWriter``): writes
queue up and the writer runs all that are waiting in one transaction (group commit),
so concurrent requests share one fsync while each batch stays atomic and contiguous.
Reads go to read-only connections, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiosqlite

from ..config import Settings
from .errors import (
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    SessionFullError,
    StoreUnavailableError,
    TooManySessionsError,
    check_revision,
)
from .paging import item_bytes, page_from_rows, parse_session_cursor, read_shape, session_cursor
from .records import (
    EMPTY_PAGE,
    SWEEP_BATCH_ROWS,
    AppendResult,
    Idempotency,
    ItemPage,
    SessionInfo,
    SessionPage,
    Swept,
    decode_append,
    decode_pop,
    encode_append,
    encode_pop,
    revision_at,
)
from .sqlite_history import HISTORY_MIGRATION, SQLiteHistory, store_labels
from .sqlite_writer import GroupCommitWriter, connect, translate

__all__ = ["MIGRATIONS", "SQLiteStore", "split_script", "sqlite_path_from_url"]

T = TypeVar("T")

# Ordered, append-only: a released migration is never edited, a new one is added.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sessions (
            id          INTEGER PRIMARY KEY,
            tenant      TEXT    NOT NULL,
            session_id  TEXT    NOT NULL,
            created_at  REAL    NOT NULL,
            updated_at  REAL    NOT NULL,
            item_count  INTEGER NOT NULL,
            last_seq    INTEGER NOT NULL,
            revision    INTEGER NOT NULL,
            UNIQUE (tenant, session_id)
        );
        CREATE INDEX sessions_by_revision ON sessions (revision);
        CREATE INDEX sessions_by_tenant_revision ON sessions (tenant, revision);
        CREATE TABLE items (
            session INTEGER NOT NULL,
            seq     INTEGER NOT NULL,
            body    TEXT    NOT NULL,
            PRIMARY KEY (session, seq)
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE idempotency_keys (
            tenant      TEXT NOT NULL,
            key         TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            result      TEXT NOT NULL,
            expires_at  REAL NOT NULL,
            PRIMARY KEY (tenant, key)
        );
        CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);
        """,
    ),
    (
        3,
        """
        ALTER TABLE sessions ADD COLUMN ttl_seconds REAL;
        ALTER TABLE sessions ADD COLUMN expires_at REAL;
        CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;
        """,
    ),
    (
        4,
        # Revisions per session (see ``base.revision_at``): no more max(revision) + 1
        # over all sessions, and listings walk (revision, session id).
        """
        CREATE TABLE revision_floors (
            tenant   TEXT    PRIMARY KEY,
            revision INTEGER NOT NULL
        );
        DROP INDEX sessions_by_revision;
        DROP INDEX sessions_by_tenant_revision;
        CREATE INDEX sessions_by_tenant_recency ON sessions (tenant, revision, session_id);
        """,
    ),
    (
        5,
        # Idempotency records belong to their session: a clear deletes them, and a
        # pop's record, which keeps the popped item, counts as one of its items.
        """
        ALTER TABLE idempotency_keys ADD COLUMN session_id TEXT;
        ALTER TABLE idempotency_keys ADD COLUMN kept INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX idempotency_keys_by_session ON idempotency_keys (tenant, session_id);
        ALTER TABLE sessions ADD COLUMN kept_items INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        6,
        # Sessions deleted whose items the sweep still has to delete, a batch at a
        # time. Their ids must not come back (``_NEW_SESSION_ID``): the items would
        # reappear in a new session.
        """
        CREATE TABLE retired_sessions (id INTEGER PRIMARY KEY);
        """,
    ),
    # Session metadata and its labels (the history operations).
    (7, HISTORY_MIGRATION),
]

# A session's revisions (``base.revision_at``): a new session's first, and the next one.
_FIRST_REVISION = (
    "max(:now_us, coalesce((SELECT revision FROM revision_floors WHERE tenant = :tenant), 0) + 1)"
)
_NEXT_REVISION = "max(revision + 1, :now_us)"
_SESSION_ROWID = "(SELECT id FROM sessions WHERE tenant = ? AND session_id = ?)"
_SESSION_COLUMNS = "session_id, item_count, created_at, updated_at, revision, expires_at, metadata"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
# The expiry a write gives a session: now + its own TTL, else the default; none if 0.
_EXPIRY = (
    "CASE WHEN coalesce(ttl_seconds, :default) > 0 THEN :now + coalesce(ttl_seconds, :default) END"
)


@functools.cache
def _read_sql(after: bool, before: bool, forward: bool, limited: bool) -> str:
    # One statement, so the revision and the items come from one snapshot.
    return (
        "SELECT s.revision, i.seq, i.body FROM sessions s LEFT JOIN items i ON i.session = s.id"
        + (" AND i.seq > ?" if after else "")
        + (" AND i.seq < ?" if before else "")
        + " WHERE s.tenant = ? AND s.session_id = ?"
        + " AND (s.expires_at IS NULL OR s.expires_at > ?)"
        + f" ORDER BY i.seq {'ASC' if forward else 'DESC'}"
        + (" LIMIT ?" if limited else "")
    )


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` to a path."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or parts.query or not parts.path[1:]:
        raise ValueError(
            f"not a SQLite URL: {url!r}; expected sqlite:///relative.db or sqlite:////abs.db"
        )
    path = unquote(parts.path[1:])
    if path == ":memory:":
        raise ValueError("in-memory SQLite is not supported: each connection would see its own")
    return Path(path)


def _bounded_rows(
    cursor: sqlite3.Cursor, max_bytes: int | None, *, give_up: int | None = None
) -> list[Any] | None:
    """Fetch (revision, seq, body) rows until their bodies pass ``max_bytes``.

    The row that passes it is kept (``page_from_rows`` cuts before it and says
    there is more; when the first row alone passes it, the second is kept), so at
    most ``max_bytes`` (or the first item) plus one item is held. Past
    ``give_up`` bytes (before the page is full) it stops and returns None.
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
    return rows


# Deleting sessions: RETURNING this, for ``_deleted``.
_GONE = "RETURNING id, tenant, revision, session_id, item_count"

# A new session's id: above every live and retired one (SQLite would otherwise reuse
# the highest id once its row is gone). Every INSERT INTO sessions must give it.
_NEW_SESSION_ID = (
    "(SELECT max(coalesce((SELECT max(id) FROM sessions), 0), "
    "coalesce((SELECT max(id) FROM retired_sessions), 0)) + 1)"
)


def _deleted(
    conn: sqlite3.Connection, rows: Sequence[tuple[int, str, int, str, int]], inline: int
) -> None:
    """Sessions (``_GONE``) were deleted: delete their items and idempotency records,
    and raise the revision floors.

    Items of a session holding up to ``inline`` go now; a bigger session is retired
    and the sweep deletes its items a batch at a time, so no single write holds the
    writer for long. The floor keeps a recreated session from ever repeating a
    revision (an ETag).
    """
    if not rows:  # the common case: every write purges an expired session, if any
        return
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


def _purge_expired(
    conn: sqlite3.Connection, tenant: str, session_id: str, now: float, inline: int
) -> None:
    """Delete the session if it has expired, so a write starts it afresh."""
    _deleted(
        conn,
        conn.execute(
            f"DELETE FROM sessions WHERE tenant = ? AND session_id = ? AND expires_at <= ? {_GONE}",
            (tenant, session_id, now),
        ).fetchall(),
        inline,
    )


def _recorded(
    run: Callable[[sqlite3.Connection], T],
    tenant: str,
    session_id: str,
    idempotency: Idempotency,
    codec: tuple[Callable[[T], str], Callable[[str], T]],
    clock: Callable[[], float],
) -> Callable[[sqlite3.Connection], T]:
    """``run``, made idempotent: replay a recorded outcome, or run and record it.

    A record that keeps an item (a pop's) counts in its session's ``kept_items``.
    """
    encode, decode = codec

    def recorded(conn: sqlite3.Connection) -> T:
        now = clock()
        row = conn.execute(
            "SELECT fingerprint, result FROM idempotency_keys "
            "WHERE tenant = ? AND key = ? AND expires_at > ?",
            (tenant, idempotency.key, now),
        ).fetchone()
        if row is not None:
            if row[0] != idempotency.fingerprint:
                raise IdempotencyMismatchError(
                    f"idempotency key {idempotency.key!r} was used for a different request"
                )
            return decode(row[1])
        result = run(conn)
        kept = isinstance(result, str)  # only a pop's outcome is an item
        _forget(conn, [(tenant, idempotency.key)])  # an expired record of this key
        conn.execute(
            "INSERT INTO idempotency_keys (tenant, key, fingerprint, result, expires_at, "
            "session_id, kept) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                tenant,
                idempotency.key,
                idempotency.fingerprint,
                encode(result),
                now + idempotency.ttl,
                session_id,
                kept,
            ),
        )
        if kept:
            conn.execute(
                "UPDATE sessions SET kept_items = kept_items + 1 "
                "WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            )
        return result

    return recorded


def _forget(conn: sqlite3.Connection, keys: Sequence[tuple[str, str]]) -> int:
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


class SQLiteStore(SQLiteHistory):
    """A ``SessionStore`` on one SQLite file in WAL mode with ``synchronous=FULL``.

    Which connection does what (one rule each):

    - every write: the ``GroupCommitWriter``'s connection, on its own thread;
    - small reads (``limit`` up to ``inline_read_limit`` and items up to
      ``inline_read_bytes``): the event loop's own read-only connection (a WAL read
      of a few rows takes tens of microseconds, less than the hop to a thread; it
      never waits: when busy, or once the rows pass the byte bound, the pool below
      answers; so the loop reads at most that bound plus one item);
    - every other read: a pool of read-only aiosqlite connections, each on its thread;
    - at open only: one aiosqlite connection sets WAL mode and migrates.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        readers: int = 2,
        max_group_ops: int = 512,
        busy_timeout_ms: int = 5000,
        inline_read_limit: int = 100,
        inline_read_bytes: int = 256 * 1024,
        session_ttl: float = 0,
        max_sessions_per_tenant: int = 0,
        sweep_batch_rows: int = SWEEP_BATCH_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._sweep_batch_rows = sweep_batch_rows
        self._max_sessions = max_sessions_per_tenant
        # What expiry is measured by: wall-clock seconds; tests pass one they move.
        self._clock = clock
        self._readers_wanted = readers
        self._busy_timeout_ms = busy_timeout_ms
        self._inline_read_limit = inline_read_limit
        self._inline_read_bytes = inline_read_bytes
        self._default_ttl = session_ttl
        self._writer = GroupCommitWriter(
            self.path, busy_timeout_ms=busy_timeout_ms, max_group_ops=max_group_ops
        )
        self._inline: sqlite3.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._in_flight: set[tuple[str, str]] = set()

    @classmethod
    def from_url(cls, url: str, settings: Settings) -> SQLiteStore:
        return cls(
            sqlite_path_from_url(url),
            readers=settings.sqlite_readers,
            session_ttl=settings.session_ttl_seconds,
            max_sessions_per_tenant=settings.max_sessions_per_tenant,
            sweep_batch_rows=settings.sweep_batch_rows,
        )

    def change_feed(self, sink: Any) -> None:
        return None

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(self.path, isolation_level=None) as conn:
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await migrate(conn)
        await self._writer.open()
        # busy_timeout 0: an inline read must never wait; if busy, it takes the threaded path.
        self._inline = connect(self.path, 0)
        self._inline.execute("PRAGMA query_only = ON")
        for _ in range(self._readers_wanted):
            reader = await aiosqlite.connect(self.path, isolation_level=None)
            await reader.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await reader.execute("PRAGMA query_only = ON")
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)

    async def close(self) -> None:
        await self._writer.close()
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        if self._inline is not None:
            self._inline.close()
            self._inline = None

    async def ping(self) -> None:
        await self._fetchall("SELECT 1 FROM sessions LIMIT 1", ())

    @property
    def group_commits(self) -> int:
        """Transactions the writer has committed (one fsync each), for tests and metrics."""
        return self._writer.commits

    # -- writes: group commit --------------------------------------------------------

    async def _submit(
        self,
        run: Callable[[sqlite3.Connection], T],
        *,
        tenant: str = "",
        session_id: str = "",
        idempotency: Idempotency | None = None,
        codec: tuple[Callable[[T], str], Callable[[str], T]] | None = None,
    ) -> T:
        if idempotency is None:
            future = self._writer.submit(run)
        else:
            # One process owns the file, so this set sees every request in flight.
            flight = (tenant, idempotency.key)
            if flight in self._in_flight:
                raise IdempotencyInFlightError(f"request {idempotency.key!r} is still running")
            assert codec is not None
            future = self._writer.submit(
                _recorded(run, tenant, session_id, idempotency, codec, self._clock)
            )
            self._in_flight.add(flight)
            future.add_done_callback(lambda _: self._in_flight.discard(flight))
        # Shielded: a client that goes away does not cancel a write already queued.
        return await asyncio.shield(future)

    def _check_room(self, conn: sqlite3.Connection, tenant: str, now: float) -> None:
        """Raise ``TooManySessionsError`` if the tenant cannot start another session."""
        (held,) = conn.execute(
            f"SELECT count(*) FROM sessions WHERE tenant = ? AND {_LIVE}", (tenant, now)
        ).fetchone()
        if held >= self._max_sessions:
            raise TooManySessionsError(limit=self._max_sessions)

    @staticmethod
    def _revision(conn: sqlite3.Connection, tenant: str, session_id: str) -> int:
        row = conn.execute(
            "SELECT revision FROM sessions WHERE tenant = ? AND session_id = ?",
            (tenant, session_id),
        ).fetchone()
        return int(row[0]) if row else 0

    async def sweep(self) -> Swept:
        # One write per batch: writes queued meanwhile run between the batches.
        swept = Swept()
        while True:
            batch = await self._submit(self._sweep_batch)
            swept += batch
            if max(batch.sessions, batch.items, batch.records) < self._sweep_batch_rows:
                return swept

    def _sweep_batch(self, conn: sqlite3.Connection) -> Swept:
        """Up to a batch of expired sessions (retired), items of retired sessions and
        expired idempotency records, in one transaction."""
        now, rows = self._clock(), self._sweep_batch_rows
        gone = conn.execute(
            f"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ? "
            f"LIMIT ?) {_GONE}",
            (now, rows),
        ).fetchall()
        _deleted(conn, gone, 0)
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
        return Swept(len(gone), items, _forget(conn, expired), 1)

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
        count = len(items)
        if count == 0:
            return AppendResult(count=0, first_seq=None, last_seq=None)

        def run(conn: sqlite3.Connection) -> AppendResult:
            now = self._clock()
            _purge_expired(conn, tenant, session_id, now, self._sweep_batch_rows)
            if max_items is not None or expected_revision is not None or self._max_sessions:
                row = conn.execute(
                    "SELECT item_count, kept_items, revision FROM sessions "
                    "WHERE tenant = ? AND session_id = ?",
                    (tenant, session_id),
                ).fetchone()
                held, kept, revision = row if row else (0, 0, 0)
                check_revision(expected_revision, revision)
                if max_items is not None and held + kept + count > max_items:
                    raise SessionFullError(
                        limit=max_items, count=held + kept, adding=count, kept=kept
                    )
                if row is None and self._max_sessions:
                    self._check_room(conn, tenant, now)
            rowid, last_seq, revision = conn.execute(
                f"""
                INSERT INTO sessions (id, tenant, session_id, created_at, updated_at,
                                      item_count, last_seq, revision, ttl_seconds, expires_at)
                VALUES ({_NEW_SESSION_ID}, :tenant, :session_id, :now, :now, :count, :count,
                        {_FIRST_REVISION},
                        :ttl, CASE WHEN coalesce(:ttl, :default) > 0
                                   THEN :now + coalesce(:ttl, :default) END)
                ON CONFLICT (tenant, session_id) DO UPDATE SET
                    item_count = item_count + excluded.item_count,
                    last_seq = last_seq + excluded.item_count,
                    updated_at = excluded.updated_at,
                    revision = {_NEXT_REVISION},
                    ttl_seconds = coalesce(excluded.ttl_seconds, ttl_seconds),
                    expires_at = CASE
                        WHEN coalesce(excluded.ttl_seconds, ttl_seconds, :default) > 0
                        THEN :now + coalesce(excluded.ttl_seconds, ttl_seconds, :default) END
                RETURNING id, last_seq, revision
                """,
                {
                    "tenant": tenant,
                    "session_id": session_id,
                    "now": now,
                    "now_us": revision_at(now),
                    "count": count,
                    "ttl": ttl,
                    "default": self._default_ttl,
                },
            ).fetchone()
            first_seq = last_seq - count + 1
            if metadata is not None and first_seq == 1:
                # The append made the session: it starts with this metadata.
                conn.execute("UPDATE sessions SET metadata = ? WHERE id = ?", (metadata, rowid))
                store_labels(conn, tenant, rowid, metadata)
            conn.executemany(
                "INSERT INTO items (session, seq, body) VALUES (?, ?, ?)",
                [(rowid, first_seq + i, body) for i, body in enumerate(items)],
            )
            return AppendResult(
                count=count, first_seq=first_seq, last_seq=last_seq, revision=revision
            )

        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=(encode_append, decode_append),
        )

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
    ) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            now = self._clock()
            _purge_expired(conn, tenant, session_id, now, self._sweep_batch_rows)
            if expected_revision is not None:
                check_revision(expected_revision, self._revision(conn, tenant, session_id))
            row = conn.execute(
                f"""
                DELETE FROM items WHERE rowid = (
                    SELECT rowid FROM items WHERE session = {_SESSION_ROWID}
                    ORDER BY seq DESC LIMIT 1
                )
                RETURNING session, body
                """,
                (tenant, session_id),
            ).fetchone()
            if row is None:
                return None
            rowid, body = row
            conn.execute(
                f"""
                UPDATE sessions SET item_count = item_count - 1, updated_at = :now,
                    revision = {_NEXT_REVISION}, expires_at = {_EXPIRY}
                WHERE id = :id
                """,
                {"now": now, "now_us": revision_at(now), "id": rowid, "default": self._default_ttl},
            )
            return str(body)

        return await self._submit(
            run,
            tenant=tenant,
            session_id=session_id,
            idempotency=idempotency,
            codec=(encode_pop, decode_pop),
        )

    async def clear(
        self, tenant: str, session_id: str, *, expected_revision: int | None = None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            _purge_expired(conn, tenant, session_id, self._clock(), self._sweep_batch_rows)
            if expected_revision is not None:
                check_revision(expected_revision, self._revision(conn, tenant, session_id))
            gone = conn.execute(
                f"DELETE FROM sessions WHERE tenant = ? AND session_id = ? {_GONE}",
                (tenant, session_id),
            ).fetchall()
            _deleted(conn, gone, self._sweep_batch_rows)

        await self._submit(run)

    # -- reads -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        if not self._all_readers:
            raise StoreUnavailableError("the store is not open")
        conn = await self._readers.get()
        try:
            yield conn
        finally:
            self._readers.put_nowait(conn)

    async def _fetchall(self, sql: str, params: Sequence[Any]) -> list[Any]:
        try:
            async with self._reader() as conn:
                # One hop to the connection's thread, not one per cursor call.
                return list(await conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise translate(exc) from exc

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
        if limit == 0:
            return EMPTY_PAGE
        forward, fetch = read_shape(limit, after)
        params: list[Any] = [value for value in (after, before) if value is not None]
        params += [tenant, session_id, self._clock()]
        if fetch is not None:
            params.append(fetch)
        sql = _read_sql(after is not None, before is not None, forward, fetch is not None)
        rows = None
        if limit is not None and limit <= self._inline_read_limit:
            rows = self._fetch_inline(sql, params, max_bytes)
        if rows is None:
            rows = await self._fetch_bounded(sql, params, max_bytes)
        return page_from_rows(rows, limit, forward, max_bytes)

    def _fetch_inline(self, sql: str, params: Sequence[Any], max_bytes: int | None) -> Any:
        """A small read's rows, on the event loop; None when it is busy or not small.

        A read is small by its size, not only its count: past ``inline_read_bytes``
        it is given up here (having read at most that plus one item) and goes to a
        threaded reader.
        """
        if self._inline is None:
            return None
        try:
            cursor = self._inline.execute(sql, params)
            try:
                return _bounded_rows(cursor, max_bytes, give_up=self._inline_read_bytes)
            finally:
                cursor.close()
        except sqlite3.OperationalError:
            return None  # busy (a checkpoint or recovery): the threaded path waits

    async def _fetch_bounded(
        self, sql: str, params: Sequence[Any], max_bytes: int | None
    ) -> list[Any]:
        """A read's rows on a threaded reader, fetched until the page is full."""

        def run(conn: sqlite3.Connection) -> list[Any]:
            cursor = conn.execute(sql, params)
            try:
                rows = _bounded_rows(cursor, max_bytes)
            finally:
                cursor.close()
            assert rows is not None  # nothing to give up without a budget
            return rows

        try:
            async with self._reader() as reader:
                # The whole read is one call on the connection's thread (aiosqlite's
                # own way of running work there), so it can stop fetching rows once
                # the page is full instead of holding every row a LIMIT allows.
                rows: list[Any] = await reader._execute(run, reader._conn)  # type: ignore[no-untyped-call]
                return rows
        except sqlite3.Error as exc:
            raise translate(exc) from exc

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        rows = await self._fetchall(
            f"SELECT {_SESSION_COLUMNS} FROM sessions "
            f"WHERE tenant = ? AND session_id = ? AND {_LIVE}",
            (tenant, session_id, self._clock()),
        )
        return SessionInfo(*rows[0]) if rows else None

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        tenant, session_id = after or ("", None)
        rows = await self._fetchall(
            f"SELECT tenant, session_id FROM sessions WHERE {_LIVE} AND "
            "(tenant > ? OR (tenant = ? AND (? IS NULL OR session_id > ?))) "
            "ORDER BY tenant, session_id LIMIT ?",
            (self._clock(), tenant, tenant, session_id, session_id, limit),
        )
        return [(row[0], row[1]) for row in rows]

    async def count_sessions(self) -> int:
        rows = await self._fetchall(
            f"SELECT count(*) FROM sessions WHERE {_LIVE}", (self._clock(),)
        )
        return int(rows[0][0])

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE tenant = ? AND {_LIVE}"
        params: list[Any] = [tenant, self._clock()]
        if cursor is not None:
            sql += " AND (revision, session_id) < (?, ?)"
            params += parse_session_cursor(cursor)
        sql += " ORDER BY revision DESC, session_id DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._fetchall(sql, params)
        sessions = [SessionInfo(*row) for row in rows[:limit]]
        last = sessions[-1] if len(rows) > limit else None
        return SessionPage(
            sessions=sessions,
            next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
        )


def split_script(sql: str) -> list[str]:
    """A script's statements; a trigger's body keeps its inner semicolons."""
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                statements.append(pending)
            pending = ""
    return statements


async def migrate(conn: aiosqlite.Connection, *, target: int | None = None) -> list[int]:
    """Apply pending migrations up to ``target`` (all by default); return the versions applied."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    async with conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    applied: list[int] = []
    for version, sql in MIGRATIONS:
        if version <= current or (target is not None and version > target):
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in split_script(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied
