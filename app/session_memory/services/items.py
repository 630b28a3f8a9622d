"""The items service: read, append, pop and clear a session's items.

It takes typed requests (``services.requests``) whose headers the edge has parsed,
parses and bounds item bodies off the event loop, calls the store, tells the hub,
and returns a ``Reply``. A store's refusal propagates as a ``StoreError``; the edge
maps it to a problem (``problems.as_problem``), the one mapping there is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..config import Settings
from ..observability import Metrics
from ..problems import InvalidInput
from ..replies import Reply
from ..storage import ItemPage
from ..storage.contract import HistoryStore
from ..storage.tails import ReadMark
from ..wire.headers import idempotency_for
from ..wire.incremental import parse_read_token, read_token
from ..wire.items import BatchLimits, parse_item_batch_async, run_off_loop
from ..wire.render import append_body, page_body, page_tail, pop_body, tail_body
from .conditions import required_revision
from .hub import Hub
from .requests import AppendItems, ClearSession, PopItem, ReadItems

__all__ = ["STREAM_PAGE_ITEMS", "ItemsService"]

# Items per store query when a read has no limit: the response streams page by page.
STREAM_PAGE_ITEMS = 500


class ItemsService:
    """The item operations of every tenant's sessions; a refusal raises."""

    __slots__ = ("hub", "metrics", "settings", "store")

    def __init__(self, store: HistoryStore, settings: Settings, metrics: Metrics, hub: Hub) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        # Told of every committed write, for live follow streams.
        self.hub = hub

    def batch_limits(self) -> BatchLimits:
        return BatchLimits(
            max_items=self.settings.max_items_per_request,
            max_item_bytes=self.settings.max_item_bytes,
        )

    async def _required(self, request: AppendItems | PopItem | ClearSession) -> int | None:
        return await required_revision(
            self.store, request.tenant, request.session_id, request.expected_revision
        )

    async def read(self, request: ReadItems) -> Reply:
        """The latest ``limit`` items or a keyset page; without a limit, all of them, streamed.

        Every store read is bounded by ``max_read_page_bytes`` as well as by count: a
        page with a limit then holds fewer items and says ``has_more`` (its first
        item is returned whatever its size), and a stream holds one such page at a time.
        A read with ``known`` or If-None-Match goes to ``_read_since``.
        """
        if request.known is not None or request.if_none_match is not None:
            return await self._read_since(request)
        return await self._read(request)

    async def _read(self, request: ReadItems) -> Reply:
        if request.limit is not None:
            page = await self._page(request, request.limit, request.after)
            return Reply(200, page_body(page), page.revision)
        # No limit: walk forward page by page so a long history streams instead of
        # being held in memory whole. The ETag is the revision when the walk began.
        page = await self._page(request, STREAM_PAGE_ITEMS, request.after or 0)
        if not page.has_more:
            return Reply(200, page_body(page), page.revision)
        return Reply(200, revision=page.revision, stream=self._stream(request, page))

    async def _read_since(self, request: ReadItems) -> Reply:
        """The latest items as what changed since a read token's read, and If-None-Match.

        Both are answered from one store read (``read_since``) when the read is of the
        latest items; If-None-Match on another read compares the plain read's ETag.
        """
        latest = request.after is None and request.before is None
        none_match = request.if_none_match
        known: ReadMark | None = None
        if request.known is not None:
            if not latest:
                raise InvalidInput(
                    "known asks what changed among the latest items: send it with limit "
                    "alone, not with after or before",
                    extra={"errors": [{"loc": ["query", "known"], "msg": "not with a cursor"}]},
                )
            known = parse_read_token(request.known)
        elif none_match is None or none_match.single is None or not latest or not request.limit:
            reply = await self._read(request)
            if none_match is not None and none_match.matches(reply.revision or 0):
                return Reply(304, revision=reply.revision)
            return reply
        else:
            # Its one ETag is a mark that can only come out unchanged (no items read) or
            # full: the same page as a plain read.
            known = ReadMark.revision_only(none_match.single)
        tail = await self.store.read_since(
            request.tenant,
            request.session_id,
            limit=request.limit,
            known=known,
            max_bytes=self.settings.max_read_page_bytes,
        )
        self.metrics.items_read.inc(len(tail.page.items))
        revision = tail.page.revision
        if none_match is not None and none_match.matches(revision):
            return Reply(304, revision=revision)
        if request.known is None:
            return Reply(200, page_body(tail.page), revision)
        return Reply(200, tail_body(tail, read_token(tail.mark)), revision)

    async def _page(self, request: ReadItems, limit: int, after: int | None) -> ItemPage:
        page = await self.store.read(
            request.tenant,
            request.session_id,
            limit=limit,
            after=after,
            before=request.before,
            max_bytes=self.settings.max_read_page_bytes,
        )
        self.metrics.items_read.inc(len(page.items))
        return page

    async def _stream(self, request: ReadItems, page: ItemPage) -> AsyncIterator[bytes]:
        first_seq, last_seq = page.first_seq, page.last_seq
        yield b'{"items":[' + ",".join(page.items).encode()
        while page.has_more and last_seq is not None:
            page = await self._page(request, STREAM_PAGE_ITEMS, last_seq)
            if page.items:
                yield b"," + ",".join(page.items).encode()
                last_seq = page.last_seq
        yield page_tail(first_seq, last_seq, False)

    async def append(self, request: AppendItems) -> Reply:
        """Check the body, then append all its items or none."""
        body, metadata = request.body, request.metadata
        items = await parse_item_batch_async(body, self.batch_limits())
        idempotency = await run_off_loop(
            len(body),
            idempotency_for,
            request.idempotency_key,
            method="POST",
            session_id=request.session_id,
            body=body if metadata is None else body + b"\0" + metadata.encode(),
            ttl=self.settings.idempotency_ttl_seconds,
        )
        result = await self.store.append(
            request.tenant,
            request.session_id,
            items,
            max_items=self.settings.max_items_per_session or None,
            idempotency=idempotency,
            expected_revision=await self._required(request),
            ttl=request.ttl,
            metadata=metadata,
            run_lease=request.run_lease,
        )
        self.metrics.items_written.inc(result.count)
        self.metrics.write_batch.observe(result.count)
        if result.revision:
            self.hub.publish("append", request.tenant, request.session_id, result.revision)
        return Reply(201, append_body(result), result.revision)

    async def pop(self, request: PopItem) -> Reply:
        """Remove and return the newest item."""
        idempotency = idempotency_for(
            request.idempotency_key,
            method="DELETE",
            session_id=request.session_id,
            body=b"",
            ttl=self.settings.idempotency_ttl_seconds,
        )
        item = await self.store.pop(
            request.tenant,
            request.session_id,
            idempotency=idempotency,
            expected_revision=await self._required(request),
            run_lease=request.run_lease,
        )
        if item is not None:
            self.hub.publish("pop", request.tenant, request.session_id, 0)
        return Reply(200, pop_body(item))

    async def clear(self, request: ClearSession) -> Reply:
        """Delete the session's items and its record."""
        await self.store.clear(
            request.tenant,
            request.session_id,
            expected_revision=await self._required(request),
            run_lease=request.run_lease,
        )
        self.hub.publish("clear", request.tenant, request.session_id, 0)
        return Reply(204)
