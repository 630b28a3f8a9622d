"""The turn workload, run against us and the SDK sessions a team would pick instead.

A turn is what the SDK's ``Runner`` does to session memory around one model call: a
read, then ``add_items`` of 2 items of about 1 KB. The read is the workload's
(``WORKLOADS``): ``get_items(limit=20)``, or ``get_items()``, the whole history, which
is the Runner's default, with 200 or 1,000 items stored before the first turn. Each
of ``procs`` OS processes runs ``tasks`` asyncio tasks, each task on a session of its
own, all of a process's sessions sharing one client (an HTTP pool, a Redis
connection pool, an SQLAlchemy engine), as an agent host would.

Backends (``kind``): ``remote`` (RemoteSession -> session-memory, on SQLite or
PostgreSQL), ``redis`` (the SDK's RedisSession), ``redis_raw`` (redis-py's LRANGE and
RPUSH with no SDK, the floor of a Redis client's cost), ``sqlalchemy`` (the SDK's
SQLAlchemySession on asyncpg) and ``sqlite_session`` (the SDK's SQLiteSession on one
shared file). After each run every session is read back and must hold exactly the
prefill plus two items a completed turn: a backend that drops writes cannot win.
Each run also reports the CPU time per turn of the client processes and of the
server side (``bench.cpu``).

This module also owns the bench's infrastructure on the machine's services: its
own Redis database number (flushed), a Redis of its own with ``appendfsync always``
(``OwnRedis``), and its own PostgreSQL databases (created fresh, dropped after).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.cpu import CpuProbe, spent

ITEM: dict[str, Any] = {"role": "user", "content": "x" * 1000}  # about 1 KB as JSON


@dataclass(frozen=True)
class Workload:
    """A turn's read: ``get_items(limit)`` (None: the whole history), after ``prefill`` items."""

    name: str
    limit: int | None
    prefill: int


WORKLOADS = {
    # prefill 20: get_items(limit=20) returns a full page from the first turn.
    "limit20": Workload("get_items(limit=20)", 20, 20),
    "full200": Workload("get_items(), 200 items stored", None, 200),
    "full1000": Workload("get_items(), 1,000 items stored", None, 1000),
}
REDIS_URL = "redis://127.0.0.1:6379/13"  # a database number of the bench's own
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
START_REDIS = "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


# -- the services the bench needs ------------------------------------------------------


def fresh_redis(url: str = REDIS_URL) -> None:
    """Check Redis answers, then empty the bench's database number."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
        client.flushdb()
    except redis.ConnectionError as exc:
        raise SystemExit(
            f"the bench needs Redis at {url} ({exc}); start it with: {START_REDIS}"
        ) from exc
    finally:
        client.close()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(server_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def fresh_database(server_url: str, name: str) -> str:
    """Create database ``name`` anew on the server of ``server_url``; return its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    try:
        asyncio.run(
            _admin(
                server_url,
                f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                f"CREATE DATABASE {name}",
            )
        )
    except OSError as exc:
        raise SystemExit(
            f"the bench needs PostgreSQL at {server_url} ({exc}); start it with: {START_POSTGRES}"
        ) from exc
    return database_url(server_url, name)


def asyncpg_url(url: str) -> str:
    """The same database as SQLAlchemy's asyncpg dialect names it."""
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


def drop_database(server_url: str, name: str) -> None:
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


