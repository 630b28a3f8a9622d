"""The history service: replace a session's tail, fork it, read and change its record,
list sessions, and follow a session live.

A sibling of ``services.items``, with the same rules: If-Match is a compare-and-swap
(the store refuses, the edge answers 412 with the current ETag), Idempotency-Key
replays the first outcome, the item limits are the append limits.
"""

from __future__ import annotations

import json

from session_memory_client.protocol import session_id_error

from ..config import Settings
from ..observability import Metrics
from ..problems import InvalidInput, ServiceUnavailable, SessionNotFound
from ..replies import Reply
from ..storage.contract import HistoryStore
from ..storage.errors import PreconditionFailedError, check_revision
from ..wire.headers import idempotency_for
from ..wire.history import CLEAR_METADATA, parse_fork, parse_replace, parse_session_patch
from ..wire.items import run_off_loop
from ..wire.render import append_body, fork_body, session_body, session_list_body
from .conditions import required_revision
from .events import SharedReads, event_stream
from .hub import Hub
from .items import ItemsService
from .requests import (
    FollowSession,
    ForkSession,
    GetSession,
    ListSessions,
    PatchSession,
    ReplaceItems,
)

__all__ = ["MAX_FILTERS", "HistoryService"]

# Tries of a metadata clear (no If-Match) racing other writes to the session.
_CLEAR_TRIES = 5
# Metadata filters one listing may combine.
MAX_FILTERS = 8

_EVENT_STREAM = "text/event-stream"
_STREAM_HEADERS = (("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"))


