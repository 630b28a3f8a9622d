"""Live follow: a session's changes as server-sent events, resumable by sequence number.

Ownership: one ``Hub`` per process fans changes out to that process's streams. On
SQLite the services publish to it after each commit (one process owns the file); on
PostgreSQL a trigger NOTIFYs every replica on commit and a ``PostgresListener`` (one
dedicated connection per process) hands those to the hub, so a write through any
replica reaches every follower.

A notification only wakes a stream: the items themselves are read from the store
after the stream's cursor, so a resumed stream (``Last-Event-ID`` or ``after``) has
no gap and no duplicate whatever notifications were lost or doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..config import Settings
from ..problems import TooManyStreams
from ..storage.contract import HistoryStore

__all__ = [
    "Change",
    "Hub",
    "Notifier",
    "PostgresListener",
    "event_stream",
    "start_follow",
    "stop_all_streams",
]

logger = logging.getLogger("session_memory")

# Items per store read while catching up.
CATCH_UP_PAGE = 500
# Changes a slow stream may have queued; past it, later wake-ups are dropped (the
# stream re-reads the store anyway, so only pop/replace/clear notices can be lost).
QUEUE_SIZE = 256
CHANNEL = "session_memory"

_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class Change:
    """Something happened to a session: ``append``, ``pop``, ``replace`` or ``clear``."""

    kind: str
    revision: int


class Hub:
    """This process's follow streams, by session; ``publish`` wakes a session's streams."""

    def __init__(self, *, max_streams: int, local: bool) -> None:
        # local: the services' publish calls deliver (SQLite). Otherwise the
        # database's notifications do, and publishing here would double them.
        self.local = local
        self.max_streams = max_streams
        self._streams: dict[tuple[str, str], set[asyncio.Queue[Change | None]]] = {}
        self._count = 0
        self.stopping = False
        # Where the database learns which sessions are followed (PostgreSQL only).
        self.registry: PostgresListener | None = None
        _HUBS.add(self)

    @property
    def open_streams(self) -> int:
        return self._count

    def publish(self, kind: str, tenant: str, session_id: str, revision: int) -> None:
        """A service committed a write; wake this session's streams (SQLite only)."""
        if self.local:
            self.deliver(tenant, session_id, Change(kind, revision))

    def deliver(self, tenant: str, session_id: str, change: Change) -> None:
        for queue in self._streams.get((tenant, session_id), ()):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(change)

    def wake_all(self) -> None:
        """Make every stream re-read the store (after notifications may have been lost)."""
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(Change("wake", 0))

    def check_capacity(self) -> None:
        """Refuse (503) a new stream when the process serves as many as it may."""
        if self.stopping or self._count >= self.max_streams:
            raise TooManyStreams(
                f"this server follows {self._count} sessions, as many as it may "
                "(max_follow_streams); retry shortly or through another replica",
                headers={"Retry-After": "5"},
            )

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant: str, session_id: str
    ) -> AsyncIterator[asyncio.Queue[Change | None]]:
        queue: asyncio.Queue[Change | None] = asyncio.Queue(QUEUE_SIZE)
        key = (tenant, session_id)
        first = key not in self._streams
        self._streams.setdefault(key, set()).add(queue)
        self._count += 1
        try:
            if first and self.registry is not None:
                await self.registry.add(tenant, session_id)
            yield queue
        finally:
            self._count -= 1
            queues = self._streams.get(key)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._streams[key]
                    if self.registry is not None:
                        self.registry.remove_soon(tenant, session_id)

    def followed(self) -> list[tuple[str, str]]:
        """The sessions this process's streams follow."""
        return list(self._streams)

    def stop(self) -> None:
        """End every stream now (the server is shutting down) and refuse new ones."""
        self.stopping = True
        for queues in self._streams.values():
            for queue in queues:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
                if queue.full():
                    # Make room: the end matters more than the changes before it.
                    queue.get_nowait()
                    queue.put_nowait(None)


# What the services publish to.
Notifier = Hub


def stop_all_streams() -> None:
    """End the follow streams of every hub in this process (graceful shutdown began)."""
    for hub in list(_HUBS):
        hub.stop()


