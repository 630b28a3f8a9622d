"""The items service: read, append, pop and clear a session's items, with the
conditional (If-Match), idempotent (Idempotency-Key) and expiry (Session-TTL) rules.

Its store, settings and metrics are given to it; it knows no framework. The FastAPI
routes and the hot path only authenticate, call one method and send the ``Reply``,
so both answer byte for byte alike, refusals included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from session_memory_client.protocol import SESSION_METADATA
from starlette.datastructures import Headers
from starlette.types import Receive

from ..config import Settings
from ..history.follow import Notifier
from ..history.payload import parse_metadata
from ..observability import Metrics
from ..problems import PreconditionFailed
from ..storage import ItemPage, PreconditionFailedError, SessionStore
from .headers import etag, expected_revision, idempotency_for, session_ttl
from .payload import BatchLimits, parse_item_batch_async, read_json_body, run_off_loop
from .wire import append_body, page_body, page_tail, pop_body

__all__ = ["STREAM_PAGE_ITEMS", "ItemsService", "Reply"]

# Items per store query when a read has no limit: the response streams page by page.
STREAM_PAGE_ITEMS = 500


@dataclass(slots=True)
class Reply:
    """A successful answer: status, JSON body (or a stream of it) and the ETag, if any."""

    status: int
    body: bytes = b""
    revision: int | None = None
    stream: AsyncIterator[bytes] | None = None

    @property
    def headers(self) -> dict[str, str] | None:
        return None if self.revision is None else {"ETag": etag(self.revision)}


@contextmanager
def _conditional() -> Iterator[None]:
    """A write whose If-Match no longer holds: 412, with the session's current ETag."""
    try:
        yield
    except PreconditionFailedError as exc:
        raise PreconditionFailed(
            "the session changed since you read it (its ETag no longer matches If-Match); "
            "read it again and retry",
            headers=None if exc.current is None else {"ETag": etag(exc.current)},
        ) from None


class ItemsService:
    """The item operations of one tenant's sessions; any refusal is a ``ProblemError``."""

    __slots__ = ("metrics", "notifier", "settings", "store")

    def __init__(
        self,
        store: SessionStore,
        settings: Settings,
        metrics: Metrics,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        # Told of every committed write, for live follow streams (see history.follow).
        self.notifier = notifier

    async def read(
        self,
        tenant: str,
        session_id: str,
        *,
        limit: int | None,
        after: int | None,
        before: int | None,
    ) -> Reply:
        """The latest ``limit`` items or a keyset page; without a limit, all of them, streamed.

        Every store read is bounded by ``max_read_page_bytes`` as well as by count: a
        page with a limit then holds fewer items and says ``has_more`` (its first
        item is returned whatever its size), and a stream holds one such page at a time.
        """
        max_bytes = self.settings.max_read_page_bytes
        if limit is not None:
            page = await self.store.read(
                tenant, session_id, limit=limit, after=after, before=before, max_bytes=max_bytes
            )
            self.metrics.items_read.inc(len(page.items))
            return Reply(200, page_body(page), page.revision)
        # No limit: walk forward page by page so a long history streams instead of
        # being held in memory whole. The ETag is the revision when the walk began.
        page = await self.store.read(
            tenant,
            session_id,
            limit=STREAM_PAGE_ITEMS,
            after=after or 0,
            before=before,
            max_bytes=max_bytes,
        )
        self.metrics.items_read.inc(len(page.items))
        if not page.has_more:
            return Reply(200, page_body(page), page.revision)
        return Reply(
            200, revision=page.revision, stream=self._stream(tenant, session_id, page, before)
        )

    async def _stream(
        self, tenant: str, session_id: str, page: ItemPage, before: int | None
    ) -> AsyncIterator[bytes]:
        first_seq, last_seq = page.first_seq, page.last_seq
        yield b'{"items":[' + ",".join(page.items).encode()
        while page.has_more and last_seq is not None:
            page = await self.store.read(
                tenant,
                session_id,
                limit=STREAM_PAGE_ITEMS,
                after=last_seq,
                before=before,
                max_bytes=self.settings.max_read_page_bytes,
            )
            if page.items:
                self.metrics.items_read.inc(len(page.items))
                yield b"," + ",".join(page.items).encode()
                last_seq = page.last_seq
        yield page_tail(first_seq, last_seq, False)

    async def append(
        self,
        tenant: str,
        session_id: str,
        headers: Headers,
        receive: Receive,
        *,
        if_match: str | None,
        idempotency_key: str | None,
        ttl: str | None,
    ) -> Reply:
        """Check the headers, read and check the body, then append all items or none.

        ``headers`` and ``receive`` are the request's, for its body.
        """
        revision = expected_revision(if_match)
        seconds = session_ttl(ttl)
        metadata = headers.get(SESSION_METADATA)
        if metadata is not None:
            metadata = parse_metadata(
                metadata, self.settings.max_metadata_bytes, where=SESSION_METADATA
            )
        body = await read_json_body(headers, receive, self.settings.max_body_bytes)
        limits = BatchLimits(
            max_items=self.settings.max_items_per_request,
            max_item_bytes=self.settings.max_item_bytes,
        )
        items = await parse_item_batch_async(body, limits)
        idempotency = await run_off_loop(
            len(body),
            idempotency_for,
            idempotency_key,
            method="POST",
            session_id=session_id,
            body=body if metadata is None else body + b"\0" + metadata.encode(),
            ttl=self.settings.idempotency_ttl_seconds,
        )
        with _conditional():
            result = await self.store.append(
                tenant,
                session_id,
                items,
                max_items=self.settings.max_items_per_session or None,
                idempotency=idempotency,
                expected_revision=revision,
                ttl=seconds,
                metadata=metadata,
            )
        self.metrics.items_written.inc(result.count)
        self.metrics.write_batch.observe(result.count)
        if self.notifier is not None and result.revision:
            self.notifier.publish("append", tenant, session_id, result.revision)
        return Reply(201, append_body(result), result.revision)

    async def pop(
        self, tenant: str, session_id: str, *, if_match: str | None, idempotency_key: str | None
    ) -> Reply:
        """Check the headers, then remove and return the newest item."""
        revision = expected_revision(if_match)
        idempotency = idempotency_for(
            idempotency_key,
            method="DELETE",
            session_id=session_id,
            body=b"",
            ttl=self.settings.idempotency_ttl_seconds,
        )
        with _conditional():
            item = await self.store.pop(
                tenant, session_id, idempotency=idempotency, expected_revision=revision
            )
        if self.notifier is not None and item is not None:
            self.notifier.publish("pop", tenant, session_id, 0)
        return Reply(200, pop_body(item))

    async def clear(self, tenant: str, session_id: str, *, if_match: str | None) -> Reply:
        """Check the header, then delete the session's items and its record."""
        revision = expected_revision(if_match)
        with _conditional():
            await self.store.clear(tenant, session_id, expected_revision=revision)
        if self.notifier is not None:
            self.notifier.publish("clear", tenant, session_id, 0)
        return Reply(204)
