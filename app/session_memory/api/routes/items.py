"""A session's items: read (with keyset paging), append, pop. The items service does the work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator
from starlette.responses import Response, StreamingResponse

from ...items.numbers import ascii_digits
from ...items.service import Reply
from ...storage import MAX_SEQ
from ..deps import IdempotencyKey, IfMatch, ItemsDep, SessionId, SessionTTL, Tenant
from ..errors import problem_responses
from ..schemas import AppendRequest, AppendResponse, ItemPageResponse, PopResponse

__all__ = ["reply_response", "router"]

router = APIRouter(prefix="/v1/sessions", tags=["items"])

JSON = "application/json"
ETAG_HEADER = {
    "ETag": {
        "description": 'The session\'s revision, "0" when it does not exist; send it back '
        "in If-Match to write only if nothing changed meanwhile.",
        "schema": {"type": "string"},
    }
}


def reply_response(reply: Reply) -> Response:
    """The items service's reply as a response (the one rendering for every items route)."""
    if reply.stream is not None:
        return StreamingResponse(reply.stream, media_type=JSON, headers=reply.headers)
    return Response(reply.body, status_code=reply.status, media_type=JSON, headers=reply.headers)


Limit = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_SEQ,
        description=(
            "At most this many items. Without `after`/`before`: the latest N, oldest first. "
            "A page also stops before passing the server's max_read_page_bytes (has_more "
            "then says there is more; its first item comes whatever its size). "
            "Omit for all items (the response then streams)."
        ),
    ),
    BeforeValidator(ascii_digits),
]
After = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="Only items with a sequence number above this."),
    BeforeValidator(ascii_digits),
]
Before = Annotated[
    int | None,
    Query(ge=0, le=MAX_SEQ, description="Only items with a sequence number below this."),
    BeforeValidator(ascii_digits),
]


@router.get(
    "/{session_id}/items",
    response_model=ItemPageResponse,
    responses={**problem_responses(401, 422, 503), 200: {"headers": ETAG_HEADER}},
    operation_id="items-get",
)
async def get_items(
    tenant: Tenant,
    session_id: SessionId,
    items: ItemsDep,
    limit: Limit = None,
    after: After = None,
    before: Before = None,
) -> Response:
    """Read a session's items, oldest first; the latest `limit` or a keyset page.

    Without cursors: the latest `limit` items. `after=S`: the first `limit` items
    above S. `before=S`: the latest `limit` items below S. Both: the first `limit`
    items strictly between them.
    """
    return reply_response(
        await items.read(tenant, session_id, limit=limit, after=after, before=before)
    )


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
    items: ItemsDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    ttl: SessionTTL = None,
) -> Response:
    """Append items atomically: all land next to each other, or none does."""
    reply = await items.append(
        tenant,
        session_id,
        request.headers,
        request.receive,
        if_match=if_match,
        idempotency_key=idempotency_key,
        ttl=ttl,
    )
    return reply_response(reply)


@router.delete(
    "/{session_id}/items/last",
    response_model=PopResponse,
    responses=problem_responses(401, 409, 412, 422, 503),
    operation_id="items-pop",
)
async def pop_last_item(
    tenant: Tenant,
    session_id: SessionId,
    items: ItemsDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    """Remove and return the newest item; `{"item": null}` when the session is empty."""
    reply = await items.pop(tenant, session_id, if_match=if_match, idempotency_key=idempotency_key)
    return reply_response(reply)
