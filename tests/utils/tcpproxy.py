"""A TCP forwarder the tests can cut and restore: a real network outage, on loopback."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from tests.utils.server import free_port

__all__ = ["TCPProxy"]


class TCPProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``cut()`` drops every connection.

    ``hold()`` keeps what clients send from reaching the target (a slow network, a
    request in flight) until ``release()``; ``request_held`` is set once bytes are held.
    ``lose_answers(n)``: the next ``n`` answers the target sends are thrown away and
    their connections dropped (the request was delivered, its answer lost);
    ``lose_answers(n, stall=True)``: thrown away with the connection left open (the
    client waits on, as for a network that stalled after delivering the request).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._holding = False
        self._held: list[tuple[asyncio.StreamWriter, bytes]] = []
        self._close_on_release: list[asyncio.StreamWriter] = []
        self.request_held = threading.Event()
        self._answers_to_lose = 0
        self._stall = False
        self.answers_lost = 0
        self._thread.start()

    def _call(self, coro: object) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        future.result(10)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if upstream and self._holding:
                    self._held.append((writer, data))
                    self.request_held.set()
                    continue
                if not upstream and self._answers_to_lose > 0:
                    self._answers_to_lose -= 1
                    self.answers_lost += 1
                    if self._stall:
                        await reader.read()  # the rest of it goes the same way
                        continue
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # A client that hung up still gets its held bytes delivered, as a slow
            # network would deliver them.
            if any(held is writer for held, _ in self._held):
                self._close_on_release.append(writer)
            else:
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer, upstream=True),
            self._pipe(up_reader, writer, upstream=False),
        )
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _hold(self, holding: bool) -> None:
        self._holding = holding
        if not holding:
            held, self._held = self._held, []
            for writer, data in held:
                if not writer.is_closing():
                    writer.write(data)
            closing, self._close_on_release = self._close_on_release, []
            for writer in closing:
                writer.close()
            self.request_held.clear()

    async def _lose_answers(self, count: int, stall: bool) -> None:
        self._answers_to_lose, self._stall = count, stall

    def lose_answers(self, count: int, *, stall: bool = False) -> None:
        self._call(self._lose_answers(count, stall))

    def hold(self) -> None:
        self._call(self._hold(True))

    def release(self) -> None:
        self._call(self._hold(False))

    def start(self) -> TCPProxy:
        self._call(self._start())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
