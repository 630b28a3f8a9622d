"""The follow hub: one per process, it fans a session's changes out to its streams.

On SQLite the services publish each committed write to it (one process owns the
file); on PostgreSQL the backend's change feed (``storage.postgres.listen``) hears
every replica's commits and delivers them here, so a write through any replica
reaches every follower. A change only wakes a stream: the stream reads the items
from the store itself (``services.events``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..problems import TooManyStreams
from ..storage.contract import ChangeFeed

__all__ = ["QUEUE_SIZE", "Change", "Hub"]

# Changes a slow stream may have queued; past it, later wake-ups are dropped (the
# stream re-reads the store anyway, so only pop/replace/clear notices can be lost).
QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Change:
    """Something happened to a session: ``append``, ``pop``, ``replace`` or ``clear``."""

    kind: str
    revision: int


class Hub:
    """This process's follow streams, by session; ``publish`` wakes a session's streams."""

    def __init__(self, *, max_streams: int, local: bool) -> None:
        # local: the services' publish calls deliver (SQLite). Otherwise the
        # database's notifications do, and publishing here would double them.
        self.local = local
        self.max_streams = max_streams
        self._streams: dict[tuple[str, str], set[asyncio.Queue[Change | None]]] = {}
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
        for queue in self._streams.get((tenant, session_id), ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    def wake_all(self) -> None:
        """Make every stream re-read the store (after notifications may have been lost)."""
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(Change("wake", 0))

    def check_capacity(self) -> None:
        """Refuse (503) a new stream when the process serves as many as it may."""
        if self.stopping or self._count >= self.max_streams:
            raise TooManyStreams(
                f"this server follows {self._count} sessions, as many as it may "
                "(max_follow_streams); retry shortly or through another replica",
                headers={"Retry-After": "5"},
            )

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant: str, session_id: str
    ) -> AsyncIterator[asyncio.Queue[Change | None]]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        key = (tenant, session_id)
        first = key not in self._streams
        self._streams.setdefault(key, set()).add(queue)
        self._count += 1
        try:
            if first and self.feed is not None:
                await self.feed.add(tenant, session_id)
            yield queue
        finally:
            self._count -= 1
            queues = self._streams.get(key)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._streams[key]
                    if self.feed is not None:
                        self.feed.remove_soon(tenant, session_id)

    def followed(self) -> list[tuple[str, str]]:
        """The sessions this process's streams follow."""
        return list(self._streams)

    def stop(self) -> None:
        """End every stream now (the server is shutting down) and refuse new ones."""
        self.stopping = True
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
                if queue.full():
                    # Make room: the end matters more than the changes before it.
                    queue.get_nowait()
                    queue.put_nowait(None)
