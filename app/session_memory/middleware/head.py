"""ASGI middleware: answer HEAD wherever GET is answered (RFC 9110 section 9.3.2).

FastAPI routes declare GET only, so HEAD got 405 everywhere, ``/healthz``
included. This runs the request as GET and sends the same status and headers
without the body. The answer is complete once its headers are sent: an endless
GET (a live event stream) is then told its client has gone, so it ends and gives
back its stream slot.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadAsGet"]

_END = {"type": "http.response.body", "body": b"", "more_body": False}
_GONE = {"type": "http.disconnect"}


class HeadAsGet:
    """Run a HEAD request as GET; send its status and headers, then end it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        answered = asyncio.Event()

        async def send_head_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
                await send(_END)
                answered.set()
            # Every body message is dropped: the answer ended with its headers.

        async def receive_until_answered() -> Message:
            if answered.is_set():
                return _GONE
            waiting = asyncio.ensure_future(answered.wait())
            message = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({waiting, message}, return_when=asyncio.FIRST_COMPLETED)
            if message in done:
                waiting.cancel()
                return message.result()
            message.cancel()
            return _GONE

        await self.app({**scope, "method": "GET"}, receive_until_answered, send_head_only)
