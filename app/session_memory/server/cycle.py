"""A request's answer on its way out: one write, back-pressure, bounded closes, shutdown.

uvicorn's ``RequestResponseCycle`` writes whatever the application sends straight
into the transport, which buffers it all when the client does not read; it waits
for the buffer to drain only before the next message, with no time limit. So a
client that stops reading held a whole answer in memory for as long as it
stayed, and every such client one more. ``OneWriteCycle`` adds:

- one write per sized response: its head is held for its body (uvicorn writes
  them apart, and on the hot routes the second send(2) and the second loopback
  delivery were most of the server's cost per request);
- back-pressure: a body is written in slices of ``WRITE_SLICE``, and while the
  transport holds more than its high-water mark (uvicorn's ``FlowControl`` hears
  it through ``pause_writing``) the next slice waits, so the application's
  ``send`` waits and it produces nothing more. A connection holds at most one
  slice over the mark, whatever the answer's size;
- a send timeout: a wait for a client that reads nothing for ``send_timeout``
  seconds closes its connection at once (``abort``: what it had not read is
  dropped and its memory given back);
- a bound per process (``WriteBudget``): the bytes of answers waiting for
  clients that do not read are counted while they wait, and a wait that would
  take them past ``max_pending_write_bytes`` closes its connection instead;
- its closes go through its connection (``Outlet.close_after_answer``), which
  bounds them too: a plain close waits for the buffer to drain, forever if the
  client never reads;
- a request cut off by a graceful shutdown's deadline is answered 503 (if its
  answer had not begun) and logged in one line, not as a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from uvicorn._types import (
    ASGI3Application,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPResponseBodyEvent,
)
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from ..draining import Draining
from ..problems import HttpProblem
from .limits import EdgeLimits, problem_response

__all__ = ["WRITE_SLICE", "OneWriteCycle", "Outlet", "WriteBudget", "guarded"]

logger = logging.getLogger("session_memory")

# The largest piece of a body written at once: what a connection may hold over the
# transport's high-water mark. uvicorn's own read buffer bound is the same size.
WRITE_SLICE = 64 * 1024

_SHUTTING_DOWN = HttpProblem(
    503,
    "Service unavailable",
    "the server is shutting down and stopped this request; send it again",
    headers={"Retry-After": "1"},
)


class WriteBudget:
    """Bytes of answers one process holds, waiting, for clients that are not reading."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes held; False (nothing counted) if that passes the bound."""
        if self.held + size > self.max_bytes:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """``size`` bytes counted by ``take`` are no longer held."""
        self.held -= size


class Outlet(Protocol):
    """What a cycle needs of its connection (``EdgeProtocol``)."""

    limits: EdgeLimits
    budget: WriteBudget
    draining: Draining

    def close_after_answer(self) -> None:
        """Close once what was written has gone, within bounds."""

    def drop(self, reason: str) -> None:
        """Close at once, dropping what was not sent; ``reason`` is logged."""


class _Guarded:
    """The transport as a connection's cycles see it: made once per connection.

    A close goes through the connection (``Outlet.close_after_answer``). While
    ``hold`` is set, what is written (a response head) is kept, and goes out with
    the next write (its body) in one piece; ``flush`` writes it alone when no body
    follows (a HEAD request's). Holding here, in the one writer a connection keeps,
    rather than in stand-ins swapped in around each message, costs the hot path no
    allocation per response.
    """

    __slots__ = ("_close", "_write", "head", "hold", "is_closing", "transport")

    def __init__(self, transport: asyncio.Transport, outlet: Outlet) -> None:
        self.transport = transport
        self._close = outlet.close_after_answer
        # Bound once: the hot path's writes skip the attribute look-ups.
        self._write = transport.write
        self.is_closing = transport.is_closing
        self.head = b""
        self.hold = False

    def write(self, data: bytes | memoryview) -> None:
        if self.hold:
            self.head += data
            return
        if self.head:
            data = self.head + data
            self.head = b""
        self._write(data)

    def flush(self) -> None:
        """Write a held head alone (nothing followed it), unless the connection is closing."""
        if self.head and not self.is_closing():
            self._write(self.head)
        self.head = b""

    def close(self) -> None:
        self.flush()
        self._close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def guarded(transport: asyncio.Transport, outlet: Outlet) -> _Guarded:
    """``transport`` as the cycles of ``outlet``'s connection should write to it."""
    return _Guarded(transport, outlet)


