"""Run leases in the client: ``RemoteSession.run_lease``, a session held by one run.

``async with session.run_lease(ttl=30, wait=10) as lease:`` acquires the session's
run lease (waiting up to ``wait`` seconds for a run that holds it to end; retried as
a write is, with one Idempotency-Key, so a lost answer costs no TTL), renews it
in the background every ``ttl / 3`` seconds, sends its token (``Run-Lease``) with
every write made through that ``RemoteSession`` inside the block, and releases it at
the end, also when the block raises or is cancelled.

"Inside the block" is the block's context: a ``contextvars`` variable holds the
token, so the tasks the block starts (as a Runner may) send it too, and two tasks
sharing one ``RemoteSession``, each in a block of its own, each send their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._exceptions import ProblemError, SessionMemoryError
from ._transport import Reply, Target, Transport
from ._writes import _encode, _settle
from .protocol import ProblemType

__all__ = ["LeaseBlock", "RunLease", "lease_token"]

logger = logging.getLogger("session_memory_client")

# (session, token) of every run lease held in this context; a tuple, so a block's own
# entry is undone by resetting the variable, whatever blocks nested in it did.
_HELD: ContextVar[tuple[tuple[object, int], ...]] = ContextVar(
    "session_memory_run_leases", default=()
)
# Each acquisition request waits on the server at most this share of the client's
# timeout; a longer wait is several requests, at least this far apart (seconds), in
# case the server waits less than asked (its max_lease_wait_seconds).
_WAIT_SHARE = 0.5
_LEAST_PAUSE = 0.1
UNLEASED_WRITES = ("refuse", "allow")


def lease_token(session: object) -> int | None:
    """The token of the run lease ``session`` holds in this context (None: none)."""
    for held, token in _HELD.get():
        if held is session:
            return token
    return None


@dataclass
class RunLease:
    """A run lease a block holds: its token, its expiry as the service last gave it
    (ISO 8601), its TTL, and whether a renewal found it lost (it expired, or the
    service gave the session to another run): the block's writes are then refused."""

    session_id: str
    token: int
    expires_at: str
    ttl: float
    lost: bool = False

    def _update(self, reply: Reply) -> None:
        body = reply.json()
        self.token, self.expires_at, self.ttl = body["token"], body["expires_at"], body["ttl"]


class LeaseBlock:
    """What ``RemoteSession.run_lease`` returns: ``async with`` it to hold the lease."""

    def __init__(
        self,
        session: Any,
        transport: Transport,
        target: Target,
        *,
        ttl: float,
        wait: float,
        unleased_writes: str,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be above 0 seconds, not {ttl!r}")
        if not wait >= 0:
            raise ValueError(f"wait must be 0 seconds or more, not {wait!r}")
        if unleased_writes not in UNLEASED_WRITES:
            raise ValueError(
                f"unleased_writes must be 'refuse' or 'allow', not {unleased_writes!r}"
            )
        self._session = session
        self._transport = transport
        self._target = target
        self._ttl, self._wait, self._unleased = ttl, wait, unleased_writes
        self._lease: RunLease | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._reset: Token[tuple[tuple[object, int], ...]] | None = None

    async def __aenter__(self) -> RunLease:
        if self._lease is not None:
            raise RuntimeError("this run_lease block is in use already")
        if lease_token(self._session) is not None:
            raise RuntimeError(
                f"this block already holds the run lease of session {self._session.session_id!r}"
            )
        lease = self._lease = await self._acquire()
        self._reset = _HELD.set((*_HELD.get(), (self._session, lease.token)))
        self._renewer = asyncio.ensure_future(self._renew(lease))
        return lease

    async def _acquire(self) -> RunLease:
        """The lease; ``ProblemError`` (409 session-leased) when another run still holds
        it after ``wait`` seconds.

        One Idempotency-Key for the whole acquisition, on every request of it (the
        transport's retries, and each request of a long wait): when an answer granting
        the lease is lost, the next request gets that lease back instead of finding it
        held by nobody the client knows of, for its whole TTL."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + self._wait
        while True:
            wait = max(0.0, min(deadline - time.monotonic(), _WAIT_SHARE * self._transport.timeout))
            body = {"ttl": self._ttl, "wait": wait, "unleased_writes": self._unleased}
            try:
                reply = await self._transport.request(
                    "POST", self._target, content=_encode(body), idempotency_key=key
                )
            except ProblemError as exc:
                left = deadline - time.monotonic()
                if exc.type != ProblemType.SESSION_LEASED or left <= 0:
                    raise
                await asyncio.sleep(min(_LEAST_PAUSE, left))
                continue
            except asyncio.CancelledError:
                # The request may have been granted before it was cut short (the
                # service stops a wait whose caller left, not a grant made already).
                await _settle(self._give_back(key))
                raise
            answer = reply.json()
            return RunLease(
                self._session.session_id, answer["token"], answer["expires_at"], answer["ttl"]
            )

    async def _give_back(self, key: str) -> None:
        """Ask once more under the acquisition's key, with no wait, and release what
        that gives (the lease granted to the cut-short request, or a new one), so a
        cancelled acquisition leaves nothing held."""
        body = {"ttl": self._ttl, "wait": 0, "unleased_writes": self._unleased}
        try:
            reply = await self._transport.request(
                "POST", self._target, content=_encode(body), idempotency_key=key
            )
            await self._release(RunLease(self._session.session_id, reply.json()["token"], "", 0))
        except SessionMemoryError:
            pass  # refused (another run holds it) or unreachable: nothing of ours is held

    async def _renew(self, lease: RunLease) -> None:
        """Every third of the TTL, hold the lease for another TTL, until it is lost."""
        while True:
            await asyncio.sleep(lease.ttl / 3)
            try:
                reply = await self._transport.request(
                    "PUT", self._target, content=_encode({"ttl": lease.ttl}), run_lease=lease.token
                )
            except ProblemError as exc:
                if exc.type == ProblemType.LEASE_LOST:
                    lease.lost = True
                    logger.warning(
                        "the run lease of session %r was lost (it expired before it was "
                        "renewed); the run's writes are refused from now on",
                        lease.session_id,
                    )
                    return
                logger.warning("could not renew the run lease of %r: %s", lease.session_id, exc)
            except SessionMemoryError as exc:
                logger.warning("could not renew the run lease of %r: %s", lease.session_id, exc)
            else:
                lease._update(reply)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        if self._reset is not None:
            _HELD.reset(self._reset)
            self._reset = None
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if lease is None or lease.lost:
            return
        # Waited for even when cancelled: a lease left held blocks the session for its TTL.
        try:
            await _settle(self._release(lease))
        except SessionMemoryError as exc:
            logger.warning("could not release the run lease of %r: %s", lease.session_id, exc)

    async def _release(self, lease: RunLease) -> None:
        try:
            await self._transport.request("DELETE", self._target, run_lease=lease.token)
        except ProblemError as exc:
            if exc.type != ProblemType.LEASE_LOST:
                raise
            # Gone already (it expired): nothing to release.