class OwnRedis:
    """A Redis of the caller's own, started on a free port and stopped after.

    With ``fsync`` (the bench's "Redis with appendfsync always" peer) the append-only
    file is on and each write is fsynced before it is answered; without it, nothing is
    kept on disk, like the machine's Redis. The tests use one so that nothing else on
    the machine (another test run, a ``make bench``) can empty their keys mid-test.
    """

    def __init__(self, port: int, *, fsync: bool = True) -> None:
        self.port, self.fsync = port, fsync
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="bench-redis-"))

    def __enter__(self) -> OwnRedis:
        import redis

        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.fsync else []
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--dir", str(self._dir), *persistence],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            for _ in range(100):
                if self.process.poll() is not None:
                    break  # the port was taken after all: never talk to another's Redis
                try:
                    if int(client.info("server")["process_id"]) == self.process.pid:
                        return self
                except redis.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.__exit__()
        raise SystemExit(f"redis-server did not start on {self.port}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
            self.process = None
        shutil.rmtree(self._dir, ignore_errors=True)


# -- one process of the workload ---------------------------------------------------------


class _RawRedis:
    """redis-py with no SDK: a list of JSON texts, read with LRANGE, written with RPUSH.

    Items come back as bytes, undecoded: what any Redis-backed session costs at least.
    """

    def __init__(self, client: Any, session_id: str) -> None:
        self.client, self.key = client, f"raw:{session_id}"

    async def get_items(self, limit: int | None = None) -> list[bytes]:
        items: list[bytes] = await self.client.lrange(self.key, -limit if limit else 0, -1)
        return items

    async def add_items(self, items: list[Any]) -> None:
        await self.client.rpush(self.key, *[json.dumps(item) for item in items])


class _Backend:
    """Opens a process's shared client and makes sessions on it."""

    def __init__(self, kind: str, target: str, tasks: int) -> None:
        self.kind, self.target, self.tasks = kind, target, tasks
        self.shared: Any = None

    async def __aenter__(self) -> _Backend:
        if self.kind == "remote":
            import aiohttp

            self.shared = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.tasks),
                timeout=aiohttp.ClientTimeout(total=60),
            )
        elif self.kind in ("redis", "redis_raw"):
            import redis.asyncio as redis

            self.shared = redis.Redis.from_url(self.target, max_connections=self.tasks)
        elif self.kind == "sqlalchemy":
            from sqlalchemy.ext.asyncio import create_async_engine

            self.shared = create_async_engine(
                self.target, pool_size=self.tasks, max_overflow=0, pool_timeout=60
            )
        return self

    def session(self, session_id: str) -> Any:
        if self.kind == "remote":
            from session_memory_client import RemoteSession

            return RemoteSession(session_id, base_url=self.target, http_client=self.shared)
        if self.kind == "redis":
            from agents.extensions.memory.redis_session import RedisSession

            return RedisSession(session_id, redis_client=self.shared)
        if self.kind == "redis_raw":
            return _RawRedis(self.shared, session_id)
        if self.kind == "sqlalchemy":
            from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

            # create_tables=True is the SDK's documented way to start without migrations.
            return SQLAlchemySession(session_id, engine=self.shared, create_tables=True)
        if self.kind == "sqlite_session":
            from agents import SQLiteSession

            return SQLiteSession(session_id, self.target)
        raise ValueError(f"unknown backend {self.kind!r}")

    async def __aexit__(self, *exc: object) -> None:
        if self.kind == "remote":
            await self.shared.close()
        elif self.kind in ("redis", "redis_raw"):
            await self.shared.aclose()
        elif self.kind == "sqlalchemy":
            await self.shared.dispose()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # the whole process, all threads
    return usage.ru_utime + usage.ru_stime


def run_turns(
    kind: str,
    target: str,
    prefix: str,
    tasks: int,
    start_at: float,
    seconds: float,
    workload: Workload = WORKLOADS["limit20"],
    hold: float = 0.0,
) -> tuple[list[float], dict[str, int], float, float]:
    """One process: ``tasks`` sessions doing turns from ``start_at`` (time.time()) for ``seconds``.

    Returns every turn's latency, the turns completed on each session, how late this
    process was ready (seconds after ``start_at``; 0 when on time), and the CPU
    seconds the process spent on the turns. The connections stay open ``hold`` seconds
    past the end, so the server's CPU can be read while its connections still exist
    (a PostgreSQL backend's CPU goes with it when it exits).
    """

    async def main() -> tuple[list[float], dict[str, int], float, float]:
        async with _Backend(kind, target, tasks) as backend:
            ids = [f"{prefix}-{os.getpid()}-{n}" for n in range(tasks)]
            sessions = [backend.session(session_id) for session_id in ids]
            for session in sessions:  # tables created, connections warm, the history stored
                for start in range(0, workload.prefill, 500):
                    await session.add_items([ITEM] * min(500, workload.prefill - start))
                # Read once, as by an agent that has run a turn already: the turns
                # measure a running agent, not its first read of each history.
                await session.get_items(limit=workload.limit)
            late = max(0.0, time.time() - start_at)
            await asyncio.sleep(max(0.0, start_at - time.time()))
            deadline = time.perf_counter() + seconds - late
            latencies: list[float] = []
            turns = dict.fromkeys(ids, 0)
            limit = workload.limit

            async def loop(session_id: str, session: Any) -> None:
                # At least one turn per session, however late this process was ready
                # (a loaded machine can start it past its deadline).
                while True:
                    start = time.perf_counter()
                    await session.get_items(limit=limit)
                    await session.add_items([ITEM, ITEM])
                    latencies.append(time.perf_counter() - start)
                    turns[session_id] += 1
                    if time.perf_counter() >= deadline:
                        break

            cpu = _cpu_seconds()
            await asyncio.gather(*(loop(i, s) for i, s in zip(ids, sessions, strict=True)))
            cpu = _cpu_seconds() - cpu
            await asyncio.sleep(max(0.0, start_at + seconds + hold - time.time()))
            for session in sessions:
                if kind == "sqlite_session":
                    session.close()
            return latencies, turns, late, cpu

    return asyncio.run(main())


def stored_counts(kind: str, target: str, session_ids: list[str]) -> dict[str, int]:
    """How many items each session holds, read back through the same session class."""

    async def main() -> dict[str, int]:
        async with _Backend(kind, target, 1) as backend:
            counts = {}
            for session_id in session_ids:
                session = backend.session(session_id)
                counts[session_id] = len(await session.get_items())
                if kind == "sqlite_session":
                    session.close()
            return counts

    return asyncio.run(main())


