"""The fast path: the table's hot routes answered without FastAPI's request handling.

FastAPI's request handling costs several times the work of the operation itself on
the hot routes (``Route.hot`` in ``api.table``). This router matches those routes,
parses their query by the table's own parameters and hands the request to the same
edge and service as the FastAPI routes. Anything it is unsure of (an odd session id,
a query parameter it does not know or cannot read, a hot route without the query
it needs) goes on to the FastAPI app, which then validates and answers, 422s
included. A differential test checks both answer byte for byte alike.
"""

from __future__ import annotations

import re
from typing import Any

from session_memory_client.protocol import session_id_error
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from ..problems import as_problem, problem_response
from .deps import services_of
from .edge import build_request, send_reply
from .table import ROUTES, QueryParam, Route

__all__ = ["FastPath", "parse_query"]

_MAX_DIGITS = 19


def parse_query(route: Route, query: bytes) -> dict[str, Any] | None:
    """The route's query parameters, or None to defer ("not sure").

    Only plain ASCII digits within an integer parameter's bounds, and strings that
    match their parameter's pattern as sent (no escapes to decode), each named once,
    are taken; anything else goes to FastAPI, which refuses it properly.
    """
    params: dict[str, Any] = {}
    known = _PARAMS[route.operation_id]
    if query:
        for pair in query.split(b"&"):
            name, sep, value = pair.partition(b"=")
            param = known.get(name.decode("latin-1"))
            if not sep or param is None or param.field in params:
                return None
            parsed = _value(route, param, value)
            if parsed is None:
                return None
            params[param.field] = parsed
    if route.hot is None or not route.hot <= params.keys():
        return None
    return params


def _value(route: Route, param: QueryParam, value: bytes) -> int | str | None:
    if param.kind is int:
        if not value.isdigit() or len(value) > _MAX_DIGITS:
            return None
        number = int(value)
        return number if param.ge <= number <= param.le else None
    pattern = _PATTERNS.get((route.operation_id, param.field))
    text = value.decode("latin-1")
    # The pattern is checked on the text as sent: one that needs decoding defers.
    if pattern is None or pattern.fullmatch(text) is None or b"%" in value or b"+" in value:
        return None
    if param.max_length is not None and len(text) > param.max_length:
        return None
    return text


def _compile(route: Route) -> re.Pattern[str]:
    # The session id is one path segment; the scope's path is already percent-decoded.
    return re.compile(re.escape(route.path).replace(re.escape("{session_id}"), "([^/]+)"))


_HOT = [(_compile(route), route) for route in ROUTES if route.hot is not None]
_PARAMS = {route.operation_id: {param.field: param for param in route.query} for route in ROUTES}
# The string parameters of the hot routes, each with a pattern (one without is deferred).
_PATTERNS = {
    (route.operation_id, param.field): re.compile(param.pattern)
    for route in ROUTES
    if route.hot is not None
    for param in route.query
    if param.kind is str and param.pattern is not None
}


def _match(scope: Scope) -> tuple[Route, dict[str, Any]] | None:
    if scope["type"] != "http":
        return None
    path, method = scope["path"], scope["method"]
    for pattern, route in _HOT:
        if route.method != method:
            continue
        match = pattern.fullmatch(path)
        if match is None:
            continue
        values = parse_query(route, scope["query_string"])
        if values is None or session_id_error(match.group(1)) is not None:
            return None
        values["session_id"] = match.group(1)
        return route, values
    return None


class FastPath:
    """ASGI: serve the table's hot routes through the edge, pass the rest to ``app``."""

    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = _match(scope)
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, values = matched
        scope.setdefault("state", {})["route"] = route.path
        try:
            await self._answer(scope, receive, send, route, values)
        except ClientDisconnect:
            return
        except Exception as exc:
            metrics = self.fastapi_app.state.metrics
            problem = as_problem(exc, metrics, f"{scope['method']} {scope['path']}")
            await problem_response(problem, scope["path"])(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, route: Route, values: dict[str, Any]
    ) -> None:
        services = services_of(self.fastapi_app)
        headers = Headers(scope=scope)
        tenant = services.api_keys.tenant_for(headers.get("authorization"))
        scope["state"]["tenant"] = tenant
        values["tenant"] = tenant
        typed = await build_request(route, services, values, headers.get, headers, receive, scope)
        await send_reply(send, await route.call(services, typed))