def _body_size(message: ASGISendEvent) -> int:
    body = message.get("body", b"") if message["type"] == "http.response.body" else b""
    return len(body)


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, written as this module says.

    uvicorn builds its cycle itself (``RequestResponseCycle`` by name, in
    ``on_headers_complete``); ``EdgeProtocol`` makes each one this class with
    ``adopt``, before the cycle's task first runs. Only the transport uvicorn writes
    to is swapped, so every check and header uvicorn makes stays its own.
    """

    outlet: Outlet
    writer: _Guarded
    _app: ASGI3Application

    @staticmethod
    def adopt(cycle: RequestResponseCycle, outlet: Outlet, writer: _Guarded) -> None:
        """Make uvicorn's ``cycle`` one of these, writing through its connection's ``writer``."""
        cycle.__class__ = OneWriteCycle
        adopted: OneWriteCycle = cycle  # type: ignore[assignment]
        adopted.outlet = outlet
        adopted.writer = writer
        adopted.transport = writer  # type: ignore[assignment]

    async def run_asgi(self, app: ASGI3Application) -> None:
        # A bound method rather than a closure per request: the hot path allocates less.
        self._app = app
        await super().run_asgi(self._stopped_quietly_at_shutdown)

    async def _stopped_quietly_at_shutdown(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        try:
            await self._app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.outlet.draining.begun:
                raise
            self._cancelled_by_shutdown()

    def _cancelled_by_shutdown(self) -> None:
        """uvicorn cancelled this request at the shutdown deadline: say so, once, and close."""
        state = self.scope.get("state", {})
        # Its answer had not begun: the client is told to send it again.
        answerable = not self.response_started and not self.disconnected
        logger.warning(
            "request cancelled by shutdown",
            extra={
                "fields": {
                    "method": self.scope["method"],
                    "path": self.scope["path"],
                    "status": _SHUTTING_DOWN.status if answerable else None,
                    "tenant": state.get("tenant"),
                    "request_id": state.get("request_id"),
                }
            },
        )
        if answerable:
            self.transport.write(problem_response(_SHUTTING_DOWN))
        # Nothing more is sent: uvicorn must not add a 500 of its own.
        self.disconnected = True
        self.transport.close()

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.body":
            if (
                self.response_started
                and not self.disconnected
                and len(body := message.get("body", b"")) > WRITE_SLICE
            ):
                await self._send_sliced(body, more=message.get("more_body", False))
                return
        elif not self.response_started:
            await self._send_head(message)
            return
        if self.flow.write_paused and not await self._reader_caught_up(_body_size(message)):
            return
        try:
            await super().send(message)
        finally:
            # The head held for this body went out with it; if nothing was written
            # (a HEAD request's body, a disconnect), it goes alone, or not at all.
            self.writer.flush()

    async def _send_head(self, message: ASGISendEvent) -> None:
        """uvicorn's send of the response head, held in the writer for the body if sized."""
        if self.flow.write_paused and not await self._reader_caught_up(0):
            return
        if self.more_body:
            # Answered before its body arrived: the connection cannot be reused
            # (the rest would have to be read first), so the answer says close.
            self.keep_alive = False
        writer = self.writer
        writer.hold = True
        try:
            await super().send(message)
        finally:
            writer.hold = False
        # A streamed (chunked) head goes at once; so does one whose answer has ended.
        if self.chunked_encoding is not False or self.disconnected:
            writer.flush()

    async def _send_sliced(self, body: bytes, *, more: bool) -> None:
        view = memoryview(body)
        size = len(view)
        for start in range(0, size, WRITE_SLICE):
            if self.flow.write_paused and not await self._reader_caught_up(size - start):
                return
            end = start + WRITE_SLICE
            # uvicorn writes any bytes-like body; a slice of a view copies nothing.
            part: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": view[start:end],  # type: ignore[typeddict-item]
                "more_body": more or end < size,
            }
            try:
                await super().send(part)
            finally:
                self.writer.flush()
            if self.disconnected:
                return

    async def _reader_caught_up(self, unsent: int) -> bool:
        """Wait until the transport is below its low-water mark; False: the connection is closed.

        ``unsent`` (the rest of the message) and what the transport holds are counted
        against the process's budget while this waits.
        """
        if self.disconnected:
            return False
        outlet = self.outlet
        held = unsent + self.transport.get_write_buffer_size()
        if not outlet.budget.take(held):
            self._give_up(
                "answers held for clients that are not reading them would pass "
                "max_pending_write_bytes"
            )
            return False
        try:
            async with asyncio.timeout(outlet.limits.send_timeout):
                await self.flow.drain()
        except TimeoutError:
            self._give_up("the client read nothing for send_timeout_seconds")
            return False
        finally:
            outlet.budget.give(held)
        return not self.disconnected

    def _give_up(self, reason: str) -> None:
        self.outlet.drop(reason)
        self.disconnected = True
        self.message_event.set()
