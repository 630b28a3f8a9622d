"""``SessionMemoryClient``: what spans sessions (listing them, seeing and freeing their
run leases), and sessions sharing its pools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._cache import DEFAULT_CACHE_BYTES, ReadCache
from ._exceptions import ProblemError
from ._lease import RunLease
from ._session import RemoteSession
from ._transport import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_FOR,
    DEFAULT_TIMEOUT,
    Target,
    Transport,
)
from ._types import SessionPage, SessionRecord
from .protocol import API_PREFIX, ProblemType, session_path, validate_session_id

if TYPE_CHECKING:
    import aiohttp
    from agents.memory import SessionSettings

__all__ = ["SessionMemoryClient"]


class SessionMemoryClient:
    """One service and one API key: list its sessions, open ``RemoteSession``s on it.

    Takes the same connection and retry arguments as ``RemoteSession``; the sessions
    it opens share its connection pools, and ``close()`` releases them all. They also
    share one cache of the items they read, bounded by ``cache_bytes`` (0: off).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: aiohttp.ClientSession | None = None,
        retries: int | None = DEFAULT_RETRIES,
        retry_for: float = DEFAULT_RETRY_FOR,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._cache = ReadCache(cache_bytes) if cache_bytes else None
        self._transport = Transport(
            base_url,
            api_key=api_key,
            timeout=timeout,
            http_client=http_client,
            retries=retries,
            retry_for=retry_for,
            backoff=backoff,
            max_backoff=max_backoff,
        )

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def _check_open(self) -> None:
        if self._transport.closed:
            raise RuntimeError("SessionMemoryClient is closed")

    def session(
        self,
        session_id: str,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> RemoteSession:
        """A ``RemoteSession`` on this service, sharing this client's pools."""
        self._check_open()
        return RemoteSession(
            session_id,
            session_settings=session_settings,
            cache_bytes=0,
            _transport=self._transport,
            _cache=self._cache,
        )

    async def list_sessions(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> SessionPage:
        """One page of sessions, most recently updated first; follow ``next_cursor``."""
        self._check_open()
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        target = self._transport.target(API_PREFIX + "/sessions", params)
        body = (await self._transport.request("GET", target)).json()
        return SessionPage(sessions=body["sessions"], next_cursor=body.get("next_cursor"))

    async def iter_sessions(self, *, page_size: int | None = None) -> AsyncIterator[SessionRecord]:
        """Every session this key sees, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_sessions(limit=page_size, cursor=cursor)
            for record in page.sessions:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def get_lease(self, session_id: str) -> RunLease | None:
        """The session's run lease as held now (token, expiry, TTL), or None when no run
        holds it. ``lost`` is always False: this is a look, not a block holding it."""
        self._check_open()
        target = self._lease_target(session_id)
        try:
            body = (await self._transport.request("GET", target)).json()
        except ProblemError as exc:
            if exc.type == ProblemType.LEASE_NOT_HELD:
                return None
            raise
        return RunLease(session_id, body["token"], body["expires_at"], body["ttl"])

    async def release_lease(self, session_id: str, token: int) -> None:
        """Free the session's lease ``token`` now (an operator's way out of a lease a
        crashed run left held): its holder's writes are refused from then on.

        ``ProblemError`` 409 ``lease-lost`` when ``token`` is not the lease held (it
        ended, or another run's followed it): nothing was freed. A release retried
        after its answer was lost may say so too, having freed it."""
        self._check_open()
        await self._transport.request("DELETE", self._lease_target(session_id), run_lease=token)

    def _lease_target(self, session_id: str) -> Target:
        return self._transport.target(session_path(validate_session_id(session_id)) + "/lease")

    def close(self) -> Awaitable[None]:
        """Close at once: every call after it raises ``RuntimeError``, on this client
        and its sessions. Await the result to wait until the pools are released."""
        return self._transport.close()

    async def __aenter__(self) -> SessionMemoryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
