"""uvicorn's httptools protocol with the connection bounds held while a request arrives.

uvicorn buffers a request's whole head before the application sees it, has no
header-read or body-read timeout, does not time out a connection that never sends
a byte, takes connections until the process runs out of file descriptors, and
reads and drops the rest of a body its answer did not need for as long as it
trickles. This subclass adds, per connection:

- a bound on the request head (request line plus headers) in bytes and in header
  count, checked as bytes arrive, so at most one socket read past the bound is
  ever buffered; 431;
- a header-read timeout from a request's first byte to the end of its head (408),
  a body-read timeout on the idle time between body chunks and a deadline on the
  whole body (408), and the keep-alive timeout also on a new connection that
  sends nothing;
- a cap on open connections, kept by ``Admission``: past it, a keyless, fresh or
  idle connection is closed to make room, or the new one gets 503;
- an answer sent before its request's body arrived closes the connection: its
  input is read and dropped only for a short while (a lingering close), so the
  client sees the answer and cannot hold the connection by trickling;
- a client's half-close (``shutdown(SHUT_WR)``) ends its input, not its answers:
  every request received whole before it is answered, then the connection closes;
- every close is bounded: one that waits for a client to read what it was sent
  is cut off after the send timeout;
- protocol-level errors (400) as problem+json.

How answers leave (one write per sized response, back-pressure toward a client
that does not read, the send timeout) is ``cycle``'s part.

httptools keeps the hot routes' speed (h11 costs about half the throughput here).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..draining import Draining
from ..peer import PEER_CLOSED
from ..problems import (
    HeadersTooLarge,
    MalformedRequest,
    RequestTimeout,
    TooManyConnections,
)
from .admission import Admission, is_probe
from .cycle import OneWriteCycle, WriteBudget, guarded
from .limits import EdgeLimits, problem_response

__all__ = ["UVICORN_PRIVATE_API", "EdgeLimits", "EdgeProtocol"]

logger = logging.getLogger("session_memory")

# A closing connection's input is read and dropped (so the client sees the answer,
# not a reset) until it pauses this long, or for this long in all.
LINGER_PAUSE_SECONDS = 2.0
LINGER_TOTAL_SECONDS = 10.0

# Everything of uvicorn's private httptools protocol this module relies on, in one
# place: per module or class, a method's parameters (after ``self``), or None for an
# attribute (of the class, or of an instance: uvicorn sets most in ``__init__``).
# tests/test_edge.py checks each against the installed uvicorn; pyproject.toml pins
# uvicorn to the versions checked. Add here what a new override relies on.
UVICORN_PRIVATE_API: Final[dict[str, dict[str, tuple[str, ...] | None]]] = {
    "uvicorn._types": {
        "ASGISendEvent": None,
        "ASGI3Application": None,
        "ASGIReceiveCallable": None,
        "ASGISendCallable": None,
        "HTTPResponseBodyEvent": None,
    },
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
        "eof_received": (),
        "data_received": ("data",),
        # Starts a request's task: the cycle is swapped to OneWriteCycle just before.
        "_start_asgi_task": ("cycle", "app"),
        "on_message_begin": (),
        "on_url": ("url",),
        "on_header": ("name", "value"),
        "on_headers_complete": (),
        "on_message_complete": (),
        "on_response_complete": (),
        "send_400_response": ("msg",),
        "timeout_keep_alive_handler": (),
        "loop": None,
        "transport": None,
        "flow": None,
        "parser": None,
        "url": None,
        "headers": None,
        "connections": None,
        "cycle": None,
        "pipeline": None,
        "timeout_keep_alive": None,
        "timeout_keep_alive_task": None,
    },
    "uvicorn.protocols.http.httptools_impl:RequestResponseCycle": {
        "send": ("message",),
        "run_asgi": ("app",),
        "scope": None,
        "transport": None,
        "flow": None,
        "keep_alive": None,
        "more_body": None,
        "response_started": None,
        "response_complete": None,
        "chunked_encoding": None,
        "disconnected": None,
        "message_event": None,
        "waiting_for_100_continue": None,
    },
    "uvicorn.protocols.http.flow_control:FlowControl": {
        "read_paused": None,
        "write_paused": None,
        "drain": (),
    },
}


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past its bound."""


