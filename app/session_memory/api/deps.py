"""Typed dependencies the route handlers declare, and the headers they document."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from session_memory_client.protocol import (
    MAX_SESSION_ID_LENGTH,
    SESSION_ID_PATTERN,
    session_id_error,
)

from ..auth import ApiKeys
from ..history.follow import Hub
from ..history.service import HistoryService
from ..items.headers import IDEMPOTENCY_KEY_PATTERN, IF_MATCH_PATTERN, SESSION_TTL_PATTERN
from ..items.service import ItemsService
from ..problems import InvalidInput
from ..storage import SessionStore

__all__ = [
    "HistoryDep",
    "HubDep",
    "IdempotencyKey",
    "IfMatch",
    "ItemsDep",
    "SessionId",
    "SessionMetadata",
    "SessionTTL",
    "StoreDep",
    "Tenant",
]


def get_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.store
    return store


def get_items(request: Request) -> ItemsService:
    state = request.app.state
    return ItemsService(state.store, state.settings, state.metrics, state.hub)


def get_history(request: Request) -> HistoryService:
    state = request.app.state
    return HistoryService(state.store, state.settings, state.metrics, state.hub)


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


_bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer <key>`.")


def get_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant the request's API key belongs to ('' when the service runs open)."""
    keys: ApiKeys = request.app.state.api_keys
    tenant = keys.tenant_for(request.headers.get("authorization"))
    request.state.tenant = tenant  # for the request's log line
    return tenant


def valid_session_id(
    session_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_SESSION_ID_LENGTH,
            pattern=SESSION_ID_PATTERN,
            description=(
                "1 to 256 Unicode characters; control characters, surrogates, line "
                "separators and '/' are refused. Percent-encode it in the path."
            ),
        ),
    ],
) -> str:
    error = session_id_error(session_id)
    if error is not None:
        raise InvalidInput(error, extra={"errors": [{"loc": ["path", "session_id"], "msg": error}]})
    return session_id


# The item headers are declared here for the OpenAPI spec only (their pattern is not
# enforced here): the items service parses them, so both paths refuse them alike.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        description=(
            "A unique key (a UUID) for this write. A retry with the same key and request "
            "gets the first outcome back and changes nothing; the same key with another "
            "request is a 422; a retry while the first still runs is a 409."
        ),
    ),
]

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        json_schema_extra={"pattern": IF_MATCH_PATTERN},
        description=(
            "Write only if the session is still at this ETag (as a read returned it), "
            'or `*` for "only if the session exists"; otherwise 412.'
        ),
    ),
]

SessionTTL = Annotated[
    str | None,
    Header(
        alias="Session-TTL",
        json_schema_extra={"pattern": SESSION_TTL_PATTERN},
        description=(
            "Seconds the session lives after each write (0: never expires). Kept for the "
            "session until changed; without it the service default applies."
        ),
    ),
]

SessionMetadata = Annotated[
    str | None,
    Header(
        alias="Session-Metadata",
        description=(
            "A JSON object (at most `max_metadata_bytes`) the session starts with when this "
            "append creates it; ignored when the session exists (change it with PATCH)."
        ),
    ),
]

StoreDep = Annotated[SessionStore, Depends(get_store)]
HistoryDep = Annotated[HistoryService, Depends(get_history)]
HubDep = Annotated[Hub, Depends(get_hub)]
ItemsDep = Annotated[ItemsService, Depends(get_items)]
Tenant = Annotated[str, Depends(get_tenant)]
SessionId = Annotated[str, Depends(valid_session_id)]
