"""``RemoteSession``: the Agents SDK ``Session`` protocol over session-memory's HTTP API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._exceptions import ProblemError
from ._transport import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_FOR,
    DEFAULT_TIMEOUT,
    Reply,
    Target,
    Transport,
)
from ._types import ItemPage, SessionRecord
from .protocol import ProblemType, session_path, validate_session_id

if TYPE_CHECKING:
    import aiohttp
    from agents.items import TResponseInputItem
    from agents.memory import SessionSettings
    from agents.run_context import RunContextWrapper

__all__ = ["RemoteSession"]

logger = logging.getLogger("session_memory_client")

_T = TypeVar("_T")
# How many distinct page sizes a session keeps a ready URL for (a Runner uses one).
_KEPT_LIMIT_TARGETS = 8


async def _settle(awaitable: Awaitable[_T]) -> _T:
    """Wait for a write's outcome even when the caller is cancelled, then re-raise.

    The SDK's 0.24 stores do the same: a ``CancelledError`` never leaves while the
    write it interrupted could still land afterwards.
    """
    task = asyncio.ensure_future(awaitable)
    loop = task.get_loop()
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        # A waiter of our own, not the task: cancelling the caller cancels the waiter
        # alone. (asyncio.wait does the same with more bookkeeping, on every write.)
        waiter = loop.create_future()
        task.add_done_callback(partial(_wake, waiter))
        try:
            await waiter
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None:
        # The outcome (value or error) is settled; the caller asked to stop.
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost
        raise cancelled
    return task.result()


def _wake(waiter: asyncio.Future[None], _task: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _coerce_settings(value: SessionSettings | dict[str, Any] | None) -> SessionSettings | None:
    try:
        from agents.memory import SessionSettings
    except ImportError:
        # Without the SDK (the CLI, scripts that page through a session) there are
        # no settings to hold; with it, None becomes the SDK's empty settings.
        if value is None:
            return None
        raise
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, dict):
        # As the SDK's own stores do: known keys only, so a typo is not silently ignored.
        known = set(SessionSettings.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise TypeError(f"Unknown session settings: {', '.join(unknown)}")
        return SessionSettings(**value)
    raise TypeError(
        f"session_settings must be SessionSettings, a dict or None, not {type(value).__name__}"
    )


# Built once: json.dumps with options builds an encoder on every call. Keys keep their
# order; NaN and Infinity are refused here, as JSON has no such values.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return _ENCODE(body).encode()
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8; as a \uXXXX escape it round-trips.
        return _ENCODE_ASCII(body).encode()


@dataclass(frozen=True)
class _Snapshot:
    """The SDK's ``_CompactionSnapshot`` shape, without importing a private SDK type."""

    items: list[TResponseInputItem]
    complete: bool
    replace_suffix: Callable[[int, list[TResponseInputItem]], Awaitable[bool]]


