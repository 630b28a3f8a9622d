"""The one place that speaks HTTP: connection pools per event loop, retries, error mapping.

Everything above this module deals in paths, JSON bodies and our exceptions; swapping
the HTTP library means rewriting this module alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httpx2

from ._exceptions import ConnectError, ProblemError, RequestTimeout, TransportError
from .protocol import ETAG, IDEMPOTENCY_KEY, IF_MATCH, ProblemType

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BACKOFF",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_FOR",
    "DEFAULT_TIMEOUT",
    "Reply",
    "Transport",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BASE_URL_ENV = "SESSION_MEMORY_BASE_URL"
API_KEY_ENV = "SESSION_MEMORY_API_KEY"
DEFAULT_TIMEOUT = 30.0
# Retries stop at whichever bound comes first: the count (None: no count) or the time
# since the first attempt. 30 s outlasts a restart by a deploy (2-10 s) with room.
DEFAULT_RETRIES: int | None = None
DEFAULT_RETRY_FOR = 30.0
DEFAULT_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 2.0


@dataclass(frozen=True)
class Reply:
    """A successful answer: status, body bytes as received, and the ETag if any."""

    status: int
    content: bytes
    etag: str | None

    def json(self) -> Any:
        return json.loads(self.content)


async def _own_until_loop_shutdown(client: httpx2.AsyncClient) -> AsyncGenerator[None, None]:
    # An async generator the loop knows about: asyncio.run() (and anyone calling
    # loop.shutdown_asyncgens()) closes it before closing the loop, and with it the pool,
    # so no connection outlives the loop it belongs to.
    try:
        yield
    finally:
        await client.aclose()


class _LoopPool:
    def __init__(self, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.owner = _own_until_loop_shutdown(client)


class Transport:
    """Sends one logical request, retrying transient failures, and maps errors to ours.

    A connection belongs to the event loop that opened it, so each loop gets its own
    pool (``Runner.run_sync`` on a fresh loop per turn, or calls from many threads, each
    with their own loop). A caller-supplied ``http_client`` is used as is, on whatever
    loop it belongs to, and is never closed here.
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        timeout: float,
        http_client: httpx2.AsyncClient | None,
        retries: int | None,
        retry_for: float,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if (retries is not None and retries < 0) or retry_for < 0 or backoff < 0:
            raise ValueError("retries, retry_for and backoff must be 0 or more")
        if max_backoff < backoff:
            raise ValueError("max_backoff must be at least backoff")
        base_url = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
        self.base_url = base_url.rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.retry_for = retry_for
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._shared_client = http_client
        # The clock and the wait between retries, replaceable so tests need not wait.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._lock = threading.Lock()
        self.closed = False

    # -- pools -----------------------------------------------------------------------

    async def _client(self) -> httpx2.AsyncClient:
        if self._shared_client is not None:
            return self._shared_client
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.get(loop)
            # Forget pools of loops that are gone; their connections went with them.
            for dead in [other for other in self._pools if other.is_closed()]:
                del self._pools[dead]
            if pool is not None and not pool.client.is_closed:
                return pool.client
            pool = _LoopPool(httpx2.AsyncClient(timeout=self.timeout))
            self._pools[loop] = pool
        await pool.owner.__anext__()
        return pool.client

    async def aclose(self) -> None:
        """Close every pool this transport opened; the caller's ``http_client`` stays open."""
        self.closed = True
        with self._lock:
            pools, self._pools = self._pools, {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, pool in pools.items():
            if loop is current:
                await pool.owner.aclose()
                await pool.client.aclose()
            elif not loop.is_closed() and loop.is_running():
                # A pool can only be closed on its own loop; don't wait for it.
                asyncio.run_coroutine_threadsafe(pool.owner.aclose(), loop)

    # -- requests --------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        write: bool = False,
        if_match: str | None = None,
    ) -> Reply:
        """Send one logical request; retry what is transient; raise ours for the rest.

        A ``write`` carries one fresh Idempotency-Key for all its attempts, so a retried
        append lands once and a retried pop removes one item, even when an earlier
        attempt reached the server and only its answer was lost.
        """
        url = self.base_url + path
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        if write:
            headers[IDEMPOTENCY_KEY] = str(uuid.uuid4())
        if if_match is not None:
            headers[IF_MATCH] = if_match
        started = self._clock()
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, params, content, headers)
            except TransportError:
                if not self._may_retry(attempt, started):
                    raise
            else:
                if response.status_code < 400:
                    return Reply(response.status_code, response.content, response.headers.get(ETAG))
                error = _problem_error(response)
                if not (_retryable(error) and self._may_retry(attempt, started)):
                    raise error
            # Exponential, capped, with jitter over the upper half: many clients spread
            # out, and the time covered by the retries stays predictable.
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            await self._sleep(random.uniform(delay / 2, delay))
            attempt += 1

    def _may_retry(self, attempt: int, started: float) -> bool:
        if self.retries is not None and attempt >= self.retries:
            return False
        return self._clock() - started < self.retry_for

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str | int] | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx2.Response:
        client = await self._client()
        try:
            return await client.request(
                method, url, params=params, content=content, headers=headers, timeout=self.timeout
            )
        except httpx2.ConnectError as exc:
            raise ConnectError(
                f"could not connect to session-memory at {self.base_url}: {exc}", url=url
            ) from exc
        except httpx2.TimeoutException as exc:
            raise RequestTimeout(
                f"session-memory at {self.base_url} did not answer within {self.timeout}s",
                url=url,
            ) from exc
        except httpx2.TransportError as exc:
            raise TransportError(
                f"request to session-memory at {self.base_url} failed: {exc}", url=url
            ) from exc


def _retryable(error: ProblemError) -> bool:
    # 502-504: a proxy or the store is briefly away. 409: an earlier attempt of this
    # same write is still running (it answers with the outcome once it is done).
    return error.status in (502, 503, 504) or error.type == ProblemType.IDEMPOTENCY_KEY_IN_FLIGHT


def _problem_error(response: httpx2.Response) -> ProblemError:
    status = response.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    problem: dict[str, Any] = {}
    try:
        parsed = json.loads(response.content)
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    return ProblemError(
        status,
        title=str(problem.get("title") or phrase),
        detail=str(problem.get("detail") or response.text[:500] or phrase),
        type=str(problem.get("type") or "about:blank"),
        problem=problem,
    )
