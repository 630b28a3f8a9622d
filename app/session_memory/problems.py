"""RFC 9457 problem details: every problem the service answers, and their one renderer.

    ProblemError                      500 internal-error
    ├── MalformedRequest              400 (not HTTP/1.1; answered by the server protocol)
    ├── MalformedBody                 400
    ├── Unauthorized                  401
    ├── SessionNotFound               404
    ├── LeaseNotHeld                  404 (no run holds the session's lease)
    ├── IdempotencyKeyInFlight        409
    ├── SessionExists                 409 (a fork's target)
    ├── SessionLeased                 409 (another run holds the session's lease)
    ├── LeaseLost                     409 (the run lease token is not the lease held)
    ├── RequestTimeout                408 (the server protocol)
    ├── PreconditionFailed            412
    ├── PayloadTooLarge               413
    ├── UnsupportedMediaType          415
    ├── InvalidInput                  422
    ├── IdempotencyKeyReused          422
    ├── MisdirectedRequest            421 (a Host this service does not answer for)
    ├── HeadersTooLarge               431
    ├── ServiceUnavailable            503
    ├── TooManyConnections            503 (the server protocol's connection cap)
    ├── TooManyStreams                503 (the cap on live follow streams)
    └── HttpProblem                   any (the framework's own 404, 405, ...: about:blank)

Each ``type`` is a ``session_memory_client.protocol.ProblemType``. ``problem_response``
is the one renderer: the FastAPI handlers, the middleware and the hot path all answer
through it, so a problem reads the same whichever part found it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, ClassVar

import orjson
from session_memory_client.protocol import PROBLEM_MEDIA_TYPE, ProblemType
from starlette.responses import Response

from .observability import Metrics
from .replies import etag
from .storage import (
    ForkTooLargeError,
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    InvalidCursorError,
    LeaseLostError,
    MetadataTooLargeError,
    PreconditionFailedError,
    SessionExistsError,
    SessionFullError,
    SessionLeasedError,
    SessionMissingError,
    StoreError,
    StoreUnavailableError,
    TooManySessionsError,
)

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "HeadersTooLarge",
    "HttpProblem",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyReused",
    "InvalidInput",
    "LeaseLost",
    "LeaseNotHeld",
    "MalformedBody",
    "MalformedRequest",
    "MisdirectedRequest",
    "PayloadTooLarge",
    "PreconditionFailed",
    "ProblemError",
    "RequestTimeout",
    "ServiceUnavailable",
    "SessionExists",
    "SessionLeased",
    "SessionNotFound",
    "TooManyConnections",
    "TooManyStreams",
    "Unauthorized",
    "UnsupportedMediaType",
    "as_problem",
    "problem_body",
    "problem_response",
]

logger = logging.getLogger("session_memory")


class ProblemError(Exception):
    """An error the service answers with a problem+json body."""

    status: int = 500
    type: ClassVar[str] = ProblemType.INTERNAL_ERROR
    title: str = "Internal server error"

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


class MalformedRequest(ProblemError):
    status = 400
    type = ProblemType.MALFORMED_REQUEST
    title = "Malformed request"


class RequestTimeout(ProblemError):
    status = 408
    type = ProblemType.REQUEST_TIMEOUT
    title = "Request timeout"


class MisdirectedRequest(ProblemError):
    status = 421
    type = ProblemType.MISDIRECTED_REQUEST
    title = "Misdirected request"


class TooManyConnections(ProblemError):
    status = 503
    type = ProblemType.TOO_MANY_CONNECTIONS
    title = "Too many connections"


class MalformedBody(ProblemError):
    status = 400
    type = ProblemType.MALFORMED_BODY
    title = "Malformed request body"


class Unauthorized(ProblemError):
    status = 401
    type = ProblemType.UNAUTHORIZED
    title = "Unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "send a valid API key as 'Authorization: Bearer <key>' (the client: "
            "RemoteSession(..., api_key=...); the command line: --api-key or "
            "SESSION_MEMORY_API_KEY; the browser at /ui: the API key box at the top)",
            headers={"WWW-Authenticate": 'Bearer realm="session-memory"'},
        )


class SessionNotFound(ProblemError):
    status = 404
    type = ProblemType.SESSION_NOT_FOUND
    title = "Session not found"


class LeaseNotHeld(ProblemError):
    status = 404
    type = ProblemType.LEASE_NOT_HELD
    title = "Lease not held"


class SessionExists(ProblemError):
    status = 409
    type = ProblemType.SESSION_EXISTS
    title = "Session exists"


class SessionLeased(ProblemError):
    status = 409
    type = ProblemType.SESSION_LEASED
    title = "Session leased"


class LeaseLost(ProblemError):
    status = 409
    type = ProblemType.LEASE_LOST
    title = "Lease lost"


class TooManyStreams(ProblemError):
    status = 503
    type = ProblemType.TOO_MANY_STREAMS
    title = "Too many streams"


class IdempotencyKeyInFlight(ProblemError):
    status = 409
    type = ProblemType.IDEMPOTENCY_KEY_IN_FLIGHT
    title = "Request still in flight"


class PreconditionFailed(ProblemError):
    status = 412
    type = ProblemType.PRECONDITION_FAILED
    title = "Precondition failed"


class PayloadTooLarge(ProblemError):
    status = 413
    type = ProblemType.PAYLOAD_TOO_LARGE
    title = "Request body too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    type = ProblemType.UNSUPPORTED_MEDIA_TYPE
    title = "Unsupported media type"


class InvalidInput(ProblemError):
    status = 422
    type = ProblemType.INVALID_INPUT
    title = "Invalid input"


class IdempotencyKeyReused(ProblemError):
    status = 422
    type = ProblemType.IDEMPOTENCY_KEY_REUSED
    title = "Idempotency key reused"


class HeadersTooLarge(ProblemError):
    status = 431
    type = ProblemType.HEADERS_TOO_LARGE
    title = "Request header fields too large"


class ServiceUnavailable(ProblemError):
    status = 503
    type = ProblemType.STORE_UNAVAILABLE
    title = "Storage unavailable"


class HttpProblem(ProblemError):
    """An HTTP error the framework raised (no route, wrong method): ``about:blank``."""

    type = "about:blank"

    def __init__(
        self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail, headers=headers)
        self.status = status
        self.title = title


def problem_body(exc: ProblemError, instance: str) -> bytes:
    """The one rendering of a problem's JSON body."""
    body: dict[str, Any] = {
        "type": exc.type,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        "instance": instance,
    }
    body.update(exc.extra)
    return orjson.dumps(body)