class EdgeProtocol(HttpToolsProtocol):
    """One client connection, held to ``limits``; ``draining`` is told when shutdown begins.

    uvicorn makes it with its own four arguments; the rest are bound beforehand
    (``server.run.uvicorn_config``). ``admission`` and ``budget`` are shared by every
    connection of the process; left out, this connection gets its own.
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
        admission: Admission | None = None,
        budget: WriteBudget | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.draining = draining
        self.admission = admission or Admission(None, limits)
        self.budget = budget or WriteBudget(limits.max_pending_write_bytes)
        # The request head being read: bytes received, headers and bytes parsed.
        self._head_bytes = 0
        self._head_count = 0
        self._parsed_head = 0
        self._reading_head = True
        self._rejection: bytes | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_timer_set = 0.0
        self._body_deadline = 0.0
        # Whether a request of this connection carried a valid key; whether the one
        # being answered is a health probe.
        self._trusted = False
        self._probe = False
        # Set when the client ends its stream or disconnects; in each request's scope.
        self._peer_closed = asyncio.Event()
        self._extensions = {PEER_CLOSED: self._peer_closed}
        # The client half-closed: no more input; close after the last answer.
        self._eof = False
        # While closing: input is dropped until the connection is gone.
        self._discarding = False
        self._closer: asyncio.TimerHandle | None = None
        self._linger_heard = 0.0
        self._linger_end = 0.0
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
        # Every request's cycle writes through this one writer (see cycle._Guarded).
        self._writer = guarded(transport, self)
        # uvicorn arms its keep-alive timer only after a response; a connection
        # that never sends a byte would otherwise be held forever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        if not self.admission.admit(self, self.connections):
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

    def idle(self) -> bool:
        """Between requests with no byte of the next one received, or closing."""
        return (
            self._discarding
            or self.transport.is_closing()
            or (
                self._reading_head
                and self._head_bytes == 0
                and (self.cycle is None or self.cycle.response_complete)
                and not self.pipeline
            )
        )

    def probing(self) -> bool:
        """Answering a health probe (admission never cuts one off)."""
        return self._probe

    def evict(self) -> None:
        """Close at once to make room for another connection."""
        self._abort()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self._running = cycle
        cycle.scope["extensions"] = self._extensions
        # See cycle.OneWriteCycle; the task has not run yet.
        OneWriteCycle.adopt(cycle, self, self._writer)
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer_closed.set()
        self._cancel_closer()
        self._cancel_head_timer()
        self._cancel_body_timer()
        self.admission.forget(self)
        self._cycles_gone()
        super().connection_lost(exc)

    def _cycles_gone(self) -> None:
        # uvicorn marks only the newest request's cycle as disconnected; with
        # pipelining the one still answering is older, and its next write would hit
        # the closed transport (a RuntimeError and a traceback). Mark it too, and
        # the queued ones, which will never start.
        for cycle in (self._running, *(queued for queued, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    # -- closing -------------------------------------------------------------------

    def close_after_answer(self) -> None:
        """Close once what was written has gone: what every close of a cycle does.

        If the client may still be sending (the answer came before its request had
        all arrived), linger; else close, and cut it off if it is still there after
        the send timeout (the client is not reading what it was sent).
        """
        if self.transport.is_closing() or self._discarding:
            return
        if not self._eof and (not self._reading_head or self._head_bytes):
            self._linger()
            return
        self.transport.close()
        self._cancel_closer()
        self._closer = self.loop.call_later(self.limits.send_timeout, self._abort)

    def drop(self, reason: str) -> None:
        """Close at once, dropping what was not sent (the client is not reading it)."""
        logger.info("connection closed: %s", reason)
        self._cycles_gone()
        self._abort()

    def timeout_keep_alive_handler(self) -> None:
        # What the last answer left unread would hold a plain close open for good.
        if not self.transport.is_closing():
            self.close_after_answer()

    def _abort(self) -> None:
        self._cancel_closer()
        self.transport.abort()

    def _cancel_closer(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None

    def _reject(self, response: bytes) -> None:
        """Send ``response`` and close, reading and dropping what the client still sends."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport.is_closing() or self._discarding:
            return
        self.transport.write(response)
        self._linger()

    def _linger(self) -> None:
        """Shut our side once what was written has gone; drop input until the client stops.

        Closing a socket with unread input resets it, and the client would never
        see its answer; so, as nginx's lingering close does, only our side is shut,
        and input is discarded (never buffered) until it pauses or for a while.
        """
        self._cancel_head_timer()
        self._cancel_body_timer()
        self._discarding = True
        # Nothing more is written once our side is shut: an answer still running
        # (a refusal came mid-pipeline) stops, and queued requests never start.
        self._cycles_gone()
        self.pipeline.clear()
        try:
            self.transport.write_eof()
        except (NotImplementedError, RuntimeError, OSError):
            self._abort()
            return
        now = self.loop.time()
        self._linger_heard = now
        self._linger_end = now + LINGER_TOTAL_SECONDS
        self._cancel_closer()
        self._closer = self.loop.call_later(LINGER_PAUSE_SECONDS, self._linger_check)

    def _linger_check(self) -> None:
        now = self.loop.time()
        due = min(self._linger_heard + LINGER_PAUSE_SECONDS, self._linger_end)
        if now >= due:
            self._closer = None
            self._abort()
        else:
            self._closer = self.loop.call_later(due - now, self._linger_check)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client half-closed: answer what arrived whole, then close.

        A request cut off by the half-close can never be answered: the running one
        ends as a disconnect (the connection closes now), a queued one is dropped.
        """
        self._peer_closed.set()
        if self._discarding or self.transport.is_closing():
            return None
        self._eof = True
        self._cancel_head_timer()
        self._cancel_body_timer()
        if not self._reading_head:
            if self.cycle is self._running:
                return None
            if self.pipeline and self.pipeline[0][0] is self.cycle:
                self.pipeline.popleft()
        running = self._running
        if (running is not None and not running.response_complete) or self.pipeline:
            return True
        return None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        running = self._running
        if self._eof and not self.pipeline and (running is None or running.response_complete):
            self.close_after_answer()

    # -- the request head ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._linger_heard = self.loop.time()
            return
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing() or self._discarding:
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
        self._body_deadline = self.loop.time() + self.limits.body_deadline
        if not self._trusted:
            self._trusted = self.admission.headed(self, self.headers)
            self._probe = not self._trusted and is_probe(self.parser.get_method(), self.url)
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
        """The clock on a body: its next pause, or its deadline if that comes first."""
        self._cancel_body_timer()
        now = self.loop.time()
        self._body_timer_set = now
        delay = min(self.limits.body_timeout, self._body_deadline - now)
        self._body_timer = self.loop.call_later(max(delay, 0.0), self._body_timed_out)

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
        if self.transport.is_closing() or self._discarding:
            return
        if self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        ):
            # The application has not consumed what arrived, or not yet asked for
            # the body the client holds back for "100 Continue": the client is not
            # idle, and the time it waited does not count against its deadline.
            self._body_deadline += self.loop.time() - self._body_timer_set
            self._arm_body_timer()
            return
        if self.loop.time() >= self._body_deadline:
            logger.info("connection closed: request body took longer than body_deadline_seconds")
            problem = RequestTimeout(
                "the request body did not arrive in time",
                extra={"limit": "body_deadline_seconds", "max": self.limits.body_deadline},
            )
        else:
            logger.info("connection closed: request body stalled")
            problem = RequestTimeout(
                "the request body stopped arriving",
                extra={"limit": "body_timeout_seconds", "max": self.limits.body_timeout},
            )
        if self.cycle is not None and not self.cycle.response_started:
            # The application sees a disconnect; the client sees why.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self._reject(problem_response(problem))
        else:
            self._abort()
