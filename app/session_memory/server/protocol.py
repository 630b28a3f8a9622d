"""uvicorn's httptools protocol with the connection bounds held while a request arrives.

uvicorn buffers a request's whole head before the application sees it, has no
header-read or body-read timeout, does not time out a connection that never sends
a byte, and takes connections until the process runs out of file descriptors.
This subclass adds, per connection:

- a bound on the request head (request line plus headers) in bytes and in header
  count, checked as bytes arrive, so at most one socket read past the bound is
  ever buffered; 431;
- a header-read timeout from a request's first byte to the end of its head (408),
  a body-read timeout on the idle time between body chunks (408), and the
  keep-alive timeout also on a new connection that sends nothing;
- a cap on open connections: past it, an idle connection is closed to make room,
  or the new one gets 503;
- protocol-level errors (400) as problem+json.

It also writes a response whose length is known (a ``content-length`` head, as
every non-streamed response has) in one ``transport.write``: uvicorn writes the
head, then the body, and on the hot routes the second send(2) and the second
loopback delivery were most of the server's cost per request.

httptools keeps the hot routes' speed (h11 costs about half the throughput here).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from session_memory_client.protocol import PROBLEM_MEDIA_TYPE
from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from ..draining import Draining
from ..problems import (
    HeadersTooLarge,
    MalformedRequest,
    ProblemError,
    RequestTimeout,
    TooManyConnections,
    problem_body,
)

__all__ = ["UVICORN_PRIVATE_API", "EdgeLimits", "EdgeProtocol"]

logger = logging.getLogger("session_memory")

# How long a refused connection's input is read and dropped before it is closed.
LINGER_SECONDS = 2.0

# Everything of uvicorn's private httptools protocol this module relies on, in one
# place: per module or class, a method's parameters (after ``self``), or None for an
# attribute (of the class, or of an instance: uvicorn sets most in ``__init__``).
# tests/test_edge.py checks each against the installed uvicorn; pyproject.toml pins
# uvicorn to the versions checked. Add here what a new override relies on.
UVICORN_PRIVATE_API: Final[dict[str, dict[str, tuple[str, ...] | None]]] = {
    "uvicorn._types": {"ASGISendEvent": None},
    "uvicorn.server": {"ServerState": None},
    "uvicorn.protocols.http.httptools_impl": {
        "STATUS_LINE": None,
        "HttpToolsProtocol": None,
        "RequestResponseCycle": None,
    },
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol": {
        "__init__": ("config", "server_state", "app_state", "_loop"),
        "shutdown": (),
        "connection_made": ("transport",),
        "connection_lost": ("exc",),
        "data_received": ("data",),
        # Starts a request's task: the cycle is swapped to OneWriteCycle just before.
        "_start_asgi_task": ("cycle", "app"),
        "on_message_begin": (),
        "on_url": ("url",),
        "on_header": ("name", "value"),
        "on_headers_complete": (),
        "on_message_complete": (),
        "send_400_response": ("msg",),
        "timeout_keep_alive_handler": (),
        "loop": None,
        "transport": None,
        "flow": None,
        "connections": None,
        "cycle": None,
        "pipeline": None,
        "timeout_keep_alive": None,
        "timeout_keep_alive_task": None,
    },
    "uvicorn.protocols.http.httptools_impl:RequestResponseCycle": {
        "send": ("message",),
        "transport": None,
        "response_started": None,
        "response_complete": None,
        "chunked_encoding": None,
        "disconnected": None,
        "message_event": None,
        "waiting_for_100_continue": None,
    },
    "uvicorn.protocols.http.flow_control:FlowControl": {"read_paused": None},
}


@dataclass(frozen=True)
class EdgeLimits:
    """The per-connection bounds; see ``Settings`` for each one's meaning."""

    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float
    max_connections: int


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past its bound."""


def problem_response(problem: ProblemError) -> bytes:
    """A complete HTTP/1.1 problem+json response that closes the connection."""
    body = problem_body(problem, "")
    return b"".join(
        [
            STATUS_LINE[problem.status],
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


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

    def write(self, data: bytes) -> None:
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


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, holding a sized response's head for its body.

    uvicorn builds its cycle itself (``RequestResponseCycle`` by name, in
    ``on_headers_complete``); ``EdgeProtocol`` gives each cycle this class's ``send``
    before the cycle's task first runs. Only the transport uvicorn writes to is
    swapped, so every check and header uvicorn makes stays its own. A streamed head
    (no content-length: chunked) is written at once, as before.
    """

    _held: bytes | None = None

    async def send(self, message: ASGISendEvent) -> None:
        held = self._held
        if held is None:
            if message["type"] != "http.response.start" or self.response_started:
                await super().send(message)
                return
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


