"""PostgreSQL's change feed: LISTEN for the writes of every replica, handed to a sink.

A trigger (migration 8) NOTIFYs channel ``CHANNEL`` when a write to a followed
session commits; ``PostgresListener`` (one dedicated connection per process) hears
it and hands it to the process's ``ChangeSink`` (the follow hub), so a write
through any replica reaches every follower. A notification only wakes followers:
they read the items themselves from the store, so a lost or doubled one costs
nothing but a wait for the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..contract import ChangeSink
from .driver import Connection, connect

__all__ = ["CHANNEL", "PostgresListener"]

logger = logging.getLogger("session_memory")

# The channel the trigger notifies; the database's, so the payload names the schema:
# [kind, schema, tenant, session id, revision (0 for a clear), last seq].
CHANNEL = "session_memory"


class PostgresListener:
    """LISTEN on one dedicated connection; every notification goes to the sink.

    NOTIFY serialises commits database-wide, so the trigger sends one only for a
    session some process follows: this connection registers the sessions its sink
    follows in ``session_followers`` (rows keyed by its backend pid, so a crashed
    process's rows are recognised and dropped by the next one to connect).

    A lost connection is reopened (every second until it works), the followed
    sessions registered again, and every follower woken, so none waits on a
    notification sent while it was away.
    """

    def __init__(self, dsn: str, sink: ChangeSink) -> None:
        self.dsn = dsn
        self.sink = sink
        self._conn: Connection | None = None
        self._schema: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._keep(), name="follow-listener")

    async def _connect(self) -> None:
        conn = await connect(self.dsn, timeout=5)
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
        for tenant, session_id in self.sink.followed():
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
                    self.sink.wake_all()
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
        if self.sink.stopping:
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

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            kind, schema, tenant, session_id, revision, _last_seq = json.loads(str(payload))
        except ValueError:
            return
        if schema != self._schema:
            return
        self.sink.deliver(tenant, session_id, kind, revision)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=2)
