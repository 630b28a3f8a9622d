"""PostgreSQL's half of ``HistoryStore``: replace, fork, metadata and filtered listing.

A mixin of ``PostgresStore``. Replace and fork are one call each of a PL/pgSQL
function (``postgres_history_functions``) built on the write functions' helpers,
so they follow the same rules as append: revisions per session
(``base.revision_at``), a new session above its tenant's floor and within
``max_sessions_per_tenant``, idempotency records belonging to their session. A
metadata PATCH (no Idempotency-Key) is one transaction that locks the session row
first, in its own statement, so the statements after it see every write committed
while it waited.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    MetadataTooLargeError,
    PreconditionFailedError,
    SessionExistsError,
    SessionFullError,
    SessionMissingError,
    TooManySessionsError,
    check_revision,
)
from .metadata import labels_of, merge_patch
from .paging import parse_session_cursor, seq_page, session_cursor
from .records import MAX_SEQ, AppendResult, Idempotency, SessionInfo, SessionPage, decode_append

if TYPE_CHECKING:
    from .postgres import Connection

__all__ = ["HISTORY_MIGRATION", "PostgresHistory", "refused", "store_labels"]

T = TypeVar("T")

# Metadata as text on the session (returned as stored); its top-level scalars copied
# into session_labels, keyed by what a filter names so a filter reads only matching
# entries. ON DELETE CASCADE: labels go with their session, whoever deletes it.
# The trigger tells followers on every replica (LISTEN session_memory) that a
# session changed; NOTIFY is sent on commit, so a rolled-back write says nothing.
# NOTIFY serialises commits, so only followed sessions (session_followers, kept by
# each process's listener) are notified; other writes pay one index probe.
# The channel is the database's: the payload names the schema, for deployments
# that share a database.
HISTORY_MIGRATION = """
ALTER TABLE sessions ADD COLUMN metadata TEXT;
CREATE TABLE session_labels (
    tenant  TEXT   NOT NULL,
    key     TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    session BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant, key, value, session)
);
CREATE INDEX session_labels_by_session ON session_labels (session);
CREATE UNLOGGED TABLE session_followers (
    tenant      TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    backend_pid INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id, backend_pid)
);
CREATE FUNCTION session_memory_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    s sessions;
BEGIN
    IF TG_OP = 'DELETE' THEN
        s := OLD;
    ELSE
        s := NEW;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM session_followers f
                   WHERE f.tenant = s.tenant AND f.session_id = s.session_id) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        s := OLD;
        kind := 'clear';
    ELSE
        s := NEW;
        IF TG_OP = 'INSERT' THEN
            kind := 'append';
        ELSIF NEW.last_seq > OLD.last_seq
              AND NEW.item_count - OLD.item_count = NEW.last_seq - OLD.last_seq THEN
            kind := 'append';
        ELSIF NEW.last_seq = OLD.last_seq AND NEW.item_count < OLD.item_count THEN
            kind := 'pop';
        ELSIF NEW.last_seq <> OLD.last_seq OR NEW.item_count <> OLD.item_count THEN
            kind := 'replace';
        ELSE
            RETURN NULL;
        END IF;
    END IF;
    PERFORM pg_notify('session_memory', json_build_array(
        kind, TG_TABLE_SCHEMA, s.tenant, s.session_id,
        CASE WHEN TG_OP = 'DELETE' THEN 0 ELSE s.revision END, s.last_seq)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_notify AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION session_memory_notify();
"""

_COLUMNS = (
    "session_id, item_count, extract(epoch FROM created_at)::float8, "
    "extract(epoch FROM updated_at)::float8, revision, extract(epoch FROM expires_at)::float8, "
    "metadata"
)
_RENEW = (
    "ttl_seconds = coalesce($T::float8, ttl_seconds), expires_at = CASE "
    "WHEN coalesce($T::float8, ttl_seconds, $D::float8) > 0 THEN clock_timestamp() "
    "+ make_interval(secs => coalesce($T::float8, ttl_seconds, $D::float8)) END"
)


def _renew(ttl: int, default: int) -> str:
    return _RENEW.replace("$T", f"${ttl}").replace("$D", f"${default}")


# A session's revisions (``base.revision_at``), as the write functions compute them.
_NOW_US = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
_NEXT_REVISION = f"greatest(revision + 1, {_NOW_US})"


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


class PostgresHistory:
    """Replace, fork, metadata: see ``HistoryStore`` for the contract."""

    if TYPE_CHECKING:
        _default_ttl: float
        _max_sessions: int
        _sweep_batch_rows: int

        async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T: ...

    def _written(
        self, row: Any, key: Idempotency, count: int, max_items: int | None
    ) -> AppendResult:
        """Where an append or a replace landed, from its write function's row (or why not)."""
        row = refused(row, key)
        if row["r_status"] == "replay":
            return decode_append(row["r_replay"])
        if row["r_status"] == "full":
            assert max_items is not None
            held, kept = row["r_held"], row["r_kept"]
            raise SessionFullError(limit=max_items, count=held + kept, adding=count, kept=kept)
        if row["r_status"] == "sessions":
            raise TooManySessionsError(limit=self._max_sessions)
        return AppendResult(
            count=count,
            first_seq=row["r_first"],
            last_seq=row["r_last"],
            revision=row["r_revision"],
        )

    async def _purge(self, conn: Connection, tenant: str, session_id: str) -> None:
        """Delete the session if it has expired (as every write does), so it starts afresh."""
        await conn.execute(
            "SELECT session_memory_purge($1, $2, $3)", tenant, session_id, self._sweep_batch_rows
        )

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
        key = idempotency or _NO_KEY

        async def work(conn: Connection) -> Any:
            return await conn.fetchrow(
                "SELECT * FROM session_memory_replace("
                "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                tenant,
                session_id,
                list(items),
                from_seq,
                max_items,
                self._max_sessions,
                None if idempotency is None else key.key,
                key.fingerprint,
                key.ttl,
                expected_revision,
                ttl,
                self._default_ttl,
                self._sweep_batch_rows,
            )

        return self._written(await self._run(work), key, count, max_items)

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
        key = idempotency or _NO_KEY

        async def work(conn: Connection) -> Any:
            return await conn.fetchrow(
                "SELECT * FROM session_memory_fork($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                tenant,
                session_id,
                target_id,
                MAX_SEQ if through_seq is None else through_seq,
                self._max_sessions,
                None if idempotency is None else key.key,
                key.fingerprint,
                key.ttl,
                expected_revision,
                self._default_ttl,
                self._sweep_batch_rows,
            )

        row = refused(await self._run(work), key)
        status = row["r_status"]
        if status == "replay":
            return decode_append(row["r_replay"])
        if status == "missing":
            raise SessionMissingError(f"no session {session_id!r}")
        if status == "exists":
            raise SessionExistsError(f"session {target_id!r} already exists")
        if status == "sessions":
            raise TooManySessionsError(limit=self._max_sessions)
        copied = row["r_count"]
        return AppendResult(
            count=copied,
            first_seq=1 if copied else None,
            last_seq=copied or None,
            revision=row["r_revision"],
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
        async def work(conn: Connection) -> SessionInfo:
            await self._purge(conn, tenant, session_id)
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
            info = await conn.fetchrow(
                f"""
                UPDATE sessions SET metadata = $2, updated_at = clock_timestamp(),
                    revision = {_NEXT_REVISION}, {_renew(3, 4)}
                WHERE id = $1 RETURNING {_COLUMNS}
                """,
                row["id"],
                stored,
                None,
                self._default_ttl,
            )
            assert info is not None
            await store_labels(conn, tenant, row["id"], stored)
            return SessionInfo(*info)

        async def transaction(conn: Connection) -> SessionInfo:
            async with conn.transaction():
                return await work(conn)

        return await self._run(transaction)

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> tuple[list[tuple[int, str]], bool]:
        async def work(conn: Connection) -> list[tuple[int, str]]:
            # Cut in SQL by octet_length, as the store's reads are: rows past the
            # bound (but the one that tells there is more) are never sent.
            rows = await conn.fetch(
                "SELECT seq, body FROM (SELECT i.seq, i.body, row_number() OVER w AS n, "
                "coalesce(sum(octet_length(i.body)) OVER w, 0) - octet_length(i.body) AS before "
                "FROM sessions s JOIN items i ON i.session = s.id "
                "WHERE s.tenant = $1 AND s.session_id = $2 AND i.seq > $3 "
                "AND (s.expires_at IS NULL OR s.expires_at > now()) "
                "WINDOW w AS (ORDER BY i.seq ROWS UNBOUNDED PRECEDING) ORDER BY i.seq LIMIT $4"
                ") page WHERE $5::bigint IS NULL OR before <= $5 OR n <= 2 ORDER BY seq",
                tenant,
                session_id,
                after,
                limit + 1,
                max_bytes,
            )
            return [(row[0], row[1]) for row in rows]

        return seq_page(await self._run(work), limit, max_bytes)

    async def last_seq(self, tenant: str, session_id: str) -> int:
        async def work(conn: Connection) -> int:
            value = await conn.fetchval(
                "SELECT last_seq FROM sessions WHERE tenant = $1 AND session_id = $2 "
                "AND (expires_at IS NULL OR expires_at > now())",
                tenant,
                session_id,
            )
            return int(value or 0)

        return await self._run(work)

    async def find_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> SessionPage:
        params: list[Any] = [tenant]
        where = ["s.tenant = $1", "(s.expires_at IS NULL OR s.expires_at > now())"]
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
        sql = (
            f"SELECT {_COLUMNS} FROM sessions s WHERE {' AND '.join(where)} "
            f"ORDER BY s.revision DESC, s.session_id DESC LIMIT ${len(params)}"
        )

        async def work(conn: Connection) -> list[Any]:
            return list(await conn.fetch(sql, *params))

        rows = await self._run(work)
        sessions = [SessionInfo(*row) for row in rows[:limit]]
        last = sessions[-1] if len(rows) > limit else None
        return SessionPage(
            sessions=sessions,
            next_cursor=None if last is None else session_cursor(last.revision, last.session_id),
        )


# What the write functions get for "no Idempotency-Key".
_NO_KEY = Idempotency(key="", fingerprint="", ttl=0)


def refused(row: Any, key: Idempotency) -> Any:
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
    return row
