"""A session's changes as server-sent events, resumable by sequence number.

A change only wakes a stream: the items themselves are read from the store after
the stream's cursor, so a resumed stream (``Last-Event-ID`` or ``after``) has no
gap and no duplicate whatever notifications were lost or doubled. Each read also
gives the session's lineage (when it was created), so a session cleared or expired
and created again is announced (``clear``) before its new items, never mixed with
the old cursor. The streams of one session at one cursor share one store read and
one encoding of its events (``SharedReads``): a thousand followers cost one read.

A stream also says when a run holds the session's lease (``lease``: its token and
expiry, when the stream starts and at each acquisition or renewal) and when it
ends (``lease-end``: released, or expired, which the stream notices by itself when
the expiry passes unrenewed), so a follower sees a run in progress.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..storage import Lease
from ..storage.contract import HistoryStore
from ..wire.leases import lease_body, lease_end_body
from .hub import Hub, Subscription

__all__ = ["CATCH_UP_PAGE", "EncodedPage", "SharedReads", "event_stream"]

# Items per store read while catching up.
CATCH_UP_PAGE = 500
_UNKNOWN = object()
# How long a stream waits to look again at a lease whose expiry has passed by this
# server's clock but not (yet) by the database's.
_LEASE_RECHECK = 0.5
_LEASE_KINDS = frozenset({"lease", "lease-end"})


def _event(kind: str, data: str, seq: int | None = None) -> bytes:
    # A multi-line item is sent as several data lines; the client joins them with
    # LF, which gives the item back (a JSON text has line breaks only as whitespace).
    lines = "".join(f"data: {line}\n" for line in data.replace("\r\n", "\n").split("\n"))
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\n{lines}\n".encode()


def _revision_event(kind: str, revision: int) -> bytes:
    return _event(kind, json.dumps({"revision": revision}))


@dataclass(frozen=True, slots=True)
class EncodedPage:
    """The append events above a cursor, encoded once, and what the read saw."""

    events: bytes
    last_seq: int | None
    has_more: bool
    lineage: float | None


class _LeaseWatch:
    """The lease a stream last announced, to tell when it changes or ends."""

    __slots__ = ("check_at", "session_id", "store", "tenant", "told")

    def __init__(self, store: HistoryStore, tenant: str, session_id: str) -> None:
        self.store, self.tenant, self.session_id = store, tenant, session_id
        self.told: Lease | None = None
        self.check_at = 0.0  # wall-clock seconds: when to look whether it expired

    async def now(self) -> bytes:
        """The events that bring the stream's word on the lease up to date (b"": none)."""
        lease = await self.store.leases.current(self.tenant, self.session_id)
        told, events = self.told, b""
        if told is not None and (lease is None or lease.token != told.token):
            events += _event("lease-end", lease_end_body(told.token).decode())
        if lease is not None and lease != told:
            events += _event("lease", lease_body(lease).decode())
        if lease is not None:
            # Told already and looked at again: if its expiry has passed by this
            # server's clock, it has not by the database's; look again shortly.
            again = time.time() + _LEASE_RECHECK if lease == told else 0.0
            self.check_at = max(lease.expires_at, again)
        self.told = lease
        return events

    def timeout(self, heartbeat: float) -> float:
        """How long the stream may wait for a change before it must look."""
        if self.told is None:
            return heartbeat
        return max(0.0, min(heartbeat, self.check_at - time.time()))

    @property
    def due(self) -> bool:
        return self.told is not None and time.time() >= self.check_at


class SharedReads:
    """Catch-up reads of one session from one cursor, shared by every stream asking
    for it meanwhile (they wake together on a write): one store read, one encoding."""

    def __init__(self, store: HistoryStore, max_bytes: int | None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._pending: dict[tuple[str, str, int], asyncio.Future[EncodedPage]] = {}

    async def page(self, tenant: str, session_id: str, after: int) -> EncodedPage:
        key = (tenant, session_id, after)
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(self._read(tenant, session_id, after))
            self._pending[key] = future
            future.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: one stream going away does not cancel the others' read.
        return await asyncio.shield(future)

    async def _read(self, tenant: str, session_id: str, after: int) -> EncodedPage:
        page = await self.store.read_seqs(
            tenant, session_id, after=after, limit=CATCH_UP_PAGE, max_bytes=self.max_bytes
        )
        events = b"".join(_event("append", body, seq) for seq, body in page.rows)
        last_seq = page.rows[-1][0] if page.rows else None
        return EncodedPage(events, last_seq, page.has_more, page.lineage)


async def event_stream(
    reads: SharedReads,
    hub: Hub,
    tenant: str,
    session_id: str,
    *,
    after: int | None,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """The events of one session after ``after`` (None: from now on), until stopped.

    Subscribes before the first read, so a write between the two is not missed.
    """
    store = reads.store
    async with hub.subscribe(tenant, session_id) as subscription:
        cursor = after if after is not None else await store.last_seq(tenant, session_id)
        lineage: object = _UNKNOWN
        yield b": following\n\n"
        watch = _LeaseWatch(store, tenant, session_id)
        if leased := await watch.now():
            yield leased
        while True:
            # Catch up from the store: every item above the cursor, in order, once.
            while True:
                page = await reads.page(tenant, session_id, cursor)
                if _lineage_changed(lineage, page.lineage, cursor):
                    # The session followed so far is gone (cleared, expired), and
                    # perhaps begun again: its seqs start over.
                    yield _revision_event("clear", 0)
                    lineage, cursor = page.lineage, 0
                    continue
                lineage = page.lineage
                if page.last_seq is not None:
                    yield page.events
                    cursor = page.last_seq
                if not page.has_more:
                    break
            if not await subscription.wait(watch.timeout(heartbeat)):
                # A lease past its expiry is looked at again; else (or if it is
                # unchanged) a heartbeat.
                yield (await watch.now() if watch.due else b"") or b": heartbeat\n\n"
                continue
            if subscription.ended:
                return
            async for event in _notices(store, subscription, watch):
                yield event


def _lineage_changed(known: object, seen: float | None, cursor: int) -> bool:
    if known is _UNKNOWN:
        # Resumed past items of a session that is gone: it was cleared meanwhile.
        return seen is None and cursor > 0
    return known != seen and (known is not None or cursor > 0)


async def _notices(
    store: HistoryStore, subscription: Subscription, watch: _LeaseWatch
) -> AsyncIterator[bytes]:
    """What the woken stream must tell beyond new items: pops and replaces, or that
    it fell behind and must re-read the session (``resync``); and the lease, if it
    changed."""
    tenant, session_id = watch.tenant, watch.session_id
    notices, behind = subscription.take()
    if behind or any(notice.kind in _LEASE_KINDS for notice in notices):
        if leased := await watch.now():
            yield leased
        notices = [notice for notice in notices if notice.kind not in _LEASE_KINDS]
    if behind:
        info = await store.get_session(tenant, session_id)
        yield _revision_event("resync", info.revision if info is not None else 0)
        return
    for notice in notices:
        revision = notice.revision
        if not revision:
            info = await store.get_session(tenant, session_id)
            revision = info.revision if info is not None else 0
        yield _revision_event(notice.kind, revision)
