"""``RemoteSession``: the Agents SDK ``Session`` protocol over session-memory's HTTP API."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx2

from ._exceptions import ConnectError, ProblemError, RequestTimeout, TransportError
from .protocol import IDEMPOTENCY_KEY, session_path, validate_session_id

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory import SessionSettings

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT", "RemoteSession"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 4
MAX_BACKOFF = 5.0
API_KEY_ENV = "SESSION_MEMORY_API_KEY"


def _encode_items(items: list[Any]) -> bytes:
    # Keys keep their order; NaN and Infinity are refused here, as JSON has no such values.
    body = {"items": items}
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; as a \uXXXX escape it round-trips.
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class RemoteSession:
    """A conversation history kept by a session-memory service.

    Implements the OpenAI Agents SDK's ``Session`` protocol, so
    ``Runner.run(agent, input, session=RemoteSession("user-42"))`` keeps its history
    on the server, shared by every process and host that uses the same id.

    Transient failures (no connection, a timeout, 502, 503, 504) are retried up to
    ``retries`` times with exponential backoff and full jitter, starting at
    ``backoff`` seconds. Every ``add_items`` and ``pop_item`` carries a fresh
    Idempotency-Key reused by its retries, so a retry never duplicates an append
    nor pops twice.

    Calls go through one pooled ``httpx2.AsyncClient``: pass ``http_client`` to share
    a pool between many sessions (it is then yours to close), or let the session own
    one and release it with ``await session.close()`` or ``async with``.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session_settings: SessionSettings | None = None,
        http_client: httpx2.AsyncClient | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.1,
    ) -> None:
        from agents.memory import SessionSettings

        self.session_id = validate_session_id(session_id)
        self.session_settings = session_settings or SessionSettings()
        self.base_url = base_url.rstrip("/")
        self._url = self.base_url + session_path(session_id)
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = http_client is None
        self._client = http_client or httpx2.AsyncClient(timeout=timeout)
        self._timeout = timeout
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must be 0 or more")
        self.retries = retries
        self.backoff = backoff

    def __repr__(self) -> str:
        return f"RemoteSession({self.session_id!r}, base_url={self.base_url!r})"

    # -- the Session protocol --------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items, oldest first; all of them when no limit applies.

        When ``limit`` is None, ``session_settings.limit`` applies, as in the SDK's
        own sessions. ``limit=0`` gives ``[]``; a negative limit is a ``ValueError``.
        """
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        params: dict[str, int] = {}
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be 0 or more, not {limit}")
            params["limit"] = limit
        response = await self._request("GET", self._url + "/items", params=params)
        page = json.loads(response.content)
        items: list[TResponseInputItem] = page["items"]
        # A page holds fewer than `limit` items when they pass the server's byte
        # bound per page (has_more then says so): fetch the older ones it left out.
        while limit is not None and page["has_more"] and len(items) < limit:
            params = {"limit": limit - len(items), "before": page["first_seq"]}
            response = await self._request("GET", self._url + "/items", params=params)
            page = json.loads(response.content)
            items[:0] = page["items"]
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` atomically and contiguously; an empty list sends nothing."""
        if not items:
            return
        await self._request(
            "POST", self._url + "/items", content=_encode_items(list(items)), idempotent_write=True
        )

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item, or None when the session is empty."""
        response = await self._request("DELETE", self._url + "/items/last", idempotent_write=True)
        item: TResponseInputItem | None = json.loads(response.content)["item"]
        return item

    async def clear_session(self) -> None:
        """Delete every item of this session, and its record, on the server."""
        await self._request("DELETE", self._url)

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        """Close the HTTP client if this session created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RemoteSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- transport -------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, int] | None = None,
        content: bytes | None = None,
        idempotent_write: bool = False,
    ) -> httpx2.Response:
        """Send one logical request, retrying transient failures; map errors to ours.

        Reads and clears are idempotent by nature. Writes carry one fresh
        Idempotency-Key for all their attempts, so a retried append lands once and a
        retried pop removes one item, even when an earlier attempt reached the server.
        """
        headers = dict(self._headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        if idempotent_write:
            headers[IDEMPOTENCY_KEY] = str(uuid.uuid4())
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, params, content, headers)
            except TransportError:
                if attempt >= self.retries:
                    raise
            else:
                if response.status_code < 400:
                    return response
                error = _problem_error(response)
                if attempt >= self.retries or not _retryable(error):
                    raise error
            # Full jitter: spread retries of many clients over the whole interval.
            await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF, self.backoff * 2**attempt)))
            attempt += 1

    async def _send(
        self,
        method: str,
        url: str,
        params: dict[str, int] | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx2.Response:
        try:
            return await self._client.request(
                method, url, params=params, content=content, headers=headers, timeout=self._timeout
            )
        except httpx2.ConnectError as exc:
            raise ConnectError(
                f"could not connect to session-memory at {self.base_url}: {exc}", url=url
            ) from exc
        except httpx2.TimeoutException as exc:
            raise RequestTimeout(
                f"session-memory at {self.base_url} did not answer within {self._timeout}s",
                url=url,
            ) from exc
        except httpx2.TransportError as exc:
            raise TransportError(
                f"request to session-memory at {self.base_url} failed: {exc}", url=url
            ) from exc


def _retryable(error: ProblemError) -> bool:
    # 502-504: a proxy or the store is briefly away. 409: an earlier attempt of this
    # same write is still running (it answers with the outcome once it is done).
    return error.status in (502, 503, 504) or error.type.endswith("idempotency-key-in-flight")


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