def problem_response(exc: ProblemError, instance: str) -> Response:
    """A problem as a response: its body, media type and headers."""
    return Response(
        problem_body(exc, instance),
        status_code=exc.status,
        headers=exc.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _store_problem(exc: StoreError) -> ProblemError:
    """The problem a client sees for a store error: the one mapping there is.

    An outage's cause is logged, not sent.
    """
    for kind, render in _STORE_PROBLEMS:
        if isinstance(exc, kind):
            return render(exc)
    return ProblemError("the server failed to handle this request")


def _session_full(exc: Any) -> ProblemError:
    kept = (
        f" ({exc.kept} of them popped items kept until their Idempotency-Key expires)"
        if exc.kept
        else ""
    )
    return InvalidInput(
        f"the session holds {exc.count} items{kept} and may hold at most {exc.limit}; "
        f"adding {exc.adding} would pass that. Nothing was stored.",
        extra={"limit": "max_items_per_session", "max": exc.limit},
    )


def _fork_too_large(exc: Any) -> ProblemError:
    return InvalidInput(
        f"{exc}; fork through an earlier seq (through_seq), or raise the limit. Nothing was made.",
        extra={"limit": f"max_fork_{exc.what}", "max": exc.limit},
    )


def _precondition_failed(exc: Any) -> ProblemError:
    return PreconditionFailed(
        "the session changed since you read it (its ETag no longer matches If-Match); "
        "read it again and retry",
        headers=None if exc.current is None else {"ETag": etag(exc.current)},
    )


def _session_leased(exc: Any) -> ProblemError:
    retry = exc.retry_after
    return SessionLeased(
        "another run holds this session's lease; wait for it to end (acquire with a "
        "wait), or write with its Run-Lease token",
        headers=None if retry is None else {"Retry-After": str(max(1, math.ceil(retry)))},
    )


_STORE_PROBLEMS: tuple[tuple[type[StoreError], Callable[[Any], ProblemError]], ...] = (
    (SessionFullError, _session_full),
    (
        TooManySessionsError,
        lambda exc: InvalidInput(
            f"this tenant holds {exc.limit} sessions, the most it may hold; clear one "
            "before starting another. Nothing was stored.",
            extra={"limit": "max_sessions_per_tenant", "max": exc.limit},
        ),
    ),
    (ForkTooLargeError, _fork_too_large),
    (PreconditionFailedError, _precondition_failed),
    (
        IdempotencyMismatchError,
        lambda _: IdempotencyKeyReused(
            "this Idempotency-Key was already used for a different request; use a new key "
            "for a new request"
        ),
    ),
    (
        IdempotencyInFlightError,
        lambda _: IdempotencyKeyInFlight(
            "a request with this Idempotency-Key is still running; retry after it finishes"
        ),
    ),
    (SessionMissingError, lambda exc: SessionNotFound(str(exc))),
    (SessionLeasedError, _session_leased),
    (
        LeaseLostError,
        lambda exc: LeaseLost(
            f"{exc}: it expired, was released, or another run's lease followed it. "
            "Nothing was done; the run must stop writing (or acquire the lease anew, "
            "read the session, and go on from there)"
        ),
    ),
    (SessionExistsError, lambda exc: SessionExists(f"{exc}; fork into a new id")),
    (
        MetadataTooLargeError,
        lambda exc: PayloadTooLarge(
            f"the merged metadata would be {exc.size} bytes; the limit is {exc.limit}",
            extra={"limit": "max_metadata_bytes", "max": exc.limit},
        ),
    ),
    (
        InvalidCursorError,
        lambda _: InvalidInput(
            "cursor must be the next_cursor of an earlier page, unchanged",
            extra={"errors": [{"loc": ["query", "cursor"], "msg": "not a cursor"}]},
        ),
    ),
    (
        StoreUnavailableError,
        lambda _: ServiceUnavailable("the database did not answer; retry shortly"),
    ),
)


def as_problem(exc: Exception, metrics: Metrics, where: str) -> ProblemError:
    """Any exception a request raised, as the problem to answer (``where``: for the log)."""
    if isinstance(exc, ProblemError):
        return exc
    if isinstance(exc, StoreError):
        metrics.store_error(exc)
        return _store_problem(exc)
    logger.error("unhandled error on %s", where, exc_info=exc)
    return ProblemError("the server failed to handle this request")
