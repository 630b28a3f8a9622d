"""The run lease service: acquire a session's lease (waiting, if asked, for the one
held to end), show, renew and release it, and tell the session's followers.

The store decides (``storage.contract.RunLeases``); this service bounds what a
request may ask (``max_lease_ttl_seconds``, ``max_lease_wait_seconds``) and waits. A
waiting acquisition tries again as the lease held expires, every little while (a
release through another replica is seen so), and at once when a release goes
through this process. Waiters are not queued in order: whichever tries first
after the lease ends gets it.
"""

from __future__ import annotations

import asyncio

from ..config import Settings
from ..problems import LeaseNotHeld
from ..replies import Reply
from ..storage import Lease, SessionLeasedError
from ..storage.contract import HistoryStore
from ..wire.leases import AcquireTerms, lease_body, parse_acquire, parse_renew
from .hub import Hub
from .requests import AcquireLease, GetLease, ReleaseLease, RenewLease

__all__ = ["CallerGone", "LeaseService"]

# A waiting acquisition's pauses between tries (seconds): the first, doubling up to the
# last, and never past the expiry of the lease held.
_FIRST_PAUSE = 0.02
_LONGEST_PAUSE = 0.25

_Key = tuple[str, str]


class CallerGone(Exception):
    """The caller of a waiting acquisition closed its connection: nothing was granted."""


class _Releases:
    """Wakes this process's waiting acquisitions of a session when it releases its lease."""

    def __init__(self) -> None:
        self._events: dict[_Key, tuple[asyncio.Event, int]] = {}

    async def wait(self, key: _Key, seconds: float, gone: asyncio.Future[None] | None) -> None:
        """Until the session's lease is released here, ``seconds`` pass, or ``gone`` is done."""
        event, waiting = self._events.get(key, (asyncio.Event(), 0))
        self._events[key] = (event, waiting + 1)
        released = asyncio.ensure_future(event.wait())
        try:
            waits = (released, gone) if gone is not None else (released,)
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
            current = self._events.get(key)
            if current is not None and current[0] is event:
                if current[1] <= 1:
                    del self._events[key]
                else:
                    self._events[key] = (event, current[1] - 1)

    def released(self, key: _Key) -> None:
        entry = self._events.pop(key, None)
        if entry is not None:
            entry[0].set()


class LeaseService:
    """A session's run lease: acquire, show, renew, release; a refusal raises."""

    __slots__ = ("_releases", "hub", "settings", "store")

    def __init__(self, store: HistoryStore, settings: Settings, hub: Hub) -> None:
        self.store = store
        self.settings = settings
        # Told of every lease change, for live follow streams.
        self.hub = hub
        self._releases = _Releases()

    async def acquire(self, request: AcquireLease) -> Reply:
        """A new lease (or, for the Idempotency-Key of the lease held, that lease
        renewed); 409 ``session-leased`` when another's is still held at the end of
        the wait."""
        terms = parse_acquire(
            request.body,
            max_ttl=self.settings.max_lease_ttl_seconds,
            max_wait=self.settings.max_lease_wait_seconds,
        )
        # Watched only while the acquisition waits, never while the store grants it.
        gone = asyncio.ensure_future(request.caller_gone()) if request.caller_gone else None
        try:
            lease = await self._acquire(
                request.tenant, request.session_id, terms, request.idempotency_key, gone
            )
        finally:
            if gone is not None:
                gone.cancel()
        self.hub.publish("lease", request.tenant, request.session_id, lease.token)
        return Reply(200, lease_body(lease))

    async def _acquire(
        self,
        tenant: str,
        session_id: str,
        terms: AcquireTerms,
        key: str | None,
        gone: asyncio.Future[None] | None,
    ) -> Lease:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + terms.wait
        pause = _FIRST_PAUSE
        while True:
            try:
                return await self.store.leases.acquire(
                    tenant,
                    session_id,
                    ttl=terms.ttl,
                    refuse_unleased=terms.refuse_unleased,
                    key=key,
                )
            except SessionLeasedError as exc:
                left = deadline - loop.time()
                if left <= 0:
                    raise
                expires = exc.retry_after if exc.retry_after is not None else pause
                await self._releases.wait((tenant, session_id), min(left, pause, expires), gone)
                if gone is not None and gone.done():
                    raise CallerGone() from None
                pause = min(2 * pause, _LONGEST_PAUSE)

    async def get(self, request: GetLease) -> Reply:
        """The lease held now, as its acquisition answered it; 404 ``lease-not-held``
        when none is (never acquired, released, or expired)."""
        lease = await self.store.leases.current(request.tenant, request.session_id)
        if lease is None:
            raise LeaseNotHeld(
                "no run holds this session's lease (none was acquired, or it was "
                "released or expired); writes without a Run-Lease token go through"
            )
        return Reply(200, lease_body(lease))

    async def renew(self, request: RenewLease) -> Reply:
        """Hold the lease ``run_lease`` longer; 409 ``lease-lost`` when it is not held."""
        ttl = parse_renew(request.body, max_ttl=self.settings.max_lease_ttl_seconds)
        lease = await self.store.leases.renew(
            request.tenant, request.session_id, request.run_lease, ttl=ttl
        )
        self.hub.publish("lease", request.tenant, request.session_id, lease.token)
        return Reply(200, lease_body(lease))

    async def release(self, request: ReleaseLease) -> Reply:
        """End the lease ``run_lease`` now; 409 ``lease-lost`` when it is not held."""
        await self.store.leases.release(request.tenant, request.session_id, request.run_lease)
        self.hub.publish("lease-end", request.tenant, request.session_id, request.run_lease)
        self._releases.released((request.tenant, request.session_id))
        return Reply(204)
