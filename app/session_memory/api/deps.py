"""Typed dependencies the FastAPI routes declare: the services, the tenant, the session id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from session_memory_client.protocol import (
    MAX_SESSION_ID_LENGTH,
    SESSION_ID_PATTERN,
    session_id_error,
)

from ..problems import InvalidInput, ServiceUnavailable
from ..services import Services

__all__ = ["SessionId", "Tenant", "services_of"]


def services_of(app: Any) -> Services:
    """The app's services, built once by its lifespan (503 before it has run)."""
    services: Services | None = getattr(app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("the service is starting; retry shortly")
    return services


_bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer <key>`.")


def get_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The tenant the request's API key belongs to ('' when the service runs open)."""
    tenant = services_of(request.app).api_keys.tenant_for(request.headers.get("authorization"))
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


Tenant = Annotated[str, Depends(get_tenant)]
SessionId = Annotated[str, Depends(valid_session_id)]
