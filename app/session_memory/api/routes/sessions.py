"""Session records: list, show, clear."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BeforeValidator
from starlette.responses import Response

from ...items.numbers import ascii_digits
from ...problems import InvalidInput, SessionNotFound
from ...storage import InvalidCursorError, SessionInfo
from ..deps import HistoryDep, IfMatch, ItemsDep, SessionId, StoreDep, Tenant
from ..errors import problem_responses
from ..schemas import SessionListResponse, SessionRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _record(info: SessionInfo) -> SessionRecord:
    return SessionRecord(
        id=info.session_id,
        item_count=info.item_count,
        created_at=datetime.fromtimestamp(info.created_at, UTC),
        updated_at=datetime.fromtimestamp(info.updated_at, UTC),
        expires_at=None
        if info.expires_at is None
        else datetime.fromtimestamp(info.expires_at, UTC),
        metadata=json.loads(info.metadata) if info.metadata else {},
    )


@router.get(
    "",
    response_model=SessionListResponse,
    responses=problem_responses(401, 422, 503),
    operation_id="sessions-list",
)
async def list_sessions(
    tenant: Tenant,
    request: Request,
    history: HistoryDep,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Sessions per page."), BeforeValidator(ascii_digits)
    ] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_-]{1,2048}$",
            description="The `next_cursor` of the previous page (opaque).",
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        Query(min_length=1, max_length=256, description="Only ids that start with this."),
    ] = None,
) -> SessionListResponse:
    """List sessions, most recently updated first, in keyset pages.

    Filter by metadata with `metadata.<key>=<value>` (exact match on a top-level
    string, number or boolean; several combine with AND) and by id with `prefix`.
    """
    try:
        page = await history.list_sessions(
            tenant, limit=limit, cursor=cursor, query=request.query_params, prefix=prefix
        )
    except InvalidCursorError:
        raise InvalidInput(
            "cursor must be the next_cursor of an earlier page, unchanged",
            extra={"errors": [{"loc": ["query", "cursor"], "msg": "not a cursor"}]},
        ) from None
    return SessionListResponse(
        sessions=[_record(info) for info in page.sessions],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{session_id}",
    response_model=SessionRecord,
    responses=problem_responses(401, 404, 422, 503),
    operation_id="sessions-get",
)
async def get_session(tenant: Tenant, session_id: SessionId, store: StoreDep) -> SessionRecord:
    """Show one session's record: item count, created and updated times."""
    info = await store.get_session(tenant, session_id)
    if info is None:
        raise SessionNotFound(f"no session with id {session_id!r}")
    return _record(info)


@router.delete(
    "/{session_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 412, 422, 503),
    operation_id="sessions-clear",
)
async def clear_session(
    tenant: Tenant, session_id: SessionId, items: ItemsDep, if_match: IfMatch = None
) -> Response:
    """Delete a session's items and its record; an unknown session is a no-op."""
    reply = await items.clear(tenant, session_id, if_match=if_match)
    return Response(status_code=reply.status)
