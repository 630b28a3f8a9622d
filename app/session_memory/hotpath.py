"""The edge of the service: a header-size bound, and the hot item routes answered
without the framework.

FastAPI costs several times the work of a bare ASGI call, which on these routes is
most of a request. This wrapper answers the common, well-formed requests itself:

- ``GET /v1/sessions/{id}/items`` with a ``limit`` (bounded reads),
- ``POST /v1/sessions/{id}/items``,
- ``DELETE /v1/sessions/{id}/items/last``.

Anything else, or anything it is unsure of (an odd session id, a query parameter it
does not know, an unbounded read), goes to the FastAPI app, which stays the
definition of the API: its routes are in the OpenAPI spec, and a test checks both
paths answer alike. Both use the same body parser, store calls and encoders.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI
from session_memory_client.protocol import session_id_error
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from .auth import ApiKeys
from .config import Settings
from .errors import PROBLEM_MEDIA_TYPE, ProblemError, problem_error_body, store_problem
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .observability import Metrics, request_id_from
from .payload import read_json_body
from .preconditions import etag
from .storage import MAX_SEQ, SessionStore, StoreError
from .wire import append_body, page_body, pop_body
from .writes import append_items, pop_item

__all__ = ["HotPath", "parse_item_query"]

logger = logging.getLogger("session_memory")

PREFIX = "/v1/sessions/"
HOT_ROUTES = {
    "GET": "/v1/sessions/{session_id}/items",
    "POST": "/v1/sessions/{session_id}/items",
    "DELETE": "/v1/sessions/{session_id}/items/last",
}
JSON_HEADERS = [(b"content-type", b"application/json")]
PROBLEM_HEADERS = [(b"content-type", PROBLEM_MEDIA_TYPE.encode())]
_KNOWN = frozenset((b"limit", b"after", b"before"))
_MAX_DIGITS = len(str(MAX_SEQ))


def parse_item_query(query: bytes) -> dict[bytes, int] | None:
    """``limit``, ``after``, ``before`` as plain in-range integers, or None to defer.

    None means "not sure": FastAPI then validates and answers, 422s included.
    """
    params: dict[bytes, int] = {}
    if not query:
        return params
    for pair in query.split(b"&"):
        name, sep, value = pair.partition(b"=")
        if (
            not sep
            or name not in _KNOWN
            or name in params
            or not value.isdigit()
            or len(value) > _MAX_DIGITS
        ):
            return None
        number = int(value)
        if number > MAX_SEQ:
            return None
        params[name] = number
    return params


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _etag(revision: int) -> tuple[bytes, bytes]:
    return (b"etag", etag(revision).encode())


class HeadersTooLarge(ProblemError):
    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"


def _headers_too_large(limit: int) -> HeadersTooLarge:
    return HeadersTooLarge(
        f"the request headers exceed {limit} bytes",
        extra={"limit": "max_header_bytes", "max": limit},
    )


class HotPath:
    """ASGI middleware: serve the hot routes directly, pass the rest to ``app``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state
        settings: Settings = app.state.settings
        self.enabled = settings.hot_path
        self.max_header = settings.max_header_bytes
        self.access_log = settings.access_log
        self.metrics: Metrics = app.state.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        request_id = request_id_from(headers.get("x-request-id"))
        state["request_id"] = request_id
        echo = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self._handle(scope, receive, send_with_id, headers, state)
        finally:
            self._record(scope, state, status, time.perf_counter() - started)

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = state.get("route") or getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.observe(scope["method"], route, status, seconds)
        if self.access_log:
            logger.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "tenant": state.get("tenant"),
                        "request_id": state["request_id"],
                    }
                },
            )

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        request_state: dict[str, Any],
    ) -> None:
        # uvicorn's httptools parser sets no bound on header size; this is the bound.
        if sum(len(name) + len(value) for name, value in scope["headers"]) > self.max_header:
            await self._problem(send, _headers_too_large(self.max_header), scope["path"])
            return
        if not self.enabled or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        rest = path[len(PREFIX) :]
        if method == "DELETE" and rest.endswith("/items/last"):
            session_id, query = rest[: -len("/items/last")], None
        elif method in ("GET", "POST") and rest.endswith("/items"):
            session_id = rest[: -len("/items")]
            query = parse_item_query(scope["query_string"]) if method == "GET" else None
            if method == "GET" and (query is None or b"limit" not in query):
                await self.app(scope, receive, send)
                return
        else:
            await self.app(scope, receive, send)
            return
        if session_id_error(session_id) is not None or "/" in session_id:
            await self.app(scope, receive, send)
            return

        state = self.state
        store: SessionStore = state.store
        request_state["route"] = HOT_ROUTES[method]
        try:
            keys: ApiKeys = state.api_keys
            tenant = keys.tenant_for(headers.get("authorization"))
            request_state["tenant"] = tenant
            if method == "GET":
                assert query is not None
                page = await store.read(
                    tenant,
                    session_id,
                    limit=query[b"limit"],
                    after=query.get(b"after"),
                    before=query.get(b"before"),
                )
                self.metrics.items_read.inc(len(page.items))
                await _respond(send, 200, page_body(page), [*JSON_HEADERS, _etag(page.revision)])
            elif method == "POST":
                settings: Settings = state.settings
                body = await read_json_body(headers, receive, settings.max_body_bytes)
                result = await append_items(
                    state,
                    tenant,
                    session_id,
                    body,
                    idempotency_key=headers.get(IDEMPOTENCY_HEADER),
                    if_match=headers.get("if-match"),
                    ttl=headers.get("session-ttl"),
                )
                response_headers = JSON_HEADERS
                if result.revision is not None:
                    response_headers = [*JSON_HEADERS, _etag(result.revision)]
                await _respond(send, 201, append_body(result), response_headers)
            else:
                item = await pop_item(
                    state,
                    tenant,
                    session_id,
                    idempotency_key=headers.get(IDEMPOTENCY_HEADER),
                    if_match=headers.get("if-match"),
                )
                await _respond(send, 200, pop_body(item), JSON_HEADERS)
        except ClientDisconnect:
            return
        except ProblemError as exc:
            await self._problem(send, exc, path)
        except StoreError as exc:
            await self._problem(send, store_problem(exc, self.metrics), path)
        except Exception as exc:
            logger.error("unhandled error on %s %s", method, path, exc_info=exc)
            await self._problem(
                send, ProblemError("the server failed to handle this request"), path
            )

    @staticmethod
    async def _problem(send: Send, exc: ProblemError, path: str) -> None:
        headers = PROBLEM_HEADERS + [
            (name.lower().encode(), value.encode()) for name, value in (exc.headers or {}).items()
        ]
        await _respond(send, exc.status, problem_error_body(exc, path), headers)
