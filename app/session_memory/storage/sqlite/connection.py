"""SQLite connections and who owns them: each one belongs to one thread.

A connection is made, used and closed on its owner's thread, and sqlite3's own check
(``check_same_thread``, left on) makes any other thread that touches it fail with
``ProgrammingError`` instead of sharing it by accident. ``OwnedConnection`` is one
connection with a thread of its own (the writer's, and each threaded reader's);
``ReaderPool`` hands a read to whichever threaded reader is free. The event loop's
own inline reader is a plain ``connect`` made on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from ...config import Database
from ..errors import StoreError, StoreUnavailableError

__all__ = ["OwnedConnection", "ReaderPool", "connect", "sqlite_path_from_url", "translate"]

T = TypeVar("T")
# A function for the owner's thread, and the future on the loop that gets its outcome.
_Call: TypeAlias = tuple[Callable[[], Any], asyncio.Future[Any]]


def sqlite_path_from_url(url: str) -> Path:
    """The file a SQLite URL names (``ValueError`` for any other URL), as ``Settings``
    parses it (``config.Database``): the one parsing of a database URL."""
    path = Database.parse(url).sqlite_path
    if path is None:
        raise ValueError(f"not a SQLite URL: {url!r}; expected sqlite:///relative.db")
    return path


def connect(path: Path, busy_timeout_ms: int, *, query_only: bool = False) -> sqlite3.Connection:
    """A raw connection that commits durably, owned by the calling thread."""
    # isolation_level=None: we issue BEGIN/COMMIT ourselves.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # FULL: every commit is fsynced before the write is acknowledged.
    conn.execute("PRAGMA synchronous = FULL")
    if query_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def translate(exc: BaseException) -> StoreError:
    """A SQLite failure as a store error (locked or unreadable: unavailable)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"SQLite: {exc}")
    return StoreError(f"SQLite: {exc}")


def _answer(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """On the loop: hand a call's outcome to its future (unless its caller went away)."""
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class OwnedConnection:
    """One connection and the one thread that makes, uses and closes it.

    Work reaches the connection only as a function run on that thread (``run``), in
    the order submitted; the attribute holding it is set and cleared there too. The
    thread takes calls from a queue and answers each on the caller's loop: one hop
    each way and nothing more, so a small read pays little for it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self, path: Path, busy_timeout_ms: int, *, query_only: bool = False) -> None:
        """Start the thread and make the connection on it."""
        # A daemon: a store never closed must not keep the process from exiting.
        self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
        self._thread.start()
        try:
            await self._queue(functools.partial(self._open, path, busy_timeout_ms, query_only))
        except BaseException:
            await self.close()  # no connection: the thread has nothing to serve
            raise

    def _open(self, path: Path, busy_timeout_ms: int, query_only: bool) -> None:
        self._conn = connect(path, busy_timeout_ms, query_only=query_only)

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run ``fn(connection)`` on the owner's thread, after the calls queued before it."""
        if self._thread is None:
            raise StoreUnavailableError("the store is not open")
        return self._queue(functools.partial(self._call, fn))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise StoreUnavailableError("the store is not open")
        return fn(self._conn)

    def _queue(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((fn, future))
        return future

    def _serve(self) -> None:
        """The owner's thread: run the calls queued until told to stop."""
        while (call := self._calls.get()) is not None:
            fn, future = call
            try:
                outcome = (True, fn())
            except BaseException as exc:
                outcome = (False, exc)
            # A loop already closed has no one left waiting for the answer.
            with contextlib.suppress(RuntimeError):
                future.get_loop().call_soon_threadsafe(_answer, future, *outcome)

    async def close(self) -> None:
        """Close the connection on its thread (after the calls queued before), then stop it."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            await self._queue(self._close)
        finally:
            self._calls.put(None)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class ReaderPool:
    """Read-only connections, each owned by its thread; a read takes whichever is free."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._all: list[OwnedConnection] = []
        self._free: asyncio.Queue[OwnedConnection] = asyncio.Queue()

    async def open(self, path: Path, busy_timeout_ms: int) -> None:
        for number in range(self._size):
            reader = OwnedConnection(f"sqlite-reader-{number}")
            await reader.open(path, busy_timeout_ms, query_only=True)
            self._all.append(reader)
            self._free.put_nowait(reader)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on a free reader's thread: the whole read is one hop there."""
        if not self._all:
            raise StoreUnavailableError("the store is not open")
        reader = await self._free.get()
        try:
            return await reader.run(fn)
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        finally:
            self._free.put_nowait(reader)

    async def close(self) -> None:
        readers, self._all = self._all, []
        for reader in readers:
            await reader.close()
        self._free = asyncio.Queue()
