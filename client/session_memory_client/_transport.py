"""The one place that speaks HTTP: connection pools per event loop, retries, error mapping.

Everything above this module deals in targets (``Transport.target``), JSON bodies and our
exceptions; swapping the HTTP library means rewriting this module alone. The library is
aiohttp: its ``ClientSession`` costs a fraction of httpx2's CPU per call (see the README).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
)
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL  # aiohttp's own URL type (a dependency of aiohttp)

from ._exceptions import ConnectError, ProblemError, RequestTimeout, TransportError
from .protocol import ETAG, IDEMPOTENCY_KEY, IF_MATCH, RUN_LEASE, ProblemType

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BACKOFF",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BACKOFF",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_FOR",
    "DEFAULT_TIMEOUT",
    "Closing",
    "Reply",
    "Target",
    "Transport",
]

logger = logging.getLogger("session_memory_client")

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
# As many connections per loop as httpx2 allowed before; more tasks wait for one.
_MAX_CONNECTIONS = 100
# aiohttp warns about bodies above 1 MiB given as bytes (it would write them in one go)
# and streams a file-like object in chunks instead.
_STREAMED_BODY = 2**20

Target = URL
"""Where a request goes: built once by ``Transport.target`` and reused for every call."""


class Reply:
    """A successful answer: status, body bytes as received, and the ETag if any."""

    __slots__ = ("content", "etag", "status")

    def __init__(self, status: int, content: bytes, etag: str | None) -> None:
        self.status = status
        self.content = content
        self.etag = etag

    def json(self) -> Any:
        # Decoding first is measurably cheaper than handing json.loads bytes (it would
        # sniff the encoding and decode with an error handler); the service sends UTF-8.
        return json.loads(self.content.decode())


async def _own_until_loop_shutdown(client: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    # An async generator the loop knows about: asyncio.run() (and anyone calling
    # loop.shutdown_asyncgens()) closes it before closing the loop, and with it the pool,
    # so no connection outlives the loop it belongs to.
    try:
        yield
    finally:
        await client.close()


class _LoopPool:
    def __init__(self, client: aiohttp.ClientSession) -> None:
        self.client = client
        self.owner = _own_until_loop_shutdown(client)


async def _close_pool(pool: _LoopPool) -> None:
    await pool.owner.aclose()
    await pool.client.close()


class Closing:
    """What ``close()`` returns: the closing has already begun, and awaiting this
    waits until this loop's connections are released.

    Not a coroutine, so a plain ``close()`` that nobody awaits is no mistake and
    draws no "never awaited" warning.
    """

    __slots__ = ("_tasks",)

    def __init__(self, tasks: list[asyncio.Task[None]] | None = None) -> None:
        self._tasks = tasks or []
        for task in self._tasks:
            # Retrieved even when nobody awaits, so a failed close is not logged as lost.
            task.add_done_callback(_retrieve)

    def __await__(self) -> Generator[Any, None, None]:
        for task in self._tasks:
            yield from task.__await__()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class Transport:
    """Sends one logical request, retrying transient failures, and maps errors to ours.

    An aiohttp ``ClientSession`` belongs to the event loop it was created on, so each
    loop gets its own (``Runner.run_sync`` on a fresh loop per turn, or calls from many
    threads, each with their own loop). A caller-supplied ``http_client`` is used as is,
    on whatever loop it belongs to, and is never closed here.
    """

    def __init__(
        self,
        base_url: str | None,
        *,
        api_key: str | None,
        timeout: float,
        http_client: aiohttp.ClientSession | None,
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
        auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.retry_for = retry_for
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._shared_client = http_client
        # Headers are built once. Our own pools carry the credential as a default header;
        # a caller's client gets it on every request. A write copies its base (to add
        # its Idempotency-Key); nothing else is built per call.
        self._default_headers = auth if http_client is None else {}
        per_call = {} if http_client is None else auth
        self._read_headers: dict[str, str] | None = per_call or None
        self._json_headers = {**per_call, "Content-Type": "application/json"}
        self._plain_headers = per_call
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # The clock and the wait between retries, replaceable so tests need not wait.
        self._clock: Callable[[], float] = time.monotonic
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._lock = threading.Lock()
        self.closed = False

    def target(self, path: str, query: Mapping[str, str | int] | None = None) -> Target:
        """The URL of ``path`` (already percent-encoded) under the base URL, with ``query``.

        Built as-is (``encoded=True``): the path's escapes reach the server untouched,
        and nothing re-parses the URL on each call that reuses it.
        """
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query)
        return URL(url, encoded=True)

    # -- pools -----------------------------------------------------------------------

    async def _client(self) -> aiohttp.ClientSession:
        if self._shared_client is not None:
            return self._shared_client
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None and not pool.client.closed:
            return pool.client
        with self._lock:
            pool = self._pools.get(loop)
            # Forget pools of loops that are gone; their connections went with them.
            for dead in [other for other in self._pools if other.is_closed()]:
                del self._pools[dead]
            if pool is not None and not pool.client.closed:
                return pool.client
            pool = _LoopPool(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=_MAX_CONNECTIONS),
                    headers=self._default_headers,
                    timeout=self._timeout,
                    # The service sets no cookies; skipping the jar saves work per call.
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
            )
            self._pools[loop] = pool
        await pool.owner.__anext__()
        return pool.client

    def close(self) -> Closing:
        """Close now: every later call sees ``closed``, and the pools start closing.

        A pool can only be closed on its own loop: the current loop's is closed by a
        task, which the returned ``Closing`` waits for when awaited (not awaiting it is
        fine too); a pool of a loop running in another thread is handed to that loop.
        A loop that is not running closes its pool when it shuts down. The caller's
        ``http_client`` stays open.
        """
        self.closed = True
        with self._lock:
            pools, self._pools = self._pools, {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        tasks: list[asyncio.Task[None]] = []
        for loop, pool in pools.items():
            if loop is current:
                tasks.append(loop.create_task(_close_pool(pool)))
            elif not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(_close_pool(pool), loop)
        return Closing(tasks)

    # -- requests --------------------------------------------------------------------

    async def request(
        self,
        method: str,
        target: Target,
        *,
        content: bytes | None = None,
        write: bool = False,
        if_match: str | None = None,
        idempotency_key: str | None = None,
        run_lease: int | None = None,
    ) -> Reply:
        """Send one logical request; retry what is transient; raise ours for the rest.

        A ``write`` carries one fresh Idempotency-Key for all its attempts, so a retried
        append lands once and a retried pop removes one item, even when an earlier
        attempt reached the server and only its answer was lost. ``idempotency_key``
        gives that key explicitly (it makes the request a write). ``run_lease`` is the
        run lease token the request carries (``Run-Lease``).
        """
        headers = self._read_headers
        write = write or idempotency_key is not None
        if content is not None or write or if_match is not None or run_lease is not None:
            headers = dict(self._json_headers if content is not None else self._plain_headers)
            if write:
                headers[IDEMPOTENCY_KEY] = idempotency_key or str(uuid.uuid4())
            if if_match is not None:
                headers[IF_MATCH] = if_match
            if run_lease is not None:
                headers[RUN_LEASE] = str(run_lease)
        started = self._clock()
        attempt = 0
        while True:
            try:
                status, body, etag = await self._send(method, target, content, headers)
            except TransportError as exc:
                if not self._may_retry(attempt, started):
                    raise
                if attempt == 0:
                    self._warn_retrying(exc, started)
            else:
                if status < 400:
                    return Reply(status, body, etag)
                error = _problem_error(status, body)
                if not (_retryable(error) and self._may_retry(attempt, started)):
                    raise error
            # Exponential, capped, with jitter over the upper half: many clients spread
            # out, and the time covered by the retries stays predictable.
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            await self._sleep(random.uniform(delay / 2, delay))
            attempt += 1

    async def stream_lines(
        self, target: Target, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        """GET ``target`` and yield its body's lines (without line ends) as they arrive.

        For endless responses (server-sent events): no total timeout, only one for
        connecting. An error status raises ``ProblemError``; a lost or refused
        connection raises ``TransportError`` (the caller decides whether to resume).
        No retries here: resuming a stream needs the caller's cursor.
        """
        client = await self._client()
        sent = {**self._plain_headers, **(headers or {})}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
        try:
            async with client.get(
                target, headers=sent, timeout=timeout, allow_redirects=False
            ) as response:
                if response.status >= 400:
                    raise _problem_error(response.status, await response.read())
                while True:
                    line = await response.content.readline()
                    if not line:
                        return
                    yield line.decode().rstrip("\r\n")
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(
                f"could not connect to session-memory at {self.base_url}: {exc}", url=str(target)
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(
                f"stream from session-memory at {self.base_url} failed: {exc!r}", url=str(target)
            ) from exc

    def _warn_retrying(self, error: TransportError, started: float) -> None:
        # Once per call: the retries that follow may take the whole budget (30 s by
        # default), and a caller waiting that long should know why.
        left = max(0.0, self.retry_for - (self._clock() - started))
        budget = f"retrying for up to {left:.1f} s more"
        if self.retries is not None:
            budget += f" (at most {self.retries} more attempt{'s' if self.retries != 1 else ''})"
        logger.warning("%s; %s", error, budget)

    def _may_retry(self, attempt: int, started: float) -> bool:
        if self.retries is not None and attempt >= self.retries:
            return False
        return self._clock() - started < self.retry_for

    async def _send(
        self,
        method: str,
        target: Target,
        content: bytes | None,
        headers: dict[str, str] | None,
    ) -> tuple[int, bytes, str | None]:
        client = await self._client()
        data: bytes | io.BytesIO | None = content
        if content is not None and len(content) > _STREAMED_BODY:
            data = io.BytesIO(content)  # a fresh one per attempt: reading consumes it
        try:
            async with client.request(
                method,
                target,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                return response.status, await response.read(), response.headers.get(ETAG)
        except aiohttp.ClientConnectorError as exc:
            raise ConnectError(
                f"could not connect to session-memory at {self.base_url}: {exc}", url=str(target)
            ) from exc
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise RequestTimeout(
                f"session-memory at {self.base_url} did not answer within {self.timeout}s",
                url=str(target),
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"request to session-memory at {self.base_url} failed: {exc!r}", url=str(target)
            ) from exc


def _retryable(error: ProblemError) -> bool:
    # 502-504: a proxy or the store is briefly away. 409: an earlier attempt of this
    # same write is still running (it answers with the outcome once it is done).
    return error.status in (502, 503, 504) or error.type == ProblemType.IDEMPOTENCY_KEY_IN_FLIGHT


def _problem_error(status: int, body: bytes) -> ProblemError:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    problem: dict[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    return ProblemError(
        status,
        title=str(problem.get("title") or phrase),
        detail=str(problem.get("detail") or body.decode(errors="replace")[:500] or phrase),
        type=str(problem.get("type") or "about:blank"),
        problem=problem,
    )
