"""Session records: list, show, clear."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from ...problems import SessionNotFound
from ...storage import SessionInfo
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
    limit: Annotated[int, Query(ge=1, le=1000, description="Sessions per page.")] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=r"^[0-9]{1,18}$",
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
    page = await history.list_sessions(
        tenant,
        limit=limit,
        cursor=int(cursor) if cursor is not None else None,
        query=request.query_params,
        prefix=prefix,
    )
    return SessionListResponse(
        sessions=[_record(info) for info in page.sessions],
        next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
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
