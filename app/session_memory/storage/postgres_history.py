"""PostgreSQL's half of ``HistoryStore``: replace, fork, metadata and filtered listing.

A mixin of ``PostgresStore``. Each write locks the session row first, in its own
statement, so the statements after it see every write committed while it waited
(the rule ``postgres.py`` states for pop). Unlike append, pop and clear, these are
not one function call each but one transaction of several statements; they reuse
the write functions' helpers (``postgres_functions``: the idempotency lock, replay
and record, the expiry purge) so they follow the same rules: revisions per session
(``base.revision_at``), a new session above its tenant's floor and within
``max_sessions_per_tenant``, idempotency records belonging to their session.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .base import (
    MAX_SEQ,
    AppendResult,
    Idempotency,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    SessionFullError,
    SessionInfo,
    SessionPage,
    TooManySessionsError,
    check_revision,
    decode_append,
    encode_append,
    parse_session_cursor,
    session_cursor,
)
from .history import (
    MetadataTooLargeError,
    SessionExistsError,
    SessionMissingError,
    labels_of,
    merge_patch,
    seq_page,
)

if TYPE_CHECKING:
    from .postgres import Connection

__all__ = ["HISTORY_MIGRATION", "PostgresHistory", "store_labels"]

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
_FIRST_REVISION = (
    f"greatest({_NOW_US}, coalesce((SELECT revision FROM revision_floors "
    "WHERE tenant = $1), 0) + 1)"
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


class PostgresHistory:
    """Replace, fork, metadata: see ``HistoryStore`` for the contract."""

    if TYPE_CHECKING:
        _default_ttl: float
        _max_sessions: int
        _sweep_batch_rows: int

        async def _run(self, work: Callable[[Connection], Awaitable[T]]) -> T: ...

    async def _write(
        self,
        tenant: str,
        session_id: str,
        idempotency: Idempotency | None,
        work: Callable[[Connection], Awaitable[T]],
        encode: Callable[[T], str],
        decode: Callable[[str], T],
    ) -> T:
        """``work`` in one transaction, made idempotent as the write functions make
        theirs: the key's lock and replay first, the record (belonging to
        ``session_id``) after; a raised refusal rolls everything back."""

        async def run(conn: Connection) -> T:
            async with conn.transaction():
                if idempotency is not None:
                    row = await conn.fetchrow(
                        "SELECT * FROM session_memory_replay($1, $2, $3)",
                        tenant,
                        idempotency.key,
                        idempotency.fingerprint,
                    )
                    assert row is not None
                    if row["r_status"] == "inflight":
                        raise IdempotencyInFlightError(
                            f"request {idempotency.key!r} is still running"
                        )
                    if row["r_status"] == "mismatch":
                        raise IdempotencyMismatchError(
                            f"idempotency key {idempotency.key!r} was used for a different request"
                        )
                    if row["r_status"] == "replay":
                        return decode(row["r_result"])
                outcome = await work(conn)
                if idempotency is not None:
                    await conn.execute(
                        "SELECT session_memory_record($1, $2, $3, $4, $5, $6, false)",
                        tenant,
                        idempotency.key,
                        idempotency.fingerprint,
                        encode(outcome),
                        idempotency.ttl,
                        session_id,
                    )
                return outcome

        return await self._run(run)

    async def _purge(self, conn: Connection, tenant: str, session_id: str) -> None:
        """Delete the session if it has expired (as every write does), so it starts afresh."""
        await conn.execute(
            "SELECT session_memory_purge($1, $2, $3)", tenant, session_id, self._sweep_batch_rows
        )

    async def _check_room(self, conn: Connection, tenant: str) -> None:
        """Raise ``TooManySessionsError`` if the tenant cannot start another session."""
        if not self._max_sessions:
            return
        # The lock the append function takes: new sessions of a tenant queue here.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", tenant)
        held = await conn.fetchval(
            "SELECT count(*) FROM sessions WHERE tenant = $1 "
            "AND (expires_at IS NULL OR expires_at > now())",
            tenant,
        )
        if held >= self._max_sessions:
            raise TooManySessionsError(limit=self._max_sessions)

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

        async def work(conn: Connection) -> AppendResult:
            await self._purge(conn, tenant, session_id)
            row = await conn.fetchrow(
                "SELECT id, item_count, last_seq, revision, kept_items FROM sessions "
                "WHERE tenant = $1 AND session_id = $2 FOR UPDATE",
                tenant,
                session_id,
            )
            check_revision(expected_revision, row["revision"] if row else 0)
            if row is None:
                if count == 0:
                    return AppendResult(count=0, first_seq=None, last_seq=None, revision=0)
                await self._check_room(conn, tenant)
                # Another writer may create it meanwhile: the upsert then waits for
                # it, locks its row and answers with what it committed.
                row = await conn.fetchrow(
                    f"""
                    INSERT INTO sessions (tenant, session_id, created_at, updated_at,
                                          item_count, last_seq, revision)
                    VALUES ($1, $2, now(), now(), 0, 0, {_FIRST_REVISION})
                    ON CONFLICT (tenant, session_id) DO UPDATE SET updated_at = now()
                    RETURNING id, item_count, last_seq, revision, kept_items,
                              (xmax = 0) AS created
                    """,
                    tenant,
                    session_id,
                )
                assert row is not None
                if not row["created"]:
                    check_revision(expected_revision, row["revision"])
            rowid, held, last_seq = row["id"], row["item_count"], row["last_seq"]
            status = await conn.execute(
                "DELETE FROM items WHERE session = $1 AND seq >= $2", rowid, from_seq or 0
            )
            kept = held - int(status.split()[-1])
            # A pop's idempotency record keeps its item: it counts, as for append.
            records = row["kept_items"]
            if max_items is not None and kept + records + count > max_items:
                raise SessionFullError(
                    limit=max_items, count=kept + records, adding=count, kept=records
                )
            await conn.execute(
                """
                INSERT INTO items (session, seq, body)
                SELECT $1, $2 + ordinality, body
                FROM unnest($3::text[]) WITH ORDINALITY AS batch(body, ordinality)
                """,
                rowid,
                last_seq,
                list(items),
            )
            revision = await conn.fetchval(
                f"""
                UPDATE sessions SET item_count = $2, last_seq = $3, updated_at = clock_timestamp(),
                    revision = {_NEXT_REVISION}, {_renew(4, 5)}
                WHERE id = $1 RETURNING revision
                """,
                rowid,
                kept + count,
                last_seq + count,
                ttl,
                self._default_ttl,
            )
            return AppendResult(
                count=count,
                first_seq=last_seq + 1 if count else None,
                last_seq=last_seq + count if count else None,
                revision=revision,
            )

        return await self._write(
            tenant, session_id, idempotency, work, encode_append, decode_append
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
        through = MAX_SEQ if through_seq is None else through_seq

        async def work(conn: Connection) -> AppendResult:
            await self._purge(conn, tenant, target_id)
            # FOR SHARE: writes to the source wait until the copy has committed.
            source = await conn.fetchrow(
                "SELECT id, revision, ttl_seconds, metadata FROM sessions "
                "WHERE tenant = $1 AND session_id = $2 "
                "AND (expires_at IS NULL OR expires_at > now()) FOR SHARE",
                tenant,
                session_id,
            )
            if source is None:
                raise SessionMissingError(f"no session {session_id!r}")
            check_revision(expected_revision, source["revision"])
            await self._check_room(conn, tenant)
            rowid = await conn.fetchval(
                f"""
                INSERT INTO sessions (tenant, session_id, created_at, updated_at, item_count,
                                      last_seq, revision, ttl_seconds, expires_at, metadata)
                VALUES ($1, $2, now(), now(), 0, 0, {_FIRST_REVISION}, $3::float8,
                        CASE WHEN coalesce($3::float8, $4::float8) > 0
                             THEN now() + make_interval(secs => coalesce($3::float8, $4::float8))
                        END, $5)
                ON CONFLICT (tenant, session_id) DO NOTHING
                RETURNING id
                """,
                tenant,
                target_id,
                source["ttl_seconds"],
                self._default_ttl,
                source["metadata"],
            )
            if rowid is None:
                raise SessionExistsError(f"session {target_id!r} already exists")
            # One statement, so the copy never leaves the database.
            status = await conn.execute(
                "INSERT INTO items (session, seq, body) "
                "SELECT $1, row_number() OVER (ORDER BY seq), body FROM items "
                "WHERE session = $2 AND seq <= $3",
                rowid,
                source["id"],
                through,
            )
            count = int(status.split()[-1])
            await conn.execute(
                "INSERT INTO session_labels SELECT tenant, key, value, $1 FROM session_labels "
                "WHERE session = $2",
                rowid,
                source["id"],
            )
            revision = await conn.fetchval(
                "UPDATE sessions SET item_count = $2, last_seq = $2 "
                "WHERE id = $1 RETURNING revision",
                rowid,
                count,
            )
            return AppendResult(
                count=count,
                first_seq=1 if count else None,
                last_seq=count or None,
                revision=revision,
            )

        # The record belongs to the session the fork made: clearing it forgets the key.
        return await self._write(tenant, target_id, idempotency, work, encode_append, decode_append)

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

        return await self._write(tenant, session_id, None, work, _never, _never)

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


def _never(value: Any) -> Any:
    raise AssertionError("not recorded: this write takes no idempotency key")