class HistoryService:
    """Replace, fork, records, listings and follow; a refusal raises."""

    __slots__ = ("hub", "items", "metrics", "reads", "settings", "store")

    def __init__(self, store: HistoryStore, settings: Settings, metrics: Metrics, hub: Hub) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.hub = hub
        self.items = ItemsService(store, settings, metrics, hub)
        self.reads = SharedReads(store, settings.max_read_page_bytes)

    async def _required(self, request: ReplaceItems | ForkSession | PatchSession) -> int | None:
        return await required_revision(
            self.store, request.tenant, request.session_id, request.expected_revision
        )

    def _published(self, kind: str, tenant: str, session_id: str, revision: int | None) -> None:
        if revision:
            self.hub.publish(kind, tenant, session_id, revision)

    async def replace(self, request: ReplaceItems) -> Reply:
        """Replace the items from ``from_seq`` on (all when absent) in one transaction."""
        items, from_seq = await run_off_loop(
            len(request.body), parse_replace, request.body, self.items.batch_limits()
        )
        idempotency = idempotency_for(
            request.idempotency_key,
            method="PUT",
            session_id=request.session_id,
            body=request.body,
            ttl=self.settings.idempotency_ttl_seconds,
        )
        result = await self.store.replace(
            request.tenant,
            request.session_id,
            items,
            from_seq=from_seq,
            max_items=self.settings.max_items_per_session or None,
            idempotency=idempotency,
            expected_revision=await self._required(request),
            ttl=request.ttl,
            run_lease=request.run_lease,
        )
        self.metrics.items_written.inc(result.count)
        self._published("replace", request.tenant, request.session_id, result.revision)
        return Reply(200, append_body(result), result.revision)

    async def fork(self, request: ForkSession) -> Reply:
        """Copy the items through ``through_seq`` into a new session, numbered from 1."""
        target, through_seq = parse_fork(request.body, check_id=session_id_error)
        idempotency = idempotency_for(
            request.idempotency_key,
            method="FORK",
            session_id=request.session_id,
            body=request.body,
            ttl=self.settings.idempotency_ttl_seconds,
        )
        result = await self.store.fork(
            request.tenant,
            request.session_id,
            target,
            through_seq=through_seq,
            idempotency=idempotency,
            expected_revision=await self._required(request),
            run_lease=request.run_lease,
        )
        self.metrics.items_written.inc(result.count)
        self._published("append", request.tenant, target, result.revision)
        return Reply(201, fork_body(target, result), result.revision)

    async def patch(self, request: PatchSession) -> Reply:
        """Apply a JSON Merge Patch (RFC 7396) to the session's record; only its
        ``metadata`` can change."""
        limit = self.settings.max_metadata_bytes
        # The patch may hold nulls that vanish when merged: allow it some room.
        patch = parse_session_patch(request.body, 4 * limit)
        tenant, session_id = request.tenant, request.session_id
        for _ in range(_CLEAR_TRIES):
            expected, text = await self._required(request), patch
            if patch is None or patch == CLEAR_METADATA:
                info = await self.store.get_session(tenant, session_id)
                if info is None:
                    raise SessionNotFound(f"no session with id {session_id!r}")
                if patch is None:
                    check_revision(expected, info.revision)
                    return Reply(200, session_body(info), info.revision)
                # Every key set to null, on the revision those keys were read at.
                keys = json.loads(info.metadata or "{}")
                text = json.dumps(dict.fromkeys(keys), ensure_ascii=False)
                expected = info.revision if expected is None else expected
            assert text is not None
            try:
                info = await self.store.patch_metadata(
                    tenant,
                    session_id,
                    text,
                    max_bytes=limit,
                    expected_revision=expected,
                    run_lease=request.run_lease,
                )
            except PreconditionFailedError:
                if request.expected_revision is not None:
                    raise
                continue  # changed between the read and the clear: read again
            return Reply(200, session_body(info), info.revision)
        raise ServiceUnavailable("the session kept changing; retry the patch")

    async def get(self, request: GetSession) -> Reply:
        """One session's record."""
        info = await self.store.get_session(request.tenant, request.session_id)
        if info is None:
            raise SessionNotFound(f"no session with id {request.session_id!r}")
        return Reply(200, session_body(info))

    async def list(self, request: ListSessions) -> Reply:
        """A keyset page of sessions, filtered by metadata pairs and an id prefix."""
        filters = request.filters
        if len(filters) > MAX_FILTERS:
            raise InvalidInput(
                f"at most {MAX_FILTERS} metadata filters may be combined",
                extra={"errors": [{"loc": ["query"], "msg": "too many metadata filters"}]},
            )
        if request.prefix is not None and "\x00" in request.prefix:
            raise InvalidInput(
                "prefix may not hold U+0000",
                extra={"errors": [{"loc": ["query", "prefix"], "msg": "holds U+0000"}]},
            )
        for key, value in filters.items():
            if not key or len(key) > 256 or len(value) > 1024 or "\x00" in key + value:
                raise InvalidInput(
                    "a metadata filter is metadata.<key>=<value>, the key 1 to 256 and the "
                    "value at most 1024 characters, neither holding U+0000",
                    extra={"errors": [{"loc": ["query", f"metadata.{key}"], "msg": "bad filter"}]},
                )
        tenant, limit, cursor = request.tenant, request.limit, request.cursor
        if not filters and not request.prefix:
            page = await self.store.list_sessions(tenant, limit=limit, cursor=cursor)
        else:
            page = await self.store.find_sessions(
                tenant, limit=limit, cursor=cursor, metadata=filters, prefix=request.prefix
            )
        return Reply(200, session_list_body(page))

    async def follow(self, request: FollowSession) -> Reply:
        """The session's changes as a stream of server-sent events, until shutdown."""
        self.hub.check_capacity(request.tenant)
        after = request.last_event_id if request.last_event_id is not None else request.after
        stream = event_stream(
            self.reads,
            self.hub,
            request.tenant,
            request.session_id,
            after=after,
            heartbeat=self.settings.follow_heartbeat_seconds,
        )
        return Reply(200, stream=stream, media_type=_EVENT_STREAM, extra_headers=_STREAM_HEADERS)
