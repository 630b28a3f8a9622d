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
    """The transport as a cycle sees it: a close goes through the connection."""

    __slots__ = ("_close", "is_closing", "transport", "write")

    def __init__(self, transport: asyncio.Transport, outlet: Outlet) -> None:
        self.transport = transport
        self._close = outlet.close_after_answer
        # Bound once: the hot path's writes skip the attribute look-up below.
        self.write = transport.write
        self.is_closing = transport.is_closing

    def close(self) -> None:
        self._close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def guarded(transport: asyncio.Transport, outlet: Outlet) -> asyncio.Transport:
    """``transport`` as a cycle of ``outlet``'s should write to it."""
    return _Guarded(transport, outlet)  # type: ignore[return-value]


class _HeldHead:
    """Stands in for the transport while uvicorn writes a response head: keeps its bytes."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head = b""

    def write(self, data: bytes) -> None:
        self.head += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class _HeadFirst:
    """Stands in for the transport while uvicorn sends the message after a held head.

    Its first write carries the head too; a close, or the end of the send with
    nothing written (a HEAD request's body), writes the head alone first.
    """

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes | memoryview) -> None:
        if self.head:
            data = self.head + data
            self.head = b""
        self.transport.write(data)

    def flush(self) -> None:
        if self.head and not self.transport.is_closing():
            self.transport.write(self.head)
        self.head = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def _body_size(message: ASGISendEvent) -> int:
    body = message.get("body", b"") if message["type"] == "http.response.body" else b""
    return len(body)


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, written as this module says.

    uvicorn builds its cycle itself (``RequestResponseCycle`` by name, in
    ``on_headers_complete``); ``EdgeProtocol`` makes each one this class, with its
    ``outlet`` and a ``guarded`` transport, before the cycle's task first runs.
    Only the transport uvicorn writes to is swapped, so every check and header
    uvicorn makes stays its own.
    """

    _held: bytes | None = None
    outlet: Outlet

    async def run_asgi(self, app: ASGI3Application) -> None:
        draining = self.outlet.draining

        async def stopped_quietly_at_shutdown(
            scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
        ) -> None:
            try:
                await app(scope, receive, send)
            except asyncio.CancelledError:
                if not draining.begun:
                    raise
                self._cancelled_by_shutdown()

        await super().run_asgi(stopped_quietly_at_shutdown)

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
        if (
            message["type"] == "http.response.body"
            and self.response_started
            and not self.disconnected
            and len(body := message.get("body", b"")) > WRITE_SLICE
        ):
            await self._send_sliced(body, more=message.get("more_body", False))
            return
        if self.flow.write_paused and not await self._reader_caught_up(_body_size(message)):
            return
        await self._send_whole(message)

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
            await self._send_whole(part)
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

    async def _send_whole(self, message: ASGISendEvent) -> None:
        """uvicorn's send, with a sized response's head held for its body."""
        held = self._held
        if held is None:
            if message["type"] != "http.response.start" or self.response_started:
                await super().send(message)
                return
            if self.more_body:
                # Answered before its body arrived: the connection cannot be reused
                # (the rest would have to be read first), so the answer says close.
                self.keep_alive = False
            transport = self.transport
            holder = _HeldHead(transport)
            self.transport = holder  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if not holder.head:
                return  # disconnected: nothing was written
            if self.chunked_encoding is False and not self.disconnected:
                self._held = holder.head
            elif not transport.is_closing():
                transport.write(holder.head)
            return
        self._held = None
        transport = self.transport
        head_first = _HeadFirst(transport, held)
        self.transport = head_first  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            head_first.flush()
