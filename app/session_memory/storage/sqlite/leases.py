"""SQLite's run leases: one row per leased session in ``session_leases``.

Every function of a connection here runs on the group-commit writer's thread (the
one that writes the file), so an acquisition and a write to the same session never
overlap: ``fenced`` puts the lease check inside the write's own savepoint, and what
it read still holds when the write commits. ``current`` alone is a read.

A lease's row outlives its end (its token is the floor of the next); the sweep
deletes rows ended more than ``LEASE_KEEP_SECONDS`` ago. The row keeps the
Idempotency-Key of the acquisition that granted the lease (``acquire_key``), so a
retry of that acquisition gets the same lease back while it is held.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import LeaseLostError, SessionLeasedError
from ..leases import LEASE_KEEP_SECONDS, Lease, next_token

__all__ = [
    "Fence",
    "SQLiteLeases",
    "acquire",
    "check",
    "current",
    "fenced",
    "release",
    "renew",
    "sweep_batch",
]

T = TypeVar("T")
Clock = Callable[[], float]

_ROW = (
    "SELECT token, expires_at, ttl, refuse_unleased FROM session_leases "
    "WHERE tenant = ? AND session_id = ?"
)


def _row(conn: sqlite3.Connection, tenant: str, session_id: str) -> Lease | None:
    row = conn.execute(_ROW, (tenant, session_id)).fetchone()
    return None if row is None else Lease(row[0], row[1], row[2], bool(row[3]))


def check(
    conn: sqlite3.Connection, tenant: str, session_id: str, token: int | None, now: float
) -> None:
    """Refuse a write carrying ``token`` (None: none), as ``RunLeases`` says."""
    lease = _row(conn, tenant, session_id)
    held = lease is not None and lease.expires_at > now
    if token is not None:
        if not held or lease is None or lease.token != token:
            raise LeaseLostError(f"run lease {token} is not the session's lease")
    elif held and lease is not None and lease.refuse_unleased:
        raise SessionLeasedError()


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write's lease check needs besides its session: its token (None: none)."""

    token: int | None
    clock: Clock


def fenced(
    run: Callable[[sqlite3.Connection], T], *, fence: Fence | None, tenant: str, session_id: str
) -> Callable[[sqlite3.Connection], T]:
    """``run`` behind the lease check, in the same savepoint: refused, it never runs.
    Without a fence (the store's own writes), ``run`` itself."""
    if fence is None:
        return run

    def write(conn: sqlite3.Connection) -> T:
        check(conn, tenant, session_id, fence.token, fence.clock())
        return run(conn)

    return write


def acquire(
    conn: sqlite3.Connection,
    clock: Clock,
    tenant: str,
    session_id: str,
    *,
    ttl: float,
    refuse_unleased: bool,
    key: str | None = None,
) -> Lease:
    """``RunLeases.acquire``."""
    now = clock()
    row = conn.execute(
        "SELECT token, expires_at, ttl, refuse_unleased, acquire_key FROM session_leases "
        "WHERE tenant = ? AND session_id = ?",
        (tenant, session_id),
    ).fetchone()
    if row is not None and row[1] > now:
        if key is None or row[4] != key:
            raise SessionLeasedError(retry_after=row[1] - now)
        # A retry of the acquisition that got it: the same lease, renewed.
        conn.execute(
            "UPDATE session_leases SET expires_at = ? WHERE tenant = ? AND session_id = ?",
            (now + row[2], tenant, session_id),
        )
        return Lease(row[0], now + row[2], row[2], bool(row[3]))
    token = next_token(None if row is None else row[0], now)
    lease = Lease(token, now + ttl, ttl, refuse_unleased)
    conn.execute(
        "INSERT INTO session_leases (tenant, session_id, token, expires_at, ttl, "
        "refuse_unleased, acquire_key) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (tenant, session_id) DO UPDATE SET token = excluded.token, "
        "expires_at = excluded.expires_at, ttl = excluded.ttl, "
        "refuse_unleased = excluded.refuse_unleased, acquire_key = excluded.acquire_key",
        (tenant, session_id, lease.token, lease.expires_at, ttl, int(refuse_unleased), key),
    )
    return lease


def _held(conn: sqlite3.Connection, tenant: str, session_id: str, token: int, now: float) -> Lease:
    lease = _row(conn, tenant, session_id)
    if lease is None or lease.token != token or lease.expires_at <= now:
        raise LeaseLostError(f"run lease {token} is not the session's lease")
    return lease


def renew(
    conn: sqlite3.Connection,
    clock: Clock,
    tenant: str,
    session_id: str,
    token: int,
    *,
    ttl: float | None,
) -> Lease:
    """``RunLeases.renew``."""
    now = clock()
    lease = _held(conn, tenant, session_id, token, now)
    ttl = lease.ttl if ttl is None else ttl
    conn.execute(
        "UPDATE session_leases SET expires_at = ?, ttl = ? WHERE tenant = ? AND session_id = ?",
        (now + ttl, ttl, tenant, session_id),
    )
    return Lease(token, now + ttl, ttl, lease.refuse_unleased)


def release(
    conn: sqlite3.Connection, clock: Clock, tenant: str, session_id: str, token: int
) -> None:
    """``RunLeases.release``: the lease ends now; its row stays, with its token."""
    now = clock()
    _held(conn, tenant, session_id, token, now)
    conn.execute(
        "UPDATE session_leases SET expires_at = ? WHERE tenant = ? AND session_id = ?",
        (now, tenant, session_id),
    )


def current(conn: sqlite3.Connection, tenant: str, session_id: str, now: float) -> Lease | None:
    """``RunLeases.current`` (a read)."""
    lease = _row(conn, tenant, session_id)
    return lease if lease is not None and lease.expires_at > now else None


def sweep_batch(conn: sqlite3.Connection, now: float, rows: int) -> int:
    """Delete up to ``rows`` lease rows ended more than ``LEASE_KEEP_SECONDS`` ago."""
    return conn.execute(
        "DELETE FROM session_leases WHERE rowid IN (SELECT rowid FROM session_leases "
        "WHERE expires_at < ? LIMIT ?)",
        (now - LEASE_KEEP_SECONDS, rows),
    ).rowcount


class SQLiteLeases:
    """``RunLeases`` over the store's writer (``submit``) and readers (``read``)."""

    def __init__(
        self,
        submit: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]],
        read: Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]],
        clock: Clock,
    ) -> None:
        self._submit = submit
        self._read = read
        self._clock = clock

    async def acquire(
        self,
        tenant: str,
        session_id: str,
        *,
        ttl: float,
        refuse_unleased: bool,
        key: str | None = None,
    ) -> Lease:
        run = functools.partial(
            acquire,
            clock=self._clock,
            tenant=tenant,
            session_id=session_id,
            ttl=ttl,
            refuse_unleased=refuse_unleased,
            key=key,
        )
        lease: Lease = await self._submit(run)
        return lease

    async def renew(
        self, tenant: str, session_id: str, token: int, *, ttl: float | None = None
    ) -> Lease:
        run = functools.partial(
            renew, clock=self._clock, tenant=tenant, session_id=session_id, token=token, ttl=ttl
        )
        lease: Lease = await self._submit(run)
        return lease

    async def release(self, tenant: str, session_id: str, token: int) -> None:
        await self._submit(
            functools.partial(
                release, clock=self._clock, tenant=tenant, session_id=session_id, token=token
            )
        )

    async def current(self, tenant: str, session_id: str) -> Lease | None:
        lease: Lease | None = await self._read(
            functools.partial(current, tenant=tenant, session_id=session_id, now=self._clock())
        )
        return lease