_MODULES = {
    "remote": "session_memory_client",
    "redis": "agents.extensions.memory.redis_session",
    "redis_raw": "redis.asyncio",
    "sqlalchemy": "agents.extensions.memory.sqlalchemy_session",
    "sqlite_session": "agents",
}


# Seconds the clients keep their connections after the turns; the server's CPU is read
# half way through (the last turns, started before the end, are done by then).
_HOLD = 1.5
_warmed: set[tuple[int, str]] = set()  # (pool, kind) pairs whose workers have imported


def _warm(kind: str) -> int:
    """Import what ``kind`` needs in a pool worker, so the first run is not paying for it."""
    # Every backend loads the SDK (RemoteSession too, on its first session), about 2 s.
    importlib.import_module("agents")
    importlib.import_module(_MODULES[kind])
    time.sleep(0.3)  # hold this worker so the next warm-up lands on another one
    return os.getpid()


def turns(
    pool: ProcessPoolExecutor,
    name: str,
    kind: str,
    target: str,
    *,
    procs: int,
    tasks: int,
    seconds: float,
    lead: float = 3.0,
    workload: Workload = WORKLOADS["limit20"],
    server_cpu: CpuProbe | None = None,
) -> dict[str, Any]:
    """Run the turn workload on one backend: turns/s, p50/p99 ms, CPU µs per turn (client,
    and server when ``server_cpu`` reads it), and the read-back check."""
    if (id(pool), kind) not in _warmed:
        for future in [pool.submit(_warm, kind) for _ in range(procs)]:
            future.result()
        _warmed.add((id(pool), kind))
    prefix = f"{kind}-{time.time_ns()}"
    stored_counts(kind, target, [f"{prefix}-setup"])  # tables created once, not in a race
    start_at = time.time() + lead
    hold = 0.0 if server_cpu is None else _HOLD
    futures = [
        pool.submit(run_turns, kind, target, prefix, tasks, start_at, seconds, workload, hold)
        for _ in range(procs)
    ]
    server_spent = None
    if server_cpu is not None:
        # From the start of the turns (not the filling of the histories) to their end,
        # read while the clients still hold their connections.
        time.sleep(max(0.0, start_at - time.time()))
        before = server_cpu()
        time.sleep(max(0.0, start_at + seconds + _HOLD / 2 - time.time()))
        server_spent = spent(before, server_cpu())
    results = [future.result() for future in futures]
    latencies = sorted(lat for lats, _, _, _ in results for lat in lats)
    per_session = {sid: n for _, counts, _, _ in results for sid, n in counts.items()}
    if len(per_session) != procs * tasks or not latencies:
        raise RuntimeError(f"{name}: expected {procs * tasks} sessions with turns, got {results}")
    stored = stored_counts(kind, target, list(per_session))
    expected = {sid: workload.prefill + 2 * n for sid, n in per_session.items()}
    if stored != expected:
        raise RuntimeError(f"{name}: stored item counts {stored} != written {expected}")
    return summary(
        name,
        workload,
        seconds,
        latencies,
        sessions=len(per_session),
        late=max(late for _, _, late, _ in results),
        client_cpu=sum(cpu for *_, cpu in results),
        server_cpu=server_spent,
    )


def summary(
    name: str,
    workload: Workload,
    seconds: float,
    latencies: list[float],
    *,
    sessions: int,
    late: float,
    client_cpu: float,
    server_cpu: float | None,
) -> dict[str, Any]:
    """A row of the table from every turn's latency (sorted) over ``seconds`` of turns,
    and the CPU seconds the clients and the server side spent on them. The latencies
    stay in the row (``latencies``) so that rounds can be merged (``merge``)."""
    count = len(latencies)
    return {
        "system": name,
        "workload": workload.name,
        "turns_per_s": round(count / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 1),
        "turns": count,
        "sessions": sessions,
        "late_start_s": round(late, 2),
        "client_cpu_us_per_turn": round(client_cpu / count * 1e6, 1),
        "server_cpu_us_per_turn": None
        if server_cpu is None
        else round(server_cpu / count * 1e6, 1),
        "seconds": seconds,
        "latencies": latencies,
    }


def merge(rows: list[dict[str, Any]], workload: Workload) -> dict[str, Any]:
    """The rows of several rounds of one system as one row over all their turns."""
    if len(rows) == 1:
        return rows[0]
    server = [row["server_cpu_us_per_turn"] for row in rows]
    return summary(
        rows[0]["system"],
        workload,
        sum(row["seconds"] for row in rows),
        sorted(lat for row in rows for lat in row["latencies"]),
        sessions=rows[0]["sessions"],
        late=max(row["late_start_s"] for row in rows),
        client_cpu=sum(row["client_cpu_us_per_turn"] * row["turns"] for row in rows) / 1e6,
        server_cpu=(
            None
            if None in server
            else sum(cpu * row["turns"] for cpu, row in zip(server, rows, strict=True)) / 1e6
        ),
    )
