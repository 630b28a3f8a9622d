"""A session's items: read (with keyset paging), append, pop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from ...errors import problem_responses
from ...idempotency import KEY_PATTERN
from ...observability import Metrics
from ...payload import read_json_body
from ...preconditions import etag
from ...schemas import AppendRequest, AppendResponse, ItemPageResponse, PopResponse
from ...storage import MAX_SEQ, ItemPage, SessionStore
from ...wire import append_body, page_body, page_tail, pop_body
from ...writes import append_items, pop_item
from ..deps import IfMatch, SessionId, SessionTTL, SettingsDep, StoreDep, Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions", tags=["items"])

# Items per store query when a read has no limit: the response streams page by page.
STREAM_PAGE_ITEMS = 500

JSON = "application/json"
ETAG_HEADER = {
    "ETag": {
        "description": 'The session\'s revision, "0" when it does not exist; send it back '
        "in If-Match to write only if nothing changed meanwhile.",
        "schema": {"type": "string"},
    }
}


async def _stream_pages(
    store: SessionStore,
    tenant: str,
    session_id: str,
    page: ItemPage,
    before: int | None,
    metrics: Metrics,
) -> AsyncIterator[bytes]:
    first_seq, last_seq = page.first_seq, page.last_seq
    yield b'{"items":[' + ",".join(page.items).encode()
    while page.has_more and last_seq is not None:
        page = await store.read(
            tenant, session_id, limit=STREAM_PAGE_ITEMS, after=last_seq, before=before
        )
        if page.items:
            metrics.items_read.inc(len(page.items))
            yield b"," + ",".join(page.items).encode()
            last_seq = page.last_seq
    yield page_tail(first_seq, last_seq, False)


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description=(
            "A unique key (a UUID) for this write. A retry with the same key and request "
            "gets the first outcome back and changes nothing; the same key with another "
            "request is a 422; a retry while the first still runs is a 409."
        ),
    ),
]

Limit = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_SEQ,
        description=(
            "At most this many items. Without `after`/`before`: the latest N, oldest first. "
            "Omit for all items (the response then streams)."
        ),
    ),
]
After = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="Only items with a sequence number above this."),
]
Before = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="Only items with a sequence number below this."),
]


@router.get(
    "/{session_id}/items",
    response_model=ItemPageResponse,
    responses={**problem_responses(401, 422, 503), 200: {"headers": ETAG_HEADER}},
    operation_id="items-get",
)
async def get_items(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    store: StoreDep,
    limit: Limit = None,
    after: After = None,
    before: Before = None,
) -> Response:
    """Read a session's items, oldest first; the latest `limit` or a keyset page.

    Without cursors: the latest `limit` items. `after=S`: the first `limit` items
    above S. `before=S`: the latest `limit` items below S. Both: the first `limit`
    items strictly between them.
    """
    metrics: Metrics = request.app.state.metrics
    if limit is not None:
        page = await store.read(tenant, session_id, limit=limit, after=after, before=before)
        metrics.items_read.inc(len(page.items))
        return Response(page_body(page), media_type=JSON, headers=_etag(page.revision))
    # No limit: walk forward page by page so a long history streams instead of
    # being held in memory whole. The ETag is the revision when the walk began.
    page = await store.read(
        tenant, session_id, limit=STREAM_PAGE_ITEMS, after=after or 0, before=before
    )
    metrics.items_read.inc(len(page.items))
    if not page.has_more:
        return Response(page_body(page), media_type=JSON, headers=_etag(page.revision))
    return StreamingResponse(
        _stream_pages(store, tenant, session_id, page, before, metrics),
        media_type=JSON,
        headers=_etag(page.revision),
    )


def _etag(revision: int | None) -> dict[str, str] | None:
    return None if revision is None else {"ETag": etag(revision)}


_APPEND_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": AppendRequest.model_json_schema()}},
    }
}


@router.post(
    "/{session_id}/items",
    status_code=201,
    response_model=AppendResponse,
    responses={
        **problem_responses(401, 400, 409, 412, 413, 415, 422, 503),
        201: {"headers": ETAG_HEADER},
    },
    openapi_extra=_APPEND_BODY,
    operation_id="items-add",
)
async def add_items(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    ttl: SessionTTL = None,
) -> Response:
    """Append items atomically: all land next to each other, or none does."""
    body = await read_json_body(request.headers, request.receive, settings.max_body_bytes)
    result = await append_items(
        request.app.state,
        tenant,
        session_id,
        body,
        idempotency_key=idempotency_key,
        if_match=if_match,
        ttl=ttl,
    )
    return Response(
        append_body(result), status_code=201, media_type=JSON, headers=_etag(result.revision)
    )


@router.delete(
    "/{session_id}/items/last",
    response_model=PopResponse,
    responses=problem_responses(401, 409, 412, 422, 503),
    operation_id="items-pop",
)
async def pop_last_item(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    """Remove and return the newest item; `{"item": null}` when the session is empty."""
    item = await pop_item(
        request.app.state,
        tenant,
        session_id,
        idempotency_key=idempotency_key,
        if_match=if_match,
    )
    return Response(pop_body(item), media_type=JSON)