class RemoteSession:
    """A conversation history kept by a session-memory service.

    Implements the OpenAI Agents SDK's ``Session`` protocol, so
    ``Runner.run(agent, input, session=RemoteSession("user-42"))`` keeps its history
    on the server, shared by every process and host that uses the same id.

    ``base_url`` and ``api_key`` default to ``$SESSION_MEMORY_BASE_URL`` (else
    ``http://127.0.0.1:8000``) and ``$SESSION_MEMORY_API_KEY``. ``session_settings``
    takes ``SessionSettings`` or a dict of its fields.

    Transient failures (no connection, a timeout, 502, 503, 504) are retried with
    capped exponential backoff for up to ``retry_for`` seconds (and at most ``retries``
    times when that is set). Every write carries one Idempotency-Key for all its
    attempts, so a retry never duplicates an append nor pops twice.

    A cancelled ``add_items``, ``pop_item`` or ``clear_session`` waits for the write's
    outcome before the ``CancelledError`` propagates; a cancelled pop that removed an
    item appends it again (or, if that fails, logs it as a warning).

    Safe to use from several event loops and threads: each loop gets its own
    connection pool. Pass ``http_client`` to use your own ``aiohttp.ClientSession``
    instead (one loop only; it is yours to close). ``close()`` (or ``async with``)
    releases the pools; any call after it raises ``RuntimeError``.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        http_client: aiohttp.ClientSession | None = None,
        retries: int | None = DEFAULT_RETRIES,
        retry_for: float = DEFAULT_RETRY_FOR,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        _transport: Transport | None = None,
    ) -> None:
        self.session_id = validate_session_id(session_id)
        self.session_settings = _coerce_settings(session_settings)
        self._owns_transport = _transport is None
        self._transport = _transport or Transport(
            base_url,
            api_key=api_key,
            timeout=timeout,
            http_client=http_client,
            retries=retries,
            retry_for=retry_for,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        # Every URL this session calls, built once; pages by limit are kept as asked for.
        path = session_path(session_id)
        self._path = path
        self._session_target = self._transport.target(path)
        self._items_target = self._transport.target(path + "/items")
        self._last_target = self._transport.target(path + "/items/last")
        self._limit_targets: dict[int, Target] = {}
        self._closed = False
        # None until known: whether the service can replace items atomically (PUT).
        self._replace_supported: bool | None = None

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def __repr__(self) -> str:
        return f"RemoteSession({self.session_id!r}, base_url={self.base_url!r})"

    def _check_open(self) -> None:
        if self._closed or self._transport.closed:
            raise RuntimeError("RemoteSession is closed")

    # -- the Session protocol --------------------------------------------------------

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The latest ``limit`` items, oldest first; all of them when no limit applies.

        When ``limit`` is None, ``session_settings.limit`` applies, as in the SDK's
        own sessions. ``limit=0`` gives ``[]``; a negative limit is a ``ValueError``.
        ``wrapper`` (the run context, passed by the Runner) is accepted and unused.
        """
        self._check_open()
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        # The items alone: no ItemPage to build on the path every turn takes.
        reply = await self._transport.request("GET", self._page_target(limit, None, None))
        body = reply.json()
        items: list[TResponseInputItem] = body["items"]
        # A page holds fewer than `limit` items when they pass the server's byte
        # bound per page (has_more then says so): fetch the older ones it left out.
        while limit is not None and body["has_more"] and len(items) < limit:
            target = self._page_target(limit - len(items), None, body["first_seq"])
            body = (await self._transport.request("GET", target)).json()
            items[:0] = body["items"]
        return items

    async def add_items(
        self,
        items: list[TResponseInputItem],
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        """Append ``items`` atomically and contiguously; an empty list sends nothing."""
        self._check_open()
        if not items:
            return
        body = _encode({"items": list(items)})
        await _settle(self._transport.request("POST", self._items_target, content=body, write=True))

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item, or None when the session is empty."""
        self._check_open()
        task = asyncio.ensure_future(
            self._transport.request("DELETE", self._last_target, write=True)
        )
        try:
            reply = await _settle(task)
        except asyncio.CancelledError:
            if not task.cancelled() and task.exception() is None:
                await _settle(self._put_back(task.result()))
            raise
        item: TResponseInputItem | None = reply.json()["item"]
        return item

    async def _put_back(self, reply: Reply) -> None:
        # The caller was cancelled, so nobody receives this item: append it again. When
        # the service tells the pop's revision (ETag), only if the session is still as
        # the pop left it, so no later write is reordered; today's service does not, and
        # the item goes back unconditionally. If that fails, say so: never silently.
        item = reply.json()["item"]
        if item is None:
            return
        try:
            await self._transport.request(
                "POST",
                self._items_target,
                content=_encode({"items": [item]}),
                write=True,
                if_match=reply.etag,
            )
        except Exception as exc:  # any failure means the item is gone
            logger.warning(
                "cancelled pop_item on session %r removed an item that could not be put "
                "back (%s); the item was: %s",
                self.session_id,
                exc,
                json.dumps(item, ensure_ascii=False),
            )

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Delete every item of this session, and its record, on the server."""
        self._check_open()
        await _settle(self._transport.request("DELETE", self._session_target))

    # -- beyond the protocol ---------------------------------------------------------

    async def read_items(
        self, *, limit: int | None = None, after: int | None = None, before: int | None = None
    ) -> ItemPage:
        """One page of items with its sequence numbers and ETag.

        No cursor: the latest ``limit`` items (all when None). ``after=seq``: the oldest
        ``limit`` items after ``seq``, for walking forward; ``before=seq``: the latest
        ``limit`` items before it, for walking back. ``has_more`` says whether the walk
        can go on (from ``last_seq`` forward, or from ``first_seq`` back).
        """
        self._check_open()
        reply = await self._transport.request("GET", self._page_target(limit, after, before))
        return ItemPage.from_reply(reply)

    def _page_target(self, limit: int | None, after: int | None, before: int | None) -> Target:
        if after is None and before is None:
            if limit is None:
                return self._items_target
            target = self._limit_targets.get(limit)
            if target is None:
                target = self._transport.target(self._path + "/items", {"limit": limit})
                if len(self._limit_targets) < _KEPT_LIMIT_TARGETS:
                    self._limit_targets[limit] = target
            return target
        query = {
            name: value
            for name, value in (("limit", limit), ("after", after), ("before", before))
            if value is not None
        }
        return self._transport.target(self._path + "/items", query)

    async def get_record(self) -> SessionRecord:
        """This session's record (item count, timestamps, expiry); ``ProblemError`` 404
        when the session does not exist."""
        self._check_open()
        record: SessionRecord = (await self._transport.request("GET", self._session_target)).json()
        return record

    # -- compaction hooks (OpenAIResponsesCompactionSession, openai-agents >= 0.24) ----
    #
    # The SDK looks these up by name. Both need a server-side atomic replace,
    # ``PUT /v1/sessions/{id}/items`` with ``{"items": [...], "from_seq": S}`` under
    # If-Match. Until the service has it, they report "unsupported" and the SDK falls
    # back to ``clear_session`` + ``add_items`` (whole history) or skips compaction of a
    # partial view with a warning, as it does for any store without them.

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Replace the whole history with ``items`` in one step; False: not supported."""
        self._check_open()
        if self._replace_supported is False:
            return False
        page = await self.read_items(limit=0)
        return await self._replace(0, items, page.etag)

    async def _get_compaction_snapshot(
        self,
        limit: int,
        *,
        prune_prefix: Callable[[TResponseInputItem], bool] | None = None,
    ) -> _Snapshot | None:
        """The latest ``limit`` items and a way to replace a suffix of them atomically.

        None (the SDK then uses its own checks) when the service cannot replace items,
        or when the page's sequence numbers have gaps, so an item's number is unknown.
        ``prune_prefix`` is accepted; expired-prefix pruning is the server's business.
        """
        self._check_open()
        if not await self._can_replace():
            return None
        page = await self.read_items(limit=limit)
        if page.first_seq is None or page.last_seq is None or not page.items:
            return None
        if page.last_seq - page.first_seq + 1 != len(page.items):
            return None
        first_seq, etag = page.first_seq, page.etag

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            if start >= len(page.items):
                return False
            return await _settle(self._replace(first_seq + start, output, etag))

        return _Snapshot(page.items, not page.has_more, replace_suffix)

    async def _can_replace(self) -> bool:
        if self._replace_supported is None:
            # A PUT that cannot apply (an ETag no session has, no items): a service
            # without the route answers 405; one with it refuses the precondition.
            try:
                await self._transport.request(
                    "PUT", self._items_target, content=b"{}", if_match='"-1"'
                )
            except ProblemError as exc:
                self._replace_supported = exc.status not in (404, 405, 501)
            else:
                self._replace_supported = True
        return self._replace_supported

    async def _replace(
        self, from_seq: int, items: list[TResponseInputItem], etag: str | None
    ) -> bool:
        body = _encode({"items": list(items), "from_seq": from_seq})
        try:
            await self._transport.request(
                "PUT", self._items_target, content=body, write=True, if_match=etag or "*"
            )
        except ProblemError as exc:
            if exc.status in (405, 501) or (
                exc.status == 404 and exc.type != ProblemType.SESSION_NOT_FOUND
            ):
                self._replace_supported = False
                return False
            if exc.status == 412:
                return False
            raise
        self._replace_supported = True
        return True

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        """Release this session's connection pools; every call after it raises."""
        self._closed = True
        if self._owns_transport:
            await self._transport.aclose()

    async def __aenter__(self) -> RemoteSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
