"""The storage contract every backend implements: ``SessionStore`` for items,
``HistoryStore`` for the history operations (replace, fork, metadata) and
``RunLeases`` for a session's run lease.

Items cross this boundary as JSON text exactly as the client sent it: a backend
stores and returns that text unchanged and never parses it. Metadata crosses it as
the JSON text of an object, already validated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .leases import Lease
from .records import (
    AppendResult,
    Idempotency,
    ItemPage,
    SeqPage,
    SessionBackup,
    SessionInfo,
    SessionPage,
    Swept,
)
from .tails import ReadMark, TailPage

__all__ = ["ChangeFeed", "ChangeSink", "HistoryStore", "RunLeases", "SessionStore"]


@runtime_checkable
class SessionStore(Protocol):
    """Per-tenant, per-session ordered item storage.

    Every method is safe to call concurrently from many tasks (and, for backends
    that allow several server processes, from many processes). A write is
    acknowledged only once its transaction has committed durably.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema. Called once before any other method."""

    async def close(self) -> None:
        """Finish pending writes and release connections. Idempotent."""

    async def ping(self) -> None:
        """Run a trivial query; raise ``StoreUnavailableError`` if the database does not answer."""

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
        run_lease: int | None = None,
    ) -> AppendResult:
        """Append ``items`` (JSON texts) atomically and contiguously.

        Either every item lands, with consecutive sequence numbers and no other
        writer's item between them, or none does. Creates the session on first
        write. An empty sequence is a no-op that returns ``count=0`` and no seqs.
        With ``max_items``, an append that would leave the session holding more
        (popped items kept for replay count) raises ``SessionFullError`` and stores
        nothing. A store made with a session limit per tenant raises
        ``TooManySessionsError`` instead of creating a session past it. With ``idempotency``, see
        ``Idempotency``; a second call with the key while the first still runs
        raises ``IdempotencyInFlightError``. With ``expected_revision`` (0: the
        session must not exist; ``ANY_REVISION``: it must), a session at another
        revision raises ``PreconditionFailedError``. The result carries the new
        revision.

        Every write renews the session's expiry: its own time-to-live if it has one
        (``ttl`` sets it; 0 means never), else the store's default. An expired
        session reads as empty at once, and its next write starts it afresh.

        ``metadata`` (a JSON object's text) becomes the session's metadata when this
        append creates the session; an existing session's metadata is left as it is.

        ``run_lease`` is the run lease token the write carries (None: none); the
        session's lease admits or refuses the write in its own transaction, before
        anything else (see ``RunLeases``). Every write below takes it alike.
        """
        ...

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
        """Read items oldest first.

        - neither cursor: the latest ``limit`` items (all when ``limit`` is None);
        - ``after``: the first ``limit`` items with seq > after;
        - ``before``: the latest ``limit`` items with seq < before.
        ``after`` and ``before`` are not both given. An unknown session reads as empty.

        With ``max_bytes`` the page also stops, in its direction of travel, before
        the item that would take its items past that many bytes of JSON, with
        ``has_more`` true; its first item is returned whatever its size. The read
        holds at most about ``max_bytes`` plus one item in memory.
        """
        ...

    async def pop(
        self,
        tenant: str,
        session_id: str,
        *,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> str | None:
        """Remove and return the newest item atomically, or None when the session is empty.

        With many concurrent callers each item is returned to exactly one of them.
        ``idempotency`` works as for ``append``: a replay returns the same item again
        and removes nothing.
        """
        ...

    async def clear(
        self,
        tenant: str,
        session_id: str,
        *,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> None:
        """Delete the session's items, its record and its idempotency records.

        Clearing an unknown session is a no-op. The session's lease is kept.

        ``expected_revision`` works as for ``append``.
        """

    async def get_session(self, tenant: str, session_id: str) -> SessionInfo | None:
        """Return the session's record, or None when it does not exist."""
        ...

    async def list_sessions(
        self, tenant: str, *, limit: int, cursor: str | None = None
    ) -> SessionPage:
        """List a tenant's sessions, most recently updated first.

        ``cursor`` is a previous page's ``next_cursor``: the walk goes on after it. A
        cursor no listing gave out raises ``InvalidCursorError``.
        """
        ...

    async def all_sessions(
        self, *, after: tuple[str, str] | None = None, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(tenant, session id) of live sessions of every tenant, in that order, for export.

        ``after`` is the last pair of the previous page.
        """
        ...

    async def count_sessions(self) -> int:
        """How many live (unexpired) sessions the store holds, all tenants together."""
        ...

    async def sweep(self) -> Swept:
        """Delete expired sessions (with their items) and idempotency records.

        Works in small transactions (a batch of rows of each kind at a time), so a
        huge session never holds other writers back for long; the items of a cleared
        session too big to delete at once are deleted here as well.
        """
        ...


class RunLeases(Protocol):
    """A store's run leases: at most one per session is held at a time.

    A lease is held from its acquisition until it expires (``ttl`` seconds after
    its acquisition or last renewal) or is released. Its token is above every token
    the session's leases had before. Every write (``run_lease``) is checked against
    it in the write's own transaction, and refused having changed nothing:

    - a token that is not the held lease's (older, unknown, released, expired, or
      given while no lease is held) raises ``LeaseLostError``;
    - no token, while a lease that refuses unleased writes is held, raises
      ``SessionLeasedError``; without a lease, or with one that allows them, it passes.

    An acquisition, renewal or release waits for writes already under way to the
    session, and writes after it see it. Leases are kept apart from the session's
    record: a clear or an expiry of the session leaves its lease as it is.
    """

    async def acquire(
        self,
        tenant: str,
        session_id: str,
        *,
        ttl: float,
        refuse_unleased: bool,
        key: str | None = None,
    ) -> Lease:
        """A new lease, held for ``ttl`` seconds; ``SessionLeasedError`` (with the
        seconds until it expires) while another is held. Never waits.

        ``key`` (an Idempotency-Key; None: none) is kept with the lease it grants. An
        acquisition with the key of the lease held (the same tenant and session) is a
        retry of the one that got it: it gets that lease back, same token, renewed
        for its own TTL from now (as a renewal without a TTL), whatever its ``ttl``
        and ``refuse_unleased`` say. Once that lease ended (released or expired), the
        key is nobody's: an acquisition with it gets a new lease, as one without."""
        ...

    async def renew(
        self, tenant: str, session_id: str, token: int, *, ttl: float | None = None
    ) -> Lease:
        """Hold the lease ``token`` for ``ttl`` seconds from now (None: its own TTL,
        else ``ttl`` becomes its own); ``LeaseLostError`` unless it is the one held."""
        ...

    async def release(self, tenant: str, session_id: str, token: int) -> None:
        """End the lease ``token`` now; ``LeaseLostError`` unless it is the one held."""
        ...

    async def current(self, tenant: str, session_id: str) -> Lease | None:
        """The lease held now, or None."""
        ...


@runtime_checkable
class HistoryStore(SessionStore, Protocol):
    """A ``SessionStore`` that can also replace a history's tail, fork it, and label it,
    and whose sessions can be leased to one run at a time."""

    @property
    def leases(self) -> RunLeases:
        """The store's run leases."""
        ...

    def change_feed(self, sink: ChangeSink) -> ChangeFeed | None:
        """The feed of every process's writes to ``sink`` (not started), or None when
        every write goes through this process (SQLite), whose services then publish
        each write themselves."""
        ...

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
        run_lease: int | None = None,
    ) -> AppendResult:
        """Replace every item with seq >= ``from_seq`` (all when None) by ``items``, atomically.

        Items before ``from_seq`` are untouched. The new items get sequence numbers
        above the highest the session ever gave, so numbers never go backwards or
        repeat. An unknown session is created (an empty ``items`` then does nothing
        and returns revision 0). ``max_items``, ``idempotency``, ``expected_revision``
        and ``ttl`` work as for ``append``. The result carries the new revision.
        """
        ...

    async def fork(
        self,
        tenant: str,
        session_id: str,
        target_id: str,
        *,
        through_seq: int | None = None,
        idempotency: Idempotency | None = None,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> AppendResult:
        """Create ``target_id`` holding a copy of the items up to ``through_seq`` (all when None).

        The copies keep their order and are numbered from 1; the metadata and the
        session's own time-to-live are copied too. Atomic: the target appears whole
        or not at all, holding the source's items as they were at one moment (a copy
        may run in steps that let other writes in; until it is done the target does
        not exist). Raises ``SessionMissingError`` when the source does not exist,
        ``SessionExistsError`` when the target does, ``ForkTooLargeError`` past the
        store's ``ForkLimits``, and ``TooManySessionsError`` past the tenant's
        session limit (a fork makes a session). ``expected_revision`` is the
        source's, and so is the lease ``run_lease`` is checked against. The result
        describes the new session's items and revision.
        """
        ...

    async def patch_metadata(
        self,
        tenant: str,
        session_id: str,
        patch: str,
        *,
        max_bytes: int,
        expected_revision: int | None = None,
        run_lease: int | None = None,
    ) -> SessionInfo:
        """Apply a JSON Merge Patch (``patch``, an object's text) to the session's metadata.

        Raises ``SessionMissingError`` for an unknown session and ``MetadataTooLargeError``
        when the result would pass ``max_bytes`` (nothing changes). A patch is a write:
        the revision moves on. Returns the updated record.
        """
        ...

    async def read_seqs(
        self,
        tenant: str,
        session_id: str,
        *,
        after: int,
        limit: int,
        max_bytes: int | None = None,
    ) -> SeqPage:
        """The first items above ``after``, oldest first, each with its seq, and whether
        more follow: at most ``limit`` of them and, past ``max_bytes`` of bodies, fewer
        (the first comes whatever its size), as ``SessionStore.read`` bounds a page;
        with the session's lineage from the same snapshot."""
        ...

    async def read_since(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None = None,
        known: ReadMark | None = None,
        max_bytes: int | None = None,
    ) -> TailPage:
        """The latest items, as ``read`` with no cursor gives them, or only what changed
        since a reader's last such read (``known``), all from one snapshot.

        The answer (see ``tails``) is unchanged (no items: the session is at the
        mark's revision), appended (the latest ``limit`` of the items above the mark's
        seq, when nothing but appends happened since) or a full page (anything else,
        or no ``known``). ``limit`` None reads every item, still bounded by
        ``max_bytes`` as ``read`` bounds a page. The result carries the mark of this
        read for the next one.
        """
        ...

    async def last_seq(self, tenant: str, session_id: str) -> int:
        """The highest sequence number the live session has given (0: no session)."""
        ...

    async def find_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None = None,
        metadata: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> SessionPage:
        """``list_sessions`` narrowed to sessions whose metadata holds every pair in
        ``metadata`` (see ``labels_of``) and whose id starts with ``prefix``."""
        ...

    async def backup(self, tenant: str, session_id: str) -> SessionBackup | None:
        """What a backup keeps of the live session besides its items (None: no session)."""
        ...

    async def restore(
        self,
        tenant: str,
        session_id: str,
        items: Sequence[tuple[int, str]],
        backup: SessionBackup,
        *,
        honour_lease: bool = True,
    ) -> int:
        """Put a backed-up session back: ``items`` are (seq, JSON text), seqs rising.

        A restore is a write without a run lease token: while a lease that refuses
        those is held, it raises ``SessionLeasedError`` having changed nothing (a run
        is writing the history). ``honour_lease=False`` skips that check (an
        operator's restore while no server runs, past leases left held).

        A missing session is made as ``backup`` describes it: its times, its own
        time-to-live, its expiry and metadata exactly, numbered on from
        ``backup.last_seq``, within the tenant's session limit. The items land with
        their own seqs; those at or below the session's newest item are taken as
        already there and skipped, so restoring the same items again, or resuming,
        adds nothing twice. An existing session keeps its record (its last seq moves
        up to ``backup.last_seq`` if below). Returns how many items were added; a
        restore that adds nothing to an existing session changes nothing.
        """
        ...


class ChangeSink(Protocol):
    """Where a store's change feed hands the changes it hears of (the follow hub)."""

    stopping: bool  # the server is shutting down: no need to unregister anything

    def deliver(self, tenant: str, session_id: str, kind: str, revision: int) -> None:
        """A write committed: ``append``, ``pop``, ``replace`` or ``clear`` at ``revision``;
        or a run lease changed: ``lease`` (acquired or renewed) or ``lease-end``
        (released), ``revision`` being its token."""

    def wake_all(self) -> None:
        """Changes may have been missed (the feed reconnected): every follower re-reads."""

    def followed(self) -> list[tuple[str, str]]:
        """The (tenant, session id) pairs this process follows now."""
        ...


class ChangeFeed(Protocol):
    """A backend's own feed of committed writes from every process (PostgreSQL's LISTEN).

    ``add`` and ``remove_soon`` tell the database which sessions this process follows,
    so only their writes are announced.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def add(self, tenant: str, session_id: str) -> None: ...

    def remove_soon(self, tenant: str, session_id: str) -> None: ...
