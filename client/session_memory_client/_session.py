"""``RemoteSession``: the Agents SDK ``Session`` protocol over session-memory's HTTP API."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._cache import DEFAULT_CACHE_BYTES, ReadCache
from ._compaction import read_snapshot
from ._exceptions import ProblemError
from ._history import HistoryMethods
from ._lease import LeaseBlock, lease_token
from ._reads import LatestReads
from ._transport import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_BACKOFF,
    DEFAULT_RETRIES,
    DEFAULT_RETRY_FOR,
    DEFAULT_TIMEOUT,
    Closing,
    Reply,
    Target,
    Transport,
)
from ._types import ItemPage, SessionRecord
from ._writes import _encode, _settle, _Snapshot
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


class RemoteSession(HistoryMethods):
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
    instead (one loop only; it is yours to close). ``close()`` closes the session at
    once, as SQLiteSession's does (any call after it raises ``RuntimeError``), and
    releases the pools; ``await session.close()`` and ``async with`` wait for that.

    ``get_items`` keeps the items it read (up to ``cache_bytes`` of JSON; 0 turns it
    off), so the next one is sent only what changed since: nothing, the items
    appended, or the latest items in full after anything else (a pop, a replace, a
    clear, an expiry, a write by anyone). The service checks within the read, so a
    read is never stale, and each call returns new objects: changing them changes
    nothing kept.
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
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        _transport: Transport | None = None,
        _cache: ReadCache | None = None,
    ) -> None:
        self.session_id = validate_session_id(session_id)
        if cache_bytes < 0:
            raise ValueError("cache_bytes must be 0 or more")
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
        # The client's cache, shared by its sessions; else one of this session's own.
        cache = _cache
        if cache is None and cache_bytes:
            cache = ReadCache(cache_bytes)
        self._reads = LatestReads(self._transport, path, cache)
        self._closed = False

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
        own sessions. ``limit=0`` gives ``[]``; a negative limit gives every item, as
        SQLiteSession's does (SQLite reads a negative LIMIT as none).
        ``wrapper`` (the run context, passed by the Runner) is accepted and unused.
        """
        self._check_open()
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit < 0:
            limit = None
        # A page holds fewer than `limit` items when they pass the server's byte
        # bound per page (has_more then says so): the reads fetch the older ones too.
        items: list[TResponseInputItem] = await self._reads.items(limit)
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
        await _settle(
            self._transport.request(
                "POST", self._items_target, content=body, write=True, run_lease=lease_token(self)
            )
        )

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item, or None when the session is empty."""
        self._check_open()
        return await self._pop(None)

    async def _pop_item_with_validation(
        self, validate: Callable[[TResponseInputItem], None] | None = None
    ) -> TResponseInputItem | None:
        """``pop_item``, but ``validate(item)`` runs before the item is removed: when it
        raises, the item stays where it was and the exception propagates.

        SQLiteSession's method of this name, with the same meaning: the newest item is
        read, validated, then removed only if the session is still at the revision
        read (If-Match); had anything been written meanwhile, it starts over.
        """
        self._check_open()
        if validate is None:
            return await self._pop(None)
        while True:
            page = await self.read_items(limit=1)
            if not page.items:
                return None
            validate(page.items[-1])
            try:
                return await self._pop(page.etag or "*")
            except ProblemError as exc:
                if exc.type != ProblemType.PRECONDITION_FAILED:
                    raise

    async def _pop(self, if_match: str | None) -> TResponseInputItem | None:
        task = asyncio.ensure_future(
            self._transport.request(
                "DELETE",
                self._last_target,
                write=True,
                if_match=if_match,
                run_lease=lease_token(self),
            )
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
                run_lease=lease_token(self),
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
        await _settle(
            self._transport.request("DELETE", self._session_target, run_lease=lease_token(self))
        )

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

    # -- the Agents SDK's compaction hooks (OpenAIResponsesCompactionSession) ---------
    #
    # The SDK looks these up by name. As in the SDK's own stores, they serve this exact
    # class only: a subclass that overrides add_items or clear_session (to log, to
    # encrypt) gets None/False, so the SDK falls back to the methods it overrode.

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """Replace the whole history with ``items`` in one step (the SDK's whole-history
        compaction): an append racing it lands either wholly before (and is replaced)
        or after it, never half. False, changing nothing, for a subclass."""
        if type(self) is not RemoteSession:
            return False
        self._check_open()
        await _settle(self._replace(items, from_seq=None, if_match=None))
        return True

    async def _get_compaction_snapshot(
        self,
        limit: int,
        *,
        prune_prefix: Callable[[TResponseInputItem], bool] | None = None,
    ) -> _Snapshot | None:
        """The latest ``limit`` items and a way to replace a suffix of them atomically;
        None for a subclass.

        ``replace_suffix(start, items)`` replaces ``items[start:]`` of the snapshot only
        if the session is still at the snapshot's revision (If-Match), else returns
        False and changes nothing. The page is read with its byte bound: fewer items
        than ``limit`` come back when they are large (``complete`` says whether the
        snapshot holds the whole history). With ``prune_prefix``, the same replace also
        deletes the history's leading items for which it is true (EncryptedSession
        passes one that finds expired items), as SQLiteSession's does.
        """
        if type(self) is not RemoteSession:
            return None
        self._check_open()
        return await read_snapshot(self, limit, prune_prefix)

    def run_lease(
        self, *, ttl: float = 30, wait: float = 0, unleased_writes: str = "refuse"
    ) -> LeaseBlock:
        """Hold this session's run lease for a block: ``async with session.run_lease(...)``.

        Acquires the lease (waiting up to ``wait`` seconds for a run that holds it to
        end, else ``ProblemError`` 409 ``session-leased``), renews it every ``ttl / 3``
        seconds, sends its token with every write through this session inside the
        block, and releases it at the end. While it is held, other writes are refused
        (409): with another token or none, unless ``unleased_writes="allow"``.
        """
        self._check_open()
        target = self._transport.target(self._path + "/lease")
        return LeaseBlock(
            self, self._transport, target, ttl=ttl, wait=wait, unleased_writes=unleased_writes
        )

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> Awaitable[None]:
        """Close this session at once, as SQLiteSession's ``close()`` does: every call
        after it raises ``RuntimeError``. Its connection pools are released too; await
        the result (or use ``async with``) to wait until they are."""
        self._closed = True
        if self._owns_transport:
            return self._transport.close()
        return Closing()

    async def __aenter__(self) -> RemoteSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
