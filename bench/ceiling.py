"""The ceiling: a bare ASGI app that answers every request with a canned body.

It speaks just enough of the API for RemoteSession: GET items gets 20 items, POST
gets an append result, DELETE .../last gets one item. No routing framework, no
storage: the most any Python route can do under the same server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ITEM = {"role": "user", "content": "x" * 1000}
GET_BODY = json.dumps(
    {"items": [ITEM] * 20, "first_seq": 981, "last_seq": 1000, "has_more": True}
).encode()
POST_BODY = b'{"count":1,"first_seq":1,"last_seq":1}'
POP_BODY = json.dumps({"item": ITEM}).encode()

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    method = scope["method"]
    if method == "POST":
        more = True
        while more:  # drain the request body, as a real route must
            more = (await receive()).get("more_body", False)
        status, body = 201, POST_BODY
    elif method == "DELETE":
        status, body = 200, POP_BODY
    else:
        status, body = 200, GET_BODY
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
