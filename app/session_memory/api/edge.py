"""The edge of the API: what both routers share between HTTP and the services.

Authentication, the bounded reading of a body, the building of a route's typed
request, and the sending of a service's ``Reply``. The fast path
(``api.fast_path``) and the FastAPI routes (``api.register``) both go through
these, so both answer byte for byte alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..peer import caller_gone
from ..problems import PayloadTooLarge, UnsupportedMediaType
from ..replies import Reply
from ..services import Services
from ..wire.numbers import is_ascii_digits
from .table import Route

__all__ = ["build_request", "read_json_body", "reply_response", "send_reply"]


async def read_json_body(headers: Headers, receive: Receive, max_bytes: int) -> bytes:
    """Read a JSON body, refusing other media types and anything over ``max_bytes``.

    The size is checked against Content-Length up front and again while receiving,
    so a chunked upload cannot grow past the limit in memory.
    """
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"send the body as application/json (got {media_type or 'no Content-Type'})"
        )
    too_large = PayloadTooLarge(
        f"the request body exceeds the limit of {max_bytes} bytes",
        extra={"limit": "max_body_bytes", "max": max_bytes},
    )
    declared = headers.get("content-length")
    if declared is not None and is_ascii_digits(declared) and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def build_request(
    route: Route,
    services: Services,
    scope_values: Mapping[str, Any],
    header: Callable[[str], str | None],
    headers: Headers,
    receive: Receive,
    scope: Scope,
) -> Any:
    """The route's typed request: path and query values as given (already checked),
    headers parsed by the table's parsers, then the body read within its bound.

    Headers are checked before the body is read, so a bad header costs no upload.
    """
    settings = services.settings
    values = dict(scope_values)
    for param in route.headers:
        values[param.field] = param.parse(header(param.name), settings)
    if route.body is not None:
        values["body"] = await read_json_body(headers, receive, route.body.max_bytes(settings))
    if route.watches_caller:
        values["caller_gone"] = caller_gone(scope, receive)
    return route.request(**values)


async def send_reply(send: Send, reply: Reply) -> None:
    """A reply as ASGI messages: one sized body, or a stream of chunks."""
    headers = [(b"content-type", reply.media_type.encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in reply.headers.items()]
    # A 304 has no body, and its length would be the 200's (RFC 9110): none is sent.
    if reply.stream is None and reply.status != 304:
        headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    if reply.stream is None:
        await send({"type": "http.response.body", "body": reply.body})
        return
    async for chunk in reply.stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def reply_response(reply: Reply) -> Response:
    """A reply as a Starlette response (for the FastAPI routes)."""
    if reply.stream is not None:
        return StreamingResponse(reply.stream, media_type=reply.media_type, headers=reply.headers)
    if reply.status == 204:
        return Response(status_code=204, headers=reply.headers)
    return Response(
        reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers
    )
