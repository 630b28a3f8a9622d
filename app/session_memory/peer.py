"""What the connection layer tells a request beyond ASGI: that the client has
closed its side of the connection.

ASGI reports a disconnect only once the connection is gone, but a client that
closes its socket looks, to the server, like one that only half-closed (shut down
its writing side) to wait for the answer, which the server keeps the connection
open to send. A request that may wait long for nothing but its caller (a lease
acquisition with a wait) treats either as the caller gone. The server
(``server.protocol``) puts an event in each request's scope, set at the client's
end of stream or disconnect.

Imports nothing of the service, so the server and the app can both use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope

__all__ = ["PEER_CLOSED", "caller_gone"]

# The scope's ``extensions`` key of the connection's asyncio.Event.
PEER_CLOSED = "session_memory.peer_closed"


def caller_gone(scope: Scope, receive: Receive) -> Callable[[], Awaitable[None]]:
    """A wait that returns once the client has closed its side or disconnected
    (the request's body must have been read already)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def gone() -> None:
        closed: asyncio.Event | None = scope.get("extensions", {}).get(PEER_CLOSED)
        if closed is None:  # another server: its disconnect is all there is
            await disconnected()
            return
        waits = [asyncio.ensure_future(disconnected()), asyncio.ensure_future(closed.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    return gone
