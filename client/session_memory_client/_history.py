"""History operations for ``RemoteSession``: atomic replace, live follow, and the Agents
SDK's compaction hooks built on them.

``HistoryMethods`` is a mixin over ``RemoteSession``'s transport (``_send``, its URL,
headers and retry settings); ``HistorySession`` is a ``RemoteSession`` with it mixed in.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from ._exceptions import ProblemError, TransportError
from ._session import MAX_BACKOFF, RemoteSession, _encode_items, _problem_error, _retryable
from .protocol import IDEMPOTENCY_KEY, IF_MATCH, LAST_EVENT_ID, ProblemType

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory.session import _CompactionSnapshot

__all__ = ["FollowEvent", "HistoryMethods", "HistorySession", "ReplaceResult"]


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    """Where a replace put the new items, and the session's revision after it."""

    count: int
    first_seq: int | None
    last_seq: int | None
    revision: int


@dataclass(frozen=True, slots=True)
class FollowEvent:
    """One change: ``append`` (``seq`` and ``item``), or ``pop``/``replace``/``clear``
    (``revision``: re-read the session to see what it holds now)."""

    kind: str
    seq: int | None = None
    item: Any = None
    revision: int | None = None


def _revision(response: httpx2.Response) -> int:
    return int(response.headers.get("etag", '"0"').strip('"'))


class HistoryMethods:
    """``replace_items``, ``follow`` and the compaction hooks; mixed into a ``RemoteSession``."""

    if TYPE_CHECKING:
        _url: str
        _headers: dict[str, str]
        _client: httpx2.AsyncClient
        retries: int
        backoff: float

        async def _send(
            self,
            method: str,
            url: str,
            params: dict[str, int] | None,
            content: bytes | None,
            headers: dict[str, str],
        ) -> httpx2.Response: ...

    async def _write(
        self, method: str, url: str, content: bytes, extra: dict[str, str]
    ) -> httpx2.Response:
        """One write with a fresh Idempotency-Key kept by its retries (as ``_request`` does)."""
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            IDEMPOTENCY_KEY: str(uuid.uuid4()),
            **extra,
        }
        attempt = 0
        while True:
            try:
                response = await self._send(method, url, None, content, headers)
            except TransportError:
                if attempt >= self.retries:
                    raise
            else:
                if response.status_code < 400:
                    return response
                error = _problem_error(response)
                if attempt >= self.retries or not _retryable(error):
                    raise error
            await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF, self.backoff * 2**attempt)))
            attempt += 1

    async def replace_items(
        self,
        items: list[TResponseInputItem],
        *,
        from_seq: int | None = None,
        if_revision: int | None = None,
    ) -> ReplaceResult:
        """Replace the items from ``from_seq`` on (all when None) by ``items``, atomically.

        With ``if_revision`` (an ETag's number) only if the session is still at that
        revision: else ``ProblemError`` with status 412 and nothing changes.
        """
        body = json.loads(_encode_items(list(items)))
        if from_seq is not None:
            body["from_seq"] = from_seq
        extra = {} if if_revision is None else {IF_MATCH: f'"{if_revision}"'}
        response = await self._write(
            "PUT", self._url + "/items", json.dumps(body, ensure_ascii=False).encode(), extra
        )
        answer = response.json()
        return ReplaceResult(
            answer["count"], answer["first_seq"], answer["last_seq"], _revision(response)
        )

    async def follow(self, after: int | None = None) -> AsyncIterator[FollowEvent]:
        """The session's changes as they happen (after seq ``after``; None: from now on).

        A lost connection is resumed after the last item seen, without gaps or repeats.
        """
        cursor = after
        while True:
            headers = dict(self._headers)
            if cursor is not None:
                headers[LAST_EVENT_ID] = str(cursor)
            try:
                async with self._client.stream(
                    "GET", self._url + "/events", headers=headers, timeout=None
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        raise _problem_error(response)
                    fields: dict[str, str] = {}
                    async for line in response.aiter_lines():
                        if line.startswith(":") or not (line or fields):
                            continue
                        if line:
                            name, _, value = line.partition(": ")
                            fields[name] = f"{fields[name]}\n{value}" if name in fields else value
                            continue
                        kind, data = fields.get("event", "message"), fields.get("data", "null")
                        seq = int(fields["id"]) if "id" in fields else None
                        fields = {}
                        if kind == "append":
                            cursor = seq
                            yield FollowEvent(kind, seq=seq, item=json.loads(data))
                        else:
                            yield FollowEvent(kind, revision=json.loads(data).get("revision"))
            except httpx2.TransportError:
                await asyncio.sleep(self.backoff)

    # -- the Agents SDK's compaction hooks (OpenAIResponsesCompactionSession) ---------

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Replace the whole history in one step (the SDK's whole-history compaction)."""
        await self.replace_items(items)
        return True

    async def _get_compaction_snapshot(self, limit: int) -> _CompactionSnapshot | None:
        """The latest ``limit`` items, and a suffix replace that fails if anything changed."""
        from agents.memory.session import _CompactionSnapshot

        page = await self._send("GET", self._url + "/items", {"limit": limit}, None, self._headers)
        if page.status_code >= 400:
            raise _problem_error(page)
        body = page.json()
        revision = _revision(page)
        items: list[TResponseInputItem] = body["items"]

        async def replace_suffix(start: int, new_items: list[TResponseInputItem]) -> bool:
            # The seq of items[start]: the first of the latest len(items) - start items,
            # read at the same revision (else the history moved on: nothing to do).
            tail = await self._send(
                "GET", self._url + "/items", {"limit": len(items) - start}, None, self._headers
            )
            if tail.status_code >= 400 or _revision(tail) != revision:
                return False
            from_seq = tail.json()["first_seq"]
            try:
                await self.replace_items(new_items, from_seq=from_seq, if_revision=revision)
            except ProblemError as exc:
                if exc.type == ProblemType.PRECONDITION_FAILED:
                    return False
                raise
            return True

        return _CompactionSnapshot(
            items=items, complete=not body["has_more"], replace_suffix=replace_suffix
        )


class HistorySession(HistoryMethods, RemoteSession):
    """A ``RemoteSession`` with ``replace_items``, ``follow`` and atomic compaction."""
