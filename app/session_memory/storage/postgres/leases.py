"""PostgreSQL's run leases: each operation one call of its function (migrations 12, 13).

The functions take the session's lease lock exclusive, so an acquisition, renewal or
release waits for the writes under way to the session (which take it shared), and
replicas never hold two leases of one session at once. Times are the database's
clock, the one every replica shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ..errors import LeaseLostError, SessionLeasedError
from ..leases import LEASE_KEEP_SECONDS, Lease
from .driver import Connection, Record

__all__ = ["PostgresLeases", "sweep_batch"]

T = TypeVar("T")


class Runner(Protocol):
    """How the store runs work on a pooled connection (its errors mapped)."""

    def __call__(self, work: Callable[[Connection], Awaitable[T]], /) -> Awaitable[T]: ...


def _lost(token: int) -> LeaseLostError:
    return LeaseLostError(f"run lease {token} is not the session's lease")


class PostgresLeases:
    """``RunLeases`` on the store's pool."""

    def __init__(self, run: Runner) -> None:
        self._run = run

    async def _row(self, sql: str, *args: object) -> Record:
        async def work(conn: Connection) -> Record | None:
            row: Record | None = await conn.fetchrow(sql, *args)
            return row

        row = await self._run(work)
        assert row is not None
        return row

    async def acquire(
        self,
        tenant: str,
        session_id: str,
        *,
        ttl: float,
        refuse_unleased: bool,
        key: str | None = None,
    ) -> Lease:
        row = await self._row(
            "SELECT * FROM session_memory_lease_acquire($1, $2, $3, $4, $5)",
            tenant,
            session_id,
            ttl,
            refuse_unleased,
            key,
        )
        if row["r_status"] == "leased":
            raise SessionLeasedError(retry_after=row["r_wait"])
        return Lease(row["r_token"], row["r_expires"], row["r_ttl"], row["r_refuse"])

    async def renew(
        self, tenant: str, session_id: str, token: int, *, ttl: float | None = None
    ) -> Lease:
        row = await self._row(
            "SELECT * FROM session_memory_lease_renew($1, $2, $3, $4)",
            tenant,
            session_id,
            token,
            ttl,
        )
        if row["r_status"] != "ok":
            raise _lost(token)
        return Lease(token, row["r_expires"], row["r_ttl"], row["r_refuse"])

    async def release(self, tenant: str, session_id: str, token: int) -> None:
        row = await self._row(
            "SELECT session_memory_lease_release($1, $2, $3) AS r_status",
            tenant,
            session_id,
            token,
        )
        if row["r_status"] != "ok":
            raise _lost(token)

    async def current(self, tenant: str, session_id: str) -> Lease | None:
        async def work(conn: Connection) -> Record | None:
            row: Record | None = await conn.fetchrow(
                "SELECT token, extract(epoch FROM expires_at)::float8, ttl_seconds, "
                "refuse_unleased FROM session_leases WHERE tenant = $1 AND session_id = $2 "
                "AND expires_at > clock_timestamp()",
                tenant,
                session_id,
            )
            return row

        row = await self._run(work)
        return None if row is None else Lease(*row)


async def sweep_batch(conn: Connection, rows: int) -> int:
    """Delete up to ``rows`` lease rows ended more than ``LEASE_KEEP_SECONDS`` ago."""
    deleted = await conn.fetchval(
        """
        WITH gone AS (
            DELETE FROM session_leases WHERE (tenant, session_id) IN (
                SELECT tenant, session_id FROM session_leases
                WHERE expires_at < now() - make_interval(secs => $2) LIMIT $1
                FOR UPDATE SKIP LOCKED)
            RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        rows,
        LEASE_KEEP_SECONDS,
    )
    return int(deleted)
