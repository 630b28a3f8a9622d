"""SQLite's fork, copied in steps so that a big copy never holds the writer for long.

A fork's copy is staged under a session row id reserved in ``fork_copies``: no
session row holds that id until the copy is done, so no read sees the copy. Each
step copies a bounded run of items and is a write of its own, so the writes queued
meanwhile (other sessions', other tenants') run between the steps. The last write
(``finish``) makes the session row: the target appears whole, at once.

The copy is of the source as it was when the fork started (its items up to the seq
it then had, its metadata and time-to-live). Appends land above that seq and change
nothing; a write that deletes items the copy has still to take (a pop, a replace, a
clear, an expiry) marks it disturbed (``writes.disturb``), and the fork starts over
from the source as it then is. A copy left by a process that stopped is retired when
the store opens (``retire_copies``) and its items deleted by the sweep.

Every function of a connection here is a write: ``run`` submits each to the
group-commit writer, in turn.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    ForkTooLargeError,
    SessionExistsError,
    SessionMissingError,
    StoreError,
    check_revision,
)
from ..records import MAX_SEQ, AppendResult, Idempotency, decode_append, encode_append
from .schema import NEW_SESSION_ID
from .writer import Write
from .writes import (
    Policy,
    check_room,
    new_session,
    purge_expired,
    record,
    replayed,
    session_row,
    store_labels,
)

__all__ = [
    "FORK_TRIES",
    "Disturbed",
    "Plan",
    "abandon",
    "finish",
    "retire_copies",
    "run",
    "start",
    "step",
]

# Times a fork whose source kept changing under its copy starts over in steps; the
# last try copies in one write, which nothing can disturb.
FORK_TRIES = 3


class Disturbed(StoreError):
    """The source lost items the copy had still to take, or the copy was retired:
    the fork starts over. Never leaves the store."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A fork whose copy is under way: what ``step`` and ``finish`` need."""

    id: int  # the row id the copy is staged under, and the new session's
    tenant: str
    target_id: str
    source: int  # the source's row id
    through: int  # the source's last seq to copy
    ttl: float | None  # the source's own time-to-live, when the fork started
    metadata: str | None  # and its metadata


def start(
    conn: sqlite3.Connection,
    policy: Policy,
    tenant: str,
    session_id: str,
    target_id: str,
    *,
    through_seq: int | None,
    expected_revision: int | None,
    idempotency: Idempotency | None,
    whole: bool = False,
) -> AppendResult | Plan:
    """Check the fork may be made, reserve its id and copy the first step.

    Returns the fork's result when that step copied everything (the session is made
    in this same write) or a replay of a keyed retry; else the ``Plan`` to go on with.
    ``whole``: copy everything now, in this one write.
    """
    now = policy.clock()
    if idempotency is not None:
        found = replayed(conn, tenant, idempotency, now)
        if found is not None:
            return decode_append(found)
    purge_expired(conn, policy, tenant, session_id, now)
    purge_expired(conn, policy, tenant, target_id, now)
    columns = "id, revision, ttl_seconds, metadata, last_seq, item_count"
    source = session_row(conn, tenant, session_id, columns)
    if source is None:
        raise SessionMissingError(f"no session {session_id!r}")
    rowid, revision, ttl, metadata, last_seq, held = source
    check_revision(expected_revision, revision)
    if session_row(conn, tenant, target_id, "1") is not None:
        raise SessionExistsError(f"session {target_id!r} already exists")
    check_room(conn, policy, tenant, now)
    through = min(MAX_SEQ if through_seq is None else through_seq, last_seq)
    count = held
    if through < last_seq:
        (count,) = conn.execute(
            "SELECT count(*) FROM items WHERE session = ? AND seq <= ?", (rowid, through)
        ).fetchone()
    if policy.fork.items and count > policy.fork.items:
        raise ForkTooLargeError(what="items", limit=policy.fork.items, size=count)
    (staged,) = conn.execute(
        f"INSERT INTO fork_copies (id, source, through) VALUES ({NEW_SESSION_ID}, ?, ?) "
        "RETURNING id",
        (rowid, through),
    ).fetchone()
    plan = Plan(staged, tenant, target_id, rowid, through, ttl, metadata)
    if step(conn, policy, plan, whole=whole):
        return finish(conn, policy, plan, idempotency)
    return plan


