"""Typed dependencies the route handlers declare."""

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
from ..config import Settings
from ..errors import InvalidInput
from ..preconditions import IF_MATCH_PATTERN
from ..storage import SessionStore

__all__ = ["IfMatch", "SessionId", "SessionTTL", "SettingsDep", "StoreDep", "Tenant"]


def get_store(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


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


IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        pattern=IF_MATCH_PATTERN,
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
        pattern=r"^\s*[0-9]{1,9}\s*$",
        description=(
            "Seconds the session lives after each write (0: never expires). Kept for the "
            "session until changed; without it the service default applies."
        ),
    ),
]

StoreDep = Annotated[SessionStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Tenant = Annotated[str, Depends(get_tenant)]
SessionId = Annotated[str, Depends(valid_session_id)]