class PostgresListener:
    """LISTEN on one dedicated connection; every notification goes to the hub.

    NOTIFY serialises commits database-wide, so the trigger sends one only for a
    session some process follows: this connection registers the sessions its hub
    follows in ``session_followers`` (rows keyed by its backend pid, so a crashed
    process's rows are recognised and dropped by the next one to connect).

    A lost connection is reopened (every second until it works), the followed
    sessions registered again, and every stream woken, so none waits on a
    notification sent while it was away.
    """

    def __init__(self, dsn: str, hub: Hub) -> None:
        self.dsn = dsn
        self.hub = hub
        self._conn: Any = None
        self._schema: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep(), name="follow-listener")

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=5)
        # The schema the store's tables are in (the DSN's search_path picks it).
        self._schema = await conn.fetchval(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'sessions' AND table_schema = ANY(current_schemas(false)) "
            "ORDER BY array_position(current_schemas(false), table_schema::name) LIMIT 1"
        )
        await conn.add_listener(CHANNEL, self._on_notify)
        conn.add_termination_listener(lambda _: self._lost.set())
        await conn.execute(
            "DELETE FROM session_followers WHERE backend_pid <> ALL "
            "(SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)"
        )
        self._conn = conn
        for tenant, session_id in self.hub.followed():
            await self.add(tenant, session_id)

    async def _keep(self) -> None:
        while True:
            await self._lost.wait()
            self._lost.clear()
            while True:
                try:
                    await self._connect()
                except (TimeoutError, OSError, Exception) as exc:
                    logger.warning("follow listener: cannot reconnect: %s", exc)
                    await asyncio.sleep(1)
                else:
                    self.hub.wake_all()
                    break

    async def add(self, tenant: str, session_id: str) -> None:
        """Ask the database to notify this process of the session's writes."""
        await self._registered(
            "INSERT INTO session_followers VALUES ($1, $2, pg_backend_pid()) "
            "ON CONFLICT DO NOTHING",
            tenant,
            session_id,
        )

    def remove_soon(self, tenant: str, session_id: str) -> None:
        """Stop the notifications (in the background: a stream's end must not wait)."""
        if self.hub.stopping:
            return  # the connection closes soon, and its rows are dropped with it
        task = asyncio.create_task(
            self._registered(
                "DELETE FROM session_followers WHERE tenant = $1 AND session_id = $2 "
                "AND backend_pid = pg_backend_pid()",
                tenant,
                session_id,
            )
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _registered(self, sql: str, tenant: str, session_id: str) -> None:
        # Best effort: without the row a stream still catches up at each heartbeat.
        if self._conn is None:
            return
        try:
            async with self._lock:
                await self._conn.execute(sql, tenant, session_id)
        except Exception as exc:
            logger.warning("follow listener: cannot register %r: %s", session_id, exc)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            kind, schema, tenant, session_id, revision, _last_seq = json.loads(str(payload))
        except ValueError:
            return
        if schema != self._schema:
            return
        self.hub.deliver(tenant, session_id, Change(kind, revision))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)


def _event(kind: str, data: str, seq: int | None = None) -> bytes:
    # A multi-line item is sent as several data lines; the client joins them with
    # LF, which gives the item back (a JSON text has line breaks only as whitespace).
    lines = "".join(f"data: {line}\n" for line in data.replace("\r\n", "\n").split("\n"))
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\n{lines}\n".encode()


async def event_stream(
    store: HistoryStore,
    hub: Hub,
    tenant: str,
    session_id: str,
    *,
    after: int | None,
    heartbeat: float,
    max_bytes: int | None = None,
) -> AsyncIterator[bytes]:
    """The events of one session after ``after`` (None: from now on), until stopped.

    Subscribes before the first read, so a write between the two is not missed.
    """
    async with hub.subscribe(tenant, session_id) as queue:
        cursor = after if after is not None else await store.last_seq(tenant, session_id)
        yield b": following\n\n"
        while True:
            # Catch up from the store: every item above the cursor, in order, once.
            while True:
                # Pages bounded by bytes as well as count, as reads are
                # (max_read_page_bytes): one such page is held at a time.
                rows, has_more = await store.read_seqs(
                    tenant, session_id, after=cursor, limit=CATCH_UP_PAGE, max_bytes=max_bytes
                )
                for seq, body in rows:
                    yield _event("append", body, seq)
                    cursor = seq
                if not has_more:
                    break
            try:
                change = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            changes = [change]
            while not queue.empty():
                changes.append(queue.get_nowait())
            if None in changes:
                return
            for each in filter(None, changes):
                if each.kind in ("pop", "replace", "clear"):
                    revision = each.revision
                    if not revision and each.kind != "clear":
                        info = await store.get_session(tenant, session_id)
                        revision = info.revision if info is not None else 0
                    yield _event(each.kind, json.dumps({"revision": revision}))
                if each.kind == "clear":
                    # A cleared session starts again from 1 when next written.
                    cursor = 0


async def start_follow(app: Any, store: object, settings: Settings) -> PostgresListener | None:
    """Give ``app.state`` the hub its streams use; on PostgreSQL, start listening too."""
    dsn = getattr(store, "dsn", None)
    hub = Hub(max_streams=settings.max_follow_streams, local=dsn is None)
    app.state.hub = hub
    if dsn is None:
        return None
    listener = PostgresListener(dsn, hub)
    hub.registry = listener
    await listener.start()
    return listener
