"""The FastAPI routes, each built from its entry in the route table (``api.table``).

Each endpoint's signature is made from the table: FastAPI checks the path and query
against it and documents every parameter in ``openapi.json``; the endpoint then
does what the fast path does, through ``api.edge``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BeforeValidator
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..wire.numbers import ascii_digits
from .deps import SessionId, Tenant, services_of
from .edge import build_request, reply_response
from .errors import problem_responses
from .table import ROUTES, HeaderParam, QueryParam, Route

__all__ = ["ETAG_HEADER", "table_router"]

ETAG_HEADER = {
    "ETag": {
        "description": 'The session\'s revision, "0" when it does not exist; send it back '
        "in If-Match to write only if nothing changed meanwhile.",
        "schema": {"type": "string"},
    }
}
_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_METADATA_PREFIX = "metadata."


def _query_annotation(param: QueryParam) -> Any:
    if param.kind is int:
        query = Query(ge=param.ge, le=param.le, description=param.description)
        kind: Any = int if param.default is not None else int | None
        return Annotated[kind, query, BeforeValidator(ascii_digits)]
    query = Query(
        pattern=param.pattern,
        min_length=param.min_length,
        max_length=param.max_length,
        description=param.description,
    )
    return Annotated[str | None, query]


def _header_annotation(param: HeaderParam) -> Any:
    # Documented only: the table's parser refuses a bad value, on both paths alike.
    extra = {"pattern": param.pattern} if param.pattern else None
    header = Header(alias=param.name, json_schema_extra=extra, description=param.description)
    return Annotated[str if param.required else str | None, header]


def _signature(route: Route) -> inspect.Signature:
    params = [
        inspect.Parameter("request", _KEYWORD, annotation=Request),
        inspect.Parameter("tenant", _KEYWORD, annotation=Tenant),
    ]
    if route.has_session:
        params.append(inspect.Parameter("session_id", _KEYWORD, annotation=SessionId))
    for query in route.query:
        annotation = _query_annotation(query)
        params.append(
            inspect.Parameter(query.field, _KEYWORD, annotation=annotation, default=query.default)
        )
    for header in route.headers:
        annotation = _header_annotation(header)
        default = inspect.Parameter.empty if header.required else None
        params.append(
            inspect.Parameter(header.field, _KEYWORD, annotation=annotation, default=default)
        )
    return inspect.Signature(params, return_annotation=Response)


def _endpoint(route: Route) -> Callable[..., Awaitable[Response]]:
    header_fields = {header.field: header.name for header in route.headers}

    async def endpoint(request: Request, **values: Any) -> Response:
        services = services_of(request.app)
        scope_values = {k: v for k, v in values.items() if k not in header_fields}
        if route.filters:
            scope_values["filters"] = {
                name.removeprefix(_METADATA_PREFIX): value
                for name, value in request.query_params.items()
                if name.startswith(_METADATA_PREFIX)
            }
        typed = await build_request(
            route,
            services,
            scope_values,
            request.headers.get,
            request.headers,
            request.receive,
            request.scope,
        )
        return reply_response(await route.call(services, typed))

    endpoint.__name__ = route.name
    endpoint.__doc__ = route.doc
    endpoint.__signature__ = _signature(route)  # type: ignore[attr-defined]
    return endpoint


def _responses(route: Route) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*route.problems)
    if route.etag:
        responses[route.status] = {"headers": ETAG_HEADER}
    responses.update(route.responses or {})
    return responses


def _openapi_extra(route: Route) -> dict[str, Any] | None:
    if route.body is None:
        return None
    content = {media: {"schema": route.body.schema} for media in route.body.media_types}
    return {"requestBody": {"required": True, "content": content}}


def _response_class(route: Route) -> type[Response]:
    # For the document only: the endpoint returns its response ready made.
    if route.responses and 200 in route.responses:
        return StreamingResponse
    return Response if route.status == 204 else JSONResponse


def table_router() -> APIRouter:
    """Every route of the table, registered with FastAPI in the table's order."""
    router = APIRouter()
    for route in ROUTES:
        router.add_api_route(
            route.path,
            _endpoint(route),
            methods=[route.method],
            status_code=route.status,
            response_model=route.response_model,
            response_class=_response_class(route),
            responses=_responses(route),
            openapi_extra=_openapi_extra(route),
            operation_id=route.operation_id,
            tags=[route.tag],
        )
    return router
