"""The history service: replace a session's tail, fork it, and read or change its metadata.

A sibling of ``items.service``, with the same rules: If-Match is a compare-and-swap
(412 with the current ETag), Idempotency-Key replays the first outcome, the item
limits are the append limits. It knows no framework; the routes call one method.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from session_memory_client.protocol import session_id_error
from starlette.datastructures import Headers
from starlette.types import Receive

from ..config import Settings
from ..items.headers import expected_revision, idempotency_for, session_ttl
from ..items.payload import BatchLimits, read_json_body
from ..items.service import Reply, _conditional
from ..items.wire import append_body
from ..observability import Metrics
from ..problems import InvalidInput, PayloadTooLarge, SessionExists, SessionNotFound
from ..storage import SessionInfo, SessionPage
from ..storage.contract import HistoryStore
from ..storage.errors import MetadataTooLargeError, SessionExistsError, SessionMissingError
from .follow import Notifier
from .payload import parse_fork, parse_metadata, parse_replace

__all__ = ["MAX_FILTERS", "HistoryService"]

# Metadata filters one listing may combine.
MAX_FILTERS = 8


@contextmanager
def _outcomes(session_id: str) -> Iterator[None]:
    """The history errors a store raises, as the problems a client sees."""
    try:
        with _conditional():
            yield
    except SessionMissingError:
        raise SessionNotFound(f"no session with id {session_id!r}") from None
    except SessionExistsError as exc:
        raise SessionExists(f"{exc}; fork into a new id") from None
    except MetadataTooLargeError as exc:
        raise PayloadTooLarge(
            f"the merged metadata would be {exc.size} bytes; the limit is {exc.limit}",
            extra={"limit": "max_metadata_bytes", "max": exc.limit},
        ) from None


class HistoryService:
    """Replace, fork and metadata for one tenant's sessions; a refusal is a ``ProblemError``."""

    __slots__ = ("metrics", "notifier", "settings", "store")

    def __init__(
        self,
        store: HistoryStore,
        settings: Settings,
        metrics: Metrics,
        notifier: Notifier | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.notifier = notifier

    def _published(self, kind: str, tenant: str, session_id: str, revision: int | None) -> None:
        if self.notifier is not None and revision:
            self.notifier.publish(kind, tenant, session_id, revision)

    async def replace(
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
        """Replace the items from ``from_seq`` on (all when absent) in one transaction."""
        revision = expected_revision(if_match)
        seconds = session_ttl(ttl)
        body = await read_json_body(headers, receive, self.settings.max_body_bytes)
        limits = BatchLimits(
            max_items=self.settings.max_items_per_request,
            max_item_bytes=self.settings.max_item_bytes,
        )
        items, from_seq = parse_replace(body, limits)
        idempotency = idempotency_for(
            idempotency_key,
            method="PUT",
            session_id=session_id,
            body=body,
            ttl=self.settings.idempotency_ttl_seconds,
        )
        with _outcomes(session_id):
            result = await self.store.replace(
                tenant,
                session_id,
                items,
                from_seq=from_seq,
                max_items=self.settings.max_items_per_session or None,
                idempotency=idempotency,
                expected_revision=revision,
                ttl=seconds,
            )
        self.metrics.items_written.inc(result.count)
        self._published("replace", tenant, session_id, result.revision)
        return Reply(200, append_body(result), result.revision)

    async def fork(
        self,
        tenant: str,
        session_id: str,
        headers: Headers,
        receive: Receive,
        *,
        if_match: str | None,
        idempotency_key: str | None,
    ) -> Reply:
        """Copy the items through ``through_seq`` into a new session, numbered from 1."""
        revision = expected_revision(if_match)
        body = await read_json_body(headers, receive, self.settings.max_body_bytes)
        target, through_seq = parse_fork(body, check_id=session_id_error)
        idempotency = idempotency_for(
            idempotency_key,
            method="FORK",
            session_id=session_id,
            body=body,
            ttl=self.settings.idempotency_ttl_seconds,
        )
        with _outcomes(session_id):
            result = await self.store.fork(
                tenant,
                session_id,
                target,
                through_seq=through_seq,
                idempotency=idempotency,
                expected_revision=revision,
            )
        self.metrics.items_written.inc(result.count)
        self._published("append", tenant, target, result.revision)
        return Reply(
            201,
            b'{"session_id":%b,%b' % (_json_str(target), append_body(result)[1:]),
            result.revision,
        )

    async def patch_metadata(
        self,
        tenant: str,
        session_id: str,
        headers: Headers,
        receive: Receive,
        *,
        if_match: str | None,
    ) -> SessionInfo:
        """Merge a JSON Merge Patch (RFC 7396) into the session's metadata."""
        revision = expected_revision(if_match)
        limit = self.settings.max_metadata_bytes
        # The patch may hold nulls that vanish when merged: allow it some room.
        body = await read_json_body(headers, receive, min(self.settings.max_body_bytes, 4 * limit))
        patch = parse_metadata(body, 4 * limit, where="body")
        with _outcomes(session_id):
            return await self.store.patch_metadata(
                tenant, session_id, patch, max_bytes=limit, expected_revision=revision
            )

    async def list_sessions(
        self,
        tenant: str,
        *,
        limit: int,
        cursor: str | None,
        query: Mapping[str, str],
        prefix: str | None,
    ) -> SessionPage:
        """A keyset page of sessions, filtered by ``metadata.<key>=<value>`` pairs and a prefix."""
        filters = {
            name.removeprefix("metadata."): value
            for name, value in query.items()
            if name.startswith("metadata.")
        }
        if len(filters) > MAX_FILTERS:
            raise InvalidInput(
                f"at most {MAX_FILTERS} metadata filters may be combined",
                extra={"errors": [{"loc": ["query"], "msg": "too many metadata filters"}]},
            )
        for key, value in filters.items():
            if not key or len(key) > 256 or len(value) > 1024:
                raise InvalidInput(
                    "a metadata filter is metadata.<key>=<value>, the key 1 to 256 and the "
                    "value at most 1024 characters",
                    extra={"errors": [{"loc": ["query", f"metadata.{key}"], "msg": "bad filter"}]},
                )
        if not filters and not prefix:
            return await self.store.list_sessions(tenant, limit=limit, cursor=cursor)
        return await self.store.find_sessions(
            tenant, limit=limit, cursor=cursor, metadata=filters, prefix=prefix
        )


def _json_str(text: str) -> bytes:
    import json

    return json.dumps(text, ensure_ascii=False).encode()
