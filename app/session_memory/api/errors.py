"""The app's exception handlers and the OpenAPI entries of its problem responses.

Every error the app raises, FastAPI's own 404/405/422 and unexpected 500s included,
becomes a ``ProblemError`` and is answered by ``problems.problem_response``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match

from ..observability import CLIENT_CLOSED_REQUEST
from ..problems import (
    PROBLEM_MEDIA_TYPE,
    HttpProblem,
    InvalidInput,
    ProblemError,
    as_problem,
    problem_response,
)
from ..services.leases import CallerGone
from ..storage import StoreError
from .schemas import Problem

__all__ = ["install_problem_handlers", "problem_responses"]

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    # Starlette's own Allow header names only the first route whose path matched;
    # a path served by several routes (GET and DELETE) needs all of them.
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def _http_problem(request: Request, exc: StarletteHTTPException) -> HttpProblem:
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    headers = dict(exc.headers) if exc.headers else {}
    if status == 405:
        headers["Allow"] = _allowed_methods(request)
    if isinstance(exc.detail, str) and exc.detail and exc.detail != phrase:
        detail = exc.detail
    elif status == 404:
        detail = f"no resource at {request.method} {request.url.path}; see /docs for the API"
    elif status == 405:
        detail = (
            f"method {request.method} is not allowed on {request.url.path}; "
            f"allowed: {headers['Allow']}"
        )
    else:
        detail = phrase
    return HttpProblem(status, phrase, detail, headers=headers or None)


def _validation_problem(exc: RequestValidationError) -> InvalidInput:
    errors = [
        {
            "loc": list(err.get("loc", ())),
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = " ".join(str(part) for part in first["loc"])
    detail = f"{where}: {first['msg']}" if where else str(first["msg"])
    return InvalidInput(detail, extra={"errors": errors})


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through problem+json."""

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(_http_problem(request, exc), request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc), request.url.path)

    async def on_other(request: Request, exc: Exception) -> Response:
        where = f"{request.method} {request.url.path}"
        return problem_response(as_problem(exc, request.app.state.metrics, where), request.url.path)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # The client went away mid-request: not an error, and nobody reads this
        # answer; the access log counts it as 499.
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(CallerGone, on_disconnect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    # Registered one by one: the handler for Exception itself also re-raises (for the
    # server's log), which a refusal must not do.
    for kind in (ProblemError, StoreError, Exception):
        app.add_exception_handler(kind, on_other)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can answer."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