class EdgeProtocol(HttpToolsProtocol):
    """One client connection, held to ``limits``; ``draining`` is told when shutdown begins.

    uvicorn makes it with its own four arguments; ``limits`` and ``draining`` are
    bound beforehand (``server.run.uvicorn_config``).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: EdgeLimits,
        draining: Draining,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.draining = draining
        # The request head being read: bytes received, headers and bytes parsed.
        self._head_bytes = 0
        self._head_count = 0
        self._parsed_head = 0
        self._reading_head = True
        self._rejection: bytes | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # After a refusal: input is dropped until the connection closes.
        self._discarding = False
        self._linger: asyncio.TimerHandle | None = None
        # The request whose application task runs (pipelined ones wait their turn).
        self._running: Any = None

    # -- connections -------------------------------------------------------------

    def shutdown(self) -> None:
        # Live follow streams never end by themselves: the app ends them now, so a
        # graceful shutdown does not wait out its timeout on them (see ``Draining``).
        self.draining.begin()
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response; a connection
        # that never sends a byte would otherwise be held forever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            logger.warning(
                "connection refused: %d connections open (max_connections)",
                len(self.connections) - 1,
            )
            self._reject(
                problem_response(
                    TooManyConnections(
                        "the server holds as many connections as it allows; retry shortly",
                        extra={"limit": "max_connections", "max": self.limits.max_connections},
                    )
                )
            )

    def _idle(self) -> bool:
        """Between requests, with no byte of the next one received."""
        return (
            self._reading_head
            and self._head_bytes == 0
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
        )

    def _evict_idle(self) -> bool:
        """Close one idle or refused connection to make room; whether there was one."""
        for connection in self.connections:
            if (
                connection is not self
                and isinstance(connection, EdgeProtocol)
                and (connection._discarding or connection._idle())
                and not connection.transport.is_closing()
            ):
                connection.transport.close()
                return True
        return False

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        # One write per sized response (see OneWriteCycle); the task has not run yet.
        cycle.__class__ = OneWriteCycle
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._cancel_head_timer()
        self._cancel_body_timer()
        # uvicorn marks only the newest request's cycle as disconnected; with
        # pipelining the one still answering is older, and its next write would hit
        # the closed transport (a RuntimeError and a traceback). Mark it too, and
        # the queued ones, which will never start.
        for cycle in (self._running, *(queued for queued, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def _reject(self, response: bytes) -> None:
        """Send ``response`` and close, reading and dropping what the client still sends.

        Closing a socket with unread input resets it, and the client would never
        see the response; so, as nginx's lingering close does, only our side is
        shut, and input is discarded (never buffered) for a short while.
        """
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport.is_closing() or self._discarding:
            return
        self._discarding = True
        self.transport.write(response)
        try:
            self.transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            self.transport.close()
            return
        self._linger = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    # -- the request head ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._reading_head:
            # The head is still incomplete after this read: everything received so
            # far belongs to it, so a head past the bound is refused before the next
            # read, and its clock starts with its first byte.
            if self._head_bytes > self.limits.max_header_bytes:
                self._reject(self._too_large())
            elif self._head_bytes and self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout, self._head_timed_out
                )
        else:
            # Part of a body arrived and more is due: the idle clock restarts.
            self._arm_body_timer()

    def _too_large(self) -> bytes:
        limits = self.limits
        return problem_response(
            HeadersTooLarge(
                f"the request line and headers exceed {limits.max_header_bytes} bytes "
                f"or {limits.max_header_count} header fields",
                extra={
                    "limit": "max_header_bytes",
                    "max": limits.max_header_bytes,
                    "max_header_count": limits.max_header_count,
                },
            )
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_count = 0
        self._parsed_head = 0
        # A request has begun (perhaps pipelined behind the last one in this read).
        self._head_bytes = max(self._head_bytes, 1)

    def on_url(self, url: bytes) -> None:
        self._head_count_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.limits.max_header_count:
            self._rejection = self._too_large()
            raise _HeadTooLarge
        self._head_count_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _head_count_bytes(self, size: int) -> None:
        # Counts the parsed head exactly; the check in data_received covers a head
        # that has not finished arriving.
        self._parsed_head += size
        if self._parsed_head > self.limits.max_header_bytes:
            self._rejection = self._too_large()
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._rejection is not None:
            logger.info("request refused: head larger than max_header_bytes/max_header_count")
            self._reject(self._rejection)
            return
        self._reject(problem_response(MalformedRequest("the request is not valid HTTP/1.1")))

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._reading_head and not self.transport.is_closing():
            logger.info("connection closed: request head not received in time")
            self._reject(
                problem_response(
                    RequestTimeout(
                        "the request headers did not arrive in time",
                        extra={
                            "limit": "header_timeout_seconds",
                            "max": self.limits.header_timeout,
                        },
                    )
                )
            )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    # -- the request body ----------------------------------------------------------

    def _arm_body_timer(self) -> None:
        self._cancel_body_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        ):
            # The application has not consumed what arrived, or not yet asked for
            # the body the client holds back for "100 Continue": the client is not idle.
            self._arm_body_timer()
            return
        logger.info("connection closed: request body stalled")
        if self.cycle is not None and not self.cycle.response_started:
            # The application sees a disconnect; the client sees why.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self._reject(
                problem_response(
                    RequestTimeout(
                        "the request body stopped arriving",
                        extra={"limit": "body_timeout_seconds", "max": self.limits.body_timeout},
                    )
                )
            )
        else:
            self.transport.close()
