"""The follow hub: one per process, it wakes a session's live streams when it changes.

On SQLite the services publish each committed write to it (one process owns the
file); on PostgreSQL the backend's change feed (``storage.postgres.listen``) hears
every replica's commits and delivers them here, so a write through any replica
reaches every follower. A change only wakes a stream: the stream reads the items
from the store itself (``services.events``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..problems import TooManyStreams
from ..storage.contract import ChangeFeed

__all__ = ["MAX_NOTICES", "Change", "Hub", "Subscription"]

# Pop, replace and lease notices a slow stream may have waiting; past it the stream
# is told it fell behind (a ``resync`` event) instead of being sent a partial story.
MAX_NOTICES = 256
# What a stream needs told beyond new items (which it reads from the store anyway):
# pops, replaces, and run leases acquired or renewed (``lease``) and released.
_NOTICES = frozenset({"pop", "replace", "lease", "lease-end"})


@dataclass(frozen=True, slots=True)
class Change:
    """Something happened to a session: ``append``, ``pop``, ``replace`` or ``clear``
    (at ``revision``), or its run lease ``lease`` or ``lease-end`` (its token)."""

    kind: str
    revision: int


class Subscription:
    """One stream's wake-ups: a flag, the notices it must pass on, whether any were
    dropped (``behind``), and whether the server is ending it."""

    __slots__ = ("_wake", "behind", "ended", "notices", "tenant")

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self._wake = asyncio.Event()
        self.notices: list[Change] = []
        self.behind = False
        self.ended = False

    def push(self, change: Change) -> None:
        if change.kind in _NOTICES:
            if len(self.notices) < MAX_NOTICES:
                self.notices.append(change)
            else:
                self.behind = True
        self._wake.set()

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def wait(self, seconds: float) -> bool:
        """Until woken (True) or ``seconds`` pass (False)."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def take(self) -> tuple[list[Change], bool]:
        """The notices and the behind flag since the last take; clears both."""
        self._wake.clear()
        notices, behind = self.notices, self.behind
        self.notices, self.behind = [], False
        return notices, behind


class Hub:
    """This process's follow streams, by session; ``publish`` wakes a session's streams."""

    def __init__(self, *, max_streams: int, max_per_tenant: int, local: bool) -> None:
        # local: the services' publish calls deliver (SQLite). Otherwise the
        # database's notifications do, and publishing here would double them.
        self.local = local
        self.max_streams = max_streams
        self.max_per_tenant = max_per_tenant
        self._streams: dict[tuple[str, str], set[Subscription]] = {}
        self._tenants: Counter[str] = Counter()
        self._count = 0
        self.stopping = False
        # The backend's own feed of writes (PostgreSQL's LISTEN), which must learn
        # which sessions are followed; None on SQLite.
        self.feed: ChangeFeed | None = None

    @property
    def open_streams(self) -> int:
        return self._count

    def publish(self, kind: str, tenant: str, session_id: str, revision: int) -> None:
        """A service committed a write; wake this session's streams (SQLite only)."""
        if self.local:
            self.deliver(tenant, session_id, kind, revision)

    def deliver(self, tenant: str, session_id: str, kind: str, revision: int) -> None:
        """A change reached this process (from a service, or the backend's feed)."""
        change = Change(kind, revision)
        for subscription in self._streams.get((tenant, session_id), ()):
            subscription.push(change)

    def wake_all(self) -> None:
        """Notices may have been lost (the feed reconnected): every stream resyncs."""
        for subscriptions in self._streams.values():
            for subscription in subscriptions:
                subscription.behind = True
                subscription.push(Change("wake", 0))

    def check_capacity(self, tenant: str) -> None:
        """Refuse (503) a new stream past the process's or the tenant's cap."""
        if self.stopping or self._count >= self.max_streams:
            raise TooManyStreams(
                f"this server follows {self._count} sessions, as many as it may "
                "(max_follow_streams); retry shortly or through another replica",
                headers={"Retry-After": "5"},
            )
        if self._tenants[tenant] >= self.max_per_tenant:
            raise TooManyStreams(
                f"you follow {self._tenants[tenant]} sessions on this server, as many as "
                "one tenant may (max_follow_streams_per_tenant); end one first",
                headers={"Retry-After": "5"},
            )

    @contextlib.asynccontextmanager
    async def subscribe(self, tenant: str, session_id: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(tenant)
        key = (tenant, session_id)
        first = key not in self._streams
        self._streams.setdefault(key, set()).add(subscription)
        self._count += 1
        self._tenants[tenant] += 1
        try:
            if first and self.feed is not None:
                await self.feed.add(tenant, session_id)
            yield subscription
        finally:
            self._count -= 1
            self._tenants[tenant] -= 1
            if not self._tenants[tenant]:
                del self._tenants[tenant]
            subscriptions = self._streams.get(key)
            if subscriptions is not None:
                subscriptions.discard(subscription)
                if not subscriptions:
                    del self._streams[key]
                    if self.feed is not None:
                        self.feed.remove_soon(tenant, session_id)

    def followed(self) -> list[tuple[str, str]]:
        """The sessions this process's streams follow."""
        return list(self._streams)

    def stop(self) -> None:
        """End every stream now (the server is shutting down) and refuse new ones."""
        self.stopping = True
        for subscriptions in self._streams.values():
            for subscription in subscriptions:
                subscription.end()