def step(conn: sqlite3.Connection, policy: Policy, plan: Plan, *, whole: bool = False) -> bool:
    """Copy the next run of items (``whole``: all that are left); True once all are.

    A run holds at most ``fork_step_items`` items and stops before the item that
    would take it past ``fork_step_bytes`` (its first item goes whatever its size).
    Raises ``ForkTooLargeError`` once the copy passes the bytes a fork may copy.
    """
    row = conn.execute(
        "SELECT copied, items, bytes, disturbed FROM fork_copies WHERE id = ?", (plan.id,)
    ).fetchone()
    if row is None or row[3]:
        raise Disturbed("the fork's source changed under it")
    copied, items, size = row[:3]
    wanted = -1 if whole else policy.fork_step_items + 1  # one more: are there others?
    sizes = conn.execute(
        "SELECT seq, length(CAST(body AS BLOB)) FROM items "
        "WHERE session = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (plan.source, copied, plan.through, wanted),
    ).fetchall()
    cut, taken, added = copied, 0, 0
    for seq, length in sizes:
        if (
            not whole
            and taken
            and (taken == policy.fork_step_items or added + length > policy.fork_step_bytes)
        ):
            break
        cut, taken, added = seq, taken + 1, added + length
    limit = policy.fork.bytes
    if limit and size + added > limit:
        raise ForkTooLargeError(what="bytes", limit=limit, size=size + added)
    conn.execute(
        "INSERT INTO items (session, seq, body) "
        "SELECT ?, ? + row_number() OVER (ORDER BY seq), body FROM items "
        "WHERE session = ? AND seq > ? AND seq <= ? ORDER BY seq",
        (plan.id, items, plan.source, copied, cut),
    )
    done = taken == len(sizes)
    conn.execute(
        "UPDATE fork_copies SET copied = ?, items = ?, bytes = ? WHERE id = ?",
        (plan.through if done else cut, items + taken, size + added, plan.id),
    )
    return done


def finish(
    conn: sqlite3.Connection, policy: Policy, plan: Plan, idempotency: Idempotency | None
) -> AppendResult:
    """Make the session over the finished copy (the fork's one visible change) and
    keep the result under the fork's key."""
    now = policy.clock()
    row = conn.execute(
        "DELETE FROM fork_copies WHERE id = ? RETURNING items, disturbed", (plan.id,)
    ).fetchone()
    if row is None or row[1]:
        raise Disturbed("the fork's copy was retired")
    count = row[0]
    # Checked again: the target or the tenant's last place may have been taken since.
    purge_expired(conn, policy, plan.tenant, plan.target_id, now)
    if session_row(conn, plan.tenant, plan.target_id, "1") is not None:
        raise SessionExistsError(f"session {plan.target_id!r} already exists")
    rowid, revision = new_session(
        conn,
        policy,
        plan.tenant,
        plan.target_id,
        now,
        count=count,
        ttl=plan.ttl,
        metadata=plan.metadata,
        rowid=plan.id,
    )
    store_labels(conn, plan.tenant, rowid, plan.metadata)
    result = AppendResult(
        count=count, first_seq=1 if count else None, last_seq=count or None, revision=revision
    )
    if idempotency is not None:
        record(conn, plan.tenant, plan.target_id, idempotency, encode_append(result), now)
    return result


def abandon(conn: sqlite3.Connection, policy: Policy, staged: int) -> None:
    """Drop a copy that will not become a session: its items now, or by the sweep."""
    row = conn.execute("DELETE FROM fork_copies WHERE id = ? RETURNING items", (staged,)).fetchone()
    if row is None:
        return  # retired already
    if row[0] <= policy.batch_rows:
        conn.execute("DELETE FROM items WHERE session = ?", (staged,))
    else:
        conn.execute("INSERT INTO retired_sessions (id) VALUES (?)", (staged,))


def retire_copies(conn: sqlite3.Connection) -> int:
    """Retire every copy under way (at open: left by a process that stopped); the sweep
    deletes their items. A fork still running elsewhere finds its copy gone and starts
    over."""
    staged = conn.execute("DELETE FROM fork_copies RETURNING id").fetchall()
    conn.executemany("INSERT INTO retired_sessions (id) VALUES (?)", staged)
    return len(staged)


async def run(
    submit: Callable[[Write], Awaitable[Any]],
    policy: Policy,
    begin: Callable[..., AppendResult | Plan],
    idempotency: Idempotency | None,
    fence: Callable[[Write], Write],
) -> AppendResult:
    """A fork, from the event loop: ``begin`` (a ``start``), the steps, each a write of
    its own, then the finish; started over when disturbed. ``fence`` wraps the writes
    the source's lease must admit (the start and the finish; the steps only read it)."""
    for attempt in range(1, FORK_TRIES + 1):
        begun = await submit(fence(functools.partial(begin, whole=attempt == FORK_TRIES)))
        if isinstance(begun, AppendResult):
            return begun
        try:
            while not await submit(functools.partial(step, policy=policy, plan=begun)):
                pass
            done: AppendResult = await submit(
                fence(functools.partial(finish, policy=policy, plan=begun, idempotency=idempotency))
            )
            return done
        except BaseException as exc:
            # If the store cannot take this write, the next open retires the copy.
            with contextlib.suppress(StoreError):
                await submit(functools.partial(abandon, policy=policy, staged=begun.id))
            if not isinstance(exc, Disturbed):
                raise
    raise AssertionError("the last try copies in one write")  # pragma: no cover
