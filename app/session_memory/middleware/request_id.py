"""X-Request-ID: the caller's when it is sane, else a fresh one; echoed on the response."""

from __future__ import annotations

import os
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestId", "request_id_from"]

_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")
_HEADER = b"x-request-id"


def request_id_from(header: bytes | None) -> str:
    """The caller's X-Request-ID when it is sane, else a fresh one."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header.decode()
    # 128 random bits as hex, as uuid4().hex but without building a UUID per request.
    return os.urandom(16).hex()


class RequestId:
    """Puts the request id in ``scope["state"]["request_id"]`` and on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope["headers"] if name == _HEADER), None)
        request_id = request_id_from(sent)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        echo = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echo]
            await send(message)

        await self.app(scope, receive, send_with_id)
