"""The hot path: the hot item routes routed straight to the items service.

FastAPI's request handling costs several times the work of the operation itself on
these routes. This router takes the common, well-formed requests and calls the items
service, as the FastAPI routes do:

- ``GET /v1/sessions/{id}/items`` with a ``limit`` (bounded reads),
- ``POST /v1/sessions/{id}/items``,
- ``DELETE /v1/sessions/{id}/items/last``.

Anything else, or anything it is unsure of (an odd session id, a query parameter it
does not know, an unbounded read), goes on to the FastAPI app, which stays the
definition of the API. A differential test checks both answer byte for byte alike.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from session_memory_client.protocol import IDEMPOTENCY_KEY, IF_MATCH, SESSION_TTL, session_id_error
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ..auth import ApiKeys
from ..items.headers import etag
from ..items.service import ItemsService, Reply
from ..problems import as_problem, problem_response
from ..storage import MAX_SEQ

__all__ = ["HotPath", "parse_item_query"]

# The session id is one path segment; the scope's path is already percent-decoded.
_ROUTE = re.compile(r"/v1/sessions/([^/]+)/items(/last)?")
_ROUTES = {
    ("GET", False): "/v1/sessions/{session_id}/items",
    ("POST", False): "/v1/sessions/{session_id}/items",
    ("DELETE", True): "/v1/sessions/{session_id}/items/last",
}
_JSON = (b"content-type", b"application/json")
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


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [_JSON, (b"content-length", str(len(reply.body)).encode())]
    if reply.revision is not None:
        headers.append((b"etag", etag(reply.revision).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class HotPath:
    """ASGI: serve the hot item routes through the items service, pass the rest to ``app``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _ROUTE.fullmatch(scope["path"]) if scope["type"] == "http" else None
        route = match and _ROUTES.get((scope["method"], match.group(2) is not None))
        query = parse_item_query(scope["query_string"]) if route else None
        if (
            match is None
            or route is None
            or query is None
            or (scope["method"] == "GET" and b"limit" not in query)
            or session_id_error(match.group(1)) is not None
        ):
            await self.app(scope, receive, send)
            return
        request_state: dict[str, Any] = scope.setdefault("state", {})
        request_state["route"] = route
        try:
            await _send_reply(send, await self._call(scope, receive, match.group(1), query))
        except ClientDisconnect:
            return
        except Exception as exc:
            where = f"{scope['method']} {scope['path']}"
            problem = as_problem(exc, self.state.metrics, where)
            await problem_response(problem, scope["path"])(scope, receive, send)

    async def _call(
        self, scope: Scope, receive: Receive, session_id: str, query: dict[bytes, int]
    ) -> Reply:
        state = self.state
        headers = Headers(scope=scope)
        keys: ApiKeys = state.api_keys
        tenant = keys.tenant_for(headers.get("authorization"))
        scope["state"]["tenant"] = tenant
        items = ItemsService(state.store, state.settings, state.metrics, state.hub)
        method = scope["method"]
        if method == "GET":
            return await items.read(
                tenant,
                session_id,
                limit=query[b"limit"],
                after=query.get(b"after"),
                before=query.get(b"before"),
            )
        if method == "POST":
            return await items.append(
                tenant,
                session_id,
                headers,
                receive,
                if_match=headers.get(IF_MATCH),
                idempotency_key=headers.get(IDEMPOTENCY_KEY),
                ttl=headers.get(SESSION_TTL),
            )
        return await items.pop(
            tenant,
            session_id,
            if_match=headers.get(IF_MATCH),
            idempotency_key=headers.get(IDEMPOTENCY_KEY),
        )
