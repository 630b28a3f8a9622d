"""CPU time of the processes on the server side of a benchmark: our service, Redis, PostgreSQL.

Read from ``/proc`` (user + system time of every thread, and of child processes), so
it counts what the server spent on the work whatever else the machine was doing.
The PostgreSQL part counts only the backends connected to the bench's own database,
so other users of the same cluster do not show up in it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["CpuProbe", "pg_backends_cpu", "process_tree_cpu", "redis_pid", "spent"]

_TICK = os.sysconf("SC_CLK_TCK")

CpuProbe = Callable[[], dict[int, float]]
"""Cumulative CPU seconds per process of a server, read now (a pid gone is left out)."""


def _cpu(pid: int) -> float | None:
    """utime + stime of ``pid`` (all its threads), in seconds; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Past the command: the state is field 3 of stat, so utime and stime (14, 15) are 11, 12.
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(n) for n in (task / "children").read_text().split()]
    except OSError:
        pass
    return kids


def process_tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and every live descendant (a server's workers)."""
    out: dict[int, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        cpu = _cpu(current)
        if cpu is not None:
            out[current] = cpu
            pending += _children(current)
    return out


def pg_backends_cpu(server_url: str, database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database`` now."""

    async def pids() -> list[int]:
        import asyncpg

        conn = await asyncpg.connect(server_url, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            return [int(row[0]) for row in rows]
        finally:
            await conn.close()

    out: dict[int, float] = {}
    for pid in asyncio.run(pids()):
        cpu = _cpu(pid)
        if cpu is not None:
            out[pid] = cpu
    return out


def redis_pid(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two readings (a process born in between counts whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
