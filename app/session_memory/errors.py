"""RFC 9457 problem details: the service's exception tree and its handlers.

    ProblemError
    ├── MalformedBody            400
    ├── PayloadTooLarge          413
    ├── UnsupportedMediaType     415
    ├── IdempotencyKeyInFlight   409
    ├── PreconditionFailed       412
    ├── InvalidInput             422
    ├── IdempotencyKeyReused     422
    └── ServiceUnavailable       503

Every error response, FastAPI's own 404/405/422 and unexpected 500s included, is
``application/problem+json`` with ``type``, ``title``, ``status`` and ``detail``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from session_memory_client.protocol import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_PREFIX
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from .observability import Metrics
from .storage import (
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    PreconditionFailedError,
    SessionFullError,
    StoreError,
    StoreUnavailableError,
)

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InvalidInput",
    "MalformedBody",
    "PayloadTooLarge",
    "PreconditionFailed",
    "Problem",
    "ProblemError",
    "ServiceUnavailable",
    "UnsupportedMediaType",
    "install_problem_handlers",
    "problem_body",
    "problem_error_body",
    "problem_response",
    "problem_responses",
    "store_problem",
]


TYPE_PREFIX = PROBLEM_TYPE_PREFIX

logger = logging.getLogger("session_memory")


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class ProblemError(Exception):
    """An error the service answers with a problem+json body."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}


class MalformedBody(ProblemError):
    status = 400
    slug = "malformed-body"
    title = "Malformed request body"


class PayloadTooLarge(ProblemError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class InvalidInput(ProblemError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"


class IdempotencyKeyReused(ProblemError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency key reused"


class IdempotencyKeyInFlight(ProblemError):
    status = 409
    slug = "idempotency-key-in-flight"
    title = "Request still in flight"


class PreconditionFailed(ProblemError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class ServiceUnavailable(ProblemError):
    status = 503
    slug = "store-unavailable"
    title = "Storage unavailable"


def problem_response(
    request: Request,
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body = problem_body(
        status=status,
        type_=type_,
        title=title,
        detail=detail,
        instance=request.url.path,
        extra=extra,
    )
    return Response(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_body(
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    instance: str,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON of one problem details object."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if extra:
        body.update(extra)
    return orjson.dumps(body)


def problem_error_body(exc: ProblemError, instance: str) -> bytes:
    """The JSON of the problem a ``ProblemError`` stands for."""
    return problem_body(
        status=exc.status,
        type_=TYPE_PREFIX + exc.slug,
        title=exc.title,
        detail=exc.detail,
        instance=instance,
        extra=exc.extra,
    )


def _from_problem_error(request: Request, exc: ProblemError) -> Response:
    return Response(
        problem_error_body(exc, request.url.path),
        status_code=exc.status,
        headers=exc.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _http_detail(request: Request, status: int, detail: Any) -> str:
    phrase = HTTPStatus(status).phrase
    if isinstance(detail, str) and detail and detail != phrase:
        return detail
    if status == 404:
        return f"no resource at {request.method} {request.url.path}; see /docs for the API"
    if status == 405:
        return (
            f"method {request.method} is not allowed on {request.url.path}; "
            f"allowed: {_allowed_methods(request)}"
        )
    return phrase


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


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through problem+json."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return _from_problem_error(request, exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "Error"
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return problem_response(
            request,
            status=exc.status_code,
            type_="about:blank",
            title=phrase,
            detail=_http_detail(request, exc.status_code, exc.detail),
            headers=headers or None,
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
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
        return problem_response(
            request,
            status=422,
            type_=TYPE_PREFIX + InvalidInput.slug,
            title=InvalidInput.title,
            detail=f"{where}: {first['msg']}" if where else str(first["msg"]),
            extra={"errors": errors},
        )

    async def on_store_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        return _from_problem_error(request, store_problem(exc, request.app.state.metrics))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _from_problem_error(
            request, ProblemError("the server failed to handle this request")
        )

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StoreError, on_store_error)
    app.add_exception_handler(Exception, on_unexpected)


def store_problem(exc: StoreError, metrics: Metrics | None = None) -> ProblemError:
    """The problem a client sees for a store error (an outage's cause is logged, not sent)."""
    if metrics is not None and isinstance(exc, StoreUnavailableError):
        metrics.store_errors.labels("unavailable").inc()
    elif metrics is not None and type(exc) is StoreError:
        metrics.store_errors.labels("other").inc()
    if isinstance(exc, SessionFullError):
        return InvalidInput(
            f"the session holds {exc.count} items and may hold at most {exc.limit}; "
            f"adding {exc.adding} would pass that. Nothing was stored.",
            extra={"limit": "max_items_per_session", "max": exc.limit},
        )
    if isinstance(exc, IdempotencyMismatchError):
        return IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key "
            "for a new request"
        )
    if isinstance(exc, IdempotencyInFlightError):
        return IdempotencyKeyInFlight(
            "a request with this Idempotency-Key is still running; retry after it finishes"
        )
    if isinstance(exc, PreconditionFailedError):
        return PreconditionFailed(
            "the session changed since you read it (its ETag no longer matches If-Match); "
            "read it again and retry",
            headers=None if exc.current is None else {"ETag": f'"{exc.current}"'},
        )
    if isinstance(exc, StoreUnavailableError):
        logger.warning("store unavailable: %s", exc)
        return ServiceUnavailable("the database did not answer; retry shortly")
    logger.error("store error: %s", exc, exc_info=exc)
    return ProblemError("the server failed to handle this request")


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
