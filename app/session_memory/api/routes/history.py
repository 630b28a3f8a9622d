"""History operations on a session: atomic replace, fork, metadata patch, live follow.

The history service does the work (``history.service``, ``history.follow``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BeforeValidator
from session_memory_client.protocol import LAST_EVENT_ID
from starlette.responses import Response, StreamingResponse

from ...history.follow import event_stream
from ...items.numbers import ascii_digits
from ...storage import MAX_SEQ
from ..deps import HistoryDep, HubDep, IdempotencyKey, IfMatch, SessionId, SessionTTL, Tenant
from ..errors import problem_responses
from ..schemas import (
    AppendResponse,
    ForkRequest,
    ForkResponse,
    ReplaceRequest,
    SessionRecord,
)
from .items import ETAG_HEADER, reply_response
from .sessions import _record

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions", tags=["history"])

JSON = "application/json"


def _body(model: Any, *media: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {m: {"schema": schema} for m in media}}}


@router.put(
    "/{session_id}/items",
    response_model=AppendResponse,
    responses={
        **problem_responses(401, 400, 409, 412, 413, 415, 422, 503),
        200: {"headers": ETAG_HEADER},
    },
    openapi_extra=_body(ReplaceRequest, JSON),
    operation_id="items-replace",
)
async def replace_items(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    history: HistoryDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
    ttl: SessionTTL = None,
) -> Response:
    """Replace the items from `from_seq` on (all when absent) in one transaction.

    The new items are numbered above the highest number the session ever gave.
    With If-Match it is a compare-and-swap.
    """
    reply = await history.replace(
        tenant,
        session_id,
        request.headers,
        request.receive,
        if_match=if_match,
        idempotency_key=idempotency_key,
        ttl=ttl,
    )
    return reply_response(reply)


@router.post(
    "/{session_id}/fork",
    status_code=201,
    response_model=ForkResponse,
    responses={
        **problem_responses(401, 400, 404, 409, 412, 413, 415, 422, 503),
        201: {"headers": ETAG_HEADER},
    },
    openapi_extra=_body(ForkRequest, JSON),
    operation_id="sessions-fork",
)
async def fork_session(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    history: HistoryDep,
    idempotency_key: IdempotencyKey = None,
    if_match: IfMatch = None,
) -> Response:
    """Copy the items through `through_seq` (all when absent) into a new session, from 1.

    409 when the new session exists, 404 when this one does not. If-Match is this
    session's ETag; the response's ETag is the new session's.
    """
    reply = await history.fork(
        tenant,
        session_id,
        request.headers,
        request.receive,
        if_match=if_match,
        idempotency_key=idempotency_key,
    )
    return reply_response(reply)


_MERGE_PATCH = "application/merge-patch+json"


@router.patch(
    "/{session_id}",
    response_model=SessionRecord,
    responses={
        **problem_responses(401, 400, 404, 412, 413, 415, 422, 503),
        200: {"headers": ETAG_HEADER},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                m: {"schema": {"type": "object", "additionalProperties": True}}
                for m in (_MERGE_PATCH, JSON)
            },
        }
    },
    operation_id="sessions-patch",
)
async def patch_session(
    tenant: Tenant,
    request: Request,
    session_id: SessionId,
    history: HistoryDep,
    if_match: IfMatch = None,
) -> Response:
    """Change the session's metadata with a JSON Merge Patch (RFC 7396); null deletes a key."""
    info = await history.patch_metadata(
        tenant, session_id, request.headers, request.receive, if_match=if_match
    )
    return Response(
        _record(info).model_dump_json().encode(),
        media_type=JSON,
        headers={"ETag": f'"{info.revision}"'},
    )


@router.get(
    "/{session_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": (
                "Server-sent events: `append` (id: the seq, data: the item as stored), "
                '`pop`, `replace` and `clear` (data: `{"revision": N}`); a comment '
                "line now and then as a heartbeat."
            ),
        },
        **problem_responses(401, 422, 503),
    },
    operation_id="sessions-events",
)
async def follow_session(
    tenant: Tenant,
    session_id: SessionId,
    history: HistoryDep,
    hub: HubDep,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_SEQ,
            description="Start after this seq (0: from the first item). Default: from now.",
        ),
        BeforeValidator(ascii_digits),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias=LAST_EVENT_ID,
            pattern=r"^[0-9]{1,18}$",
            description="Resume after this seq (what a reconnecting EventSource sends).",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow a session live: its changes as server-sent events, resumable without gaps."""
    hub.check_capacity()
    cursor = int(last_event_id) if last_event_id is not None else after
    stream = event_stream(
        history.store,
        hub,
        tenant,
        session_id,
        after=cursor,
        heartbeat=history.settings.follow_heartbeat_seconds,
        max_bytes=history.settings.max_read_page_bytes,
    )
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
