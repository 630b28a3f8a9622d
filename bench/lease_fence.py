"""What the run lease check costs a PostgreSQL append: the store's ``append``, in-process.

Three stores, each on a fresh schema of its own: the fenced functions as migration 14
makes them (the check in the write's body), as migrations 12 and 13 made them (a
wrapper calling the check, then the write), and an unfenced reference (migration 14's
append without its check). Each append goes to one of them in turn, in a shuffled
order, so the machine's noise falls on all three alike; the rounds' medians, and the
median of those, are reported, with the CPU time the append cost its server backend.
Run with ``python -m bench.lease_fence [--postgres-url URL] [--no-commit-wait]``: the
last takes the wait for the commit's WAL flush out (``synchronous_commit=off``), which
on a busy disk is most of an append and buries the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from session_memory.storage.postgres import PostgresStore
from session_memory.storage.postgres.migrations import v12_run_leases, v14_inline_fence

__all__ = ["lease_fence_bench"]

ITEMS = [json.dumps({"role": "user", "content": "hello"}), json.dumps({"role": "assistant"})]
SESSIONS = 50


def _as_of_migration_13() -> str:
    """The check and the fenced functions as migrations 12 and 13 left them."""
    table = v12_run_leases._TABLE
    start = table.index("CREATE FUNCTION session_memory_lease_check(")
    check = table[start : table.index("$$;", start) + 3]
    return (check + v12_run_leases._FENCED_WRITES).replace(
        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
    )


def _unfenced() -> str:
    """Migration 14's append without its check: what an append costs unfenced."""
    fence = v14_inline_fence._fence("p_session")
    assert fence in v14_inline_fence._APPEND
    return v14_inline_fence._APPEND.replace(fence, "")


@dataclass(frozen=True, slots=True)
class Measured:
    """An append's median wall and backend CPU time, each round's median wall, and the
    median of the rounds' ratios of wall time to the unfenced append's."""

    wall_us: float
    cpu_us: float
    rounds_us: list[int]
    ratio: float


VARIANTS = {"inline": "", "wrapper": _as_of_migration_13(), "unfenced": _unfenced()}


def _schema_url(url: str, schema: str, commit_wait: bool) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    query += f"search_path={schema}" + ("" if commit_wait else "&synchronous_commit=off")
    return urlunsplit(parts._replace(query=query))


def _backend_cpu_ns(pid: int) -> int:
    """CPU time a backend has run (``/proc``: the server must be on this machine)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


async def lease_fence_bench(
    url: str, rounds: int, calls: int, *, commit_wait: bool = True
) -> dict[str, Measured]:
    """An append's times, per variant."""
    admin = await asyncpg.connect(url)
    schemas = {name: f"bench_fence_{uuid.uuid4().hex[:8]}" for name in VARIANTS}
    stores: dict[str, PostgresStore] = {}
    pids: dict[str, int] = {}
    try:
        for name, sql in VARIANTS.items():
            await admin.execute(f"CREATE SCHEMA {schemas[name]}")
            store = PostgresStore(_schema_url(url, schemas[name], commit_wait), pool_size=1)
            await store.open()
            stores[name] = store
            pool = store._pool
            assert pool is not None
            async with pool.acquire() as conn:
                if sql:
                    await conn.execute(sql)
                pids[name] = await conn.fetchval("SELECT pg_backend_pid()")
        rng = random.Random(14)
        walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
        cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for number in range(rounds):
            wall: dict[str, list[int]] = {name: [] for name in VARIANTS}
            cpu: dict[str, list[int]] = {name: [] for name in VARIANTS}
            for call in range(calls):
                order = list(VARIANTS)
                rng.shuffle(order)
                for name in order:
                    before = _backend_cpu_ns(pids[name])
                    started = time.perf_counter_ns()
                    await stores[name].append("", f"s{call % SESSIONS}", ITEMS, run_lease=None)
                    wall[name].append(time.perf_counter_ns() - started)
                    cpu[name].append(_backend_cpu_ns(pids[name]) - before)
            for name in VARIANTS:
                walls[name].append(statistics.median(wall[name]) / 1000)
                cpus[name].append(statistics.median(cpu[name]) / 1000)
            print(
                f"round {number}: "
                + ", ".join(f"{n} {walls[n][-1]:.0f}/{cpus[n][-1]:.0f} us" for n in VARIANTS),
                flush=True,
            )
    finally:
        for store in stores.values():
            await store.close()
        for schema in schemas.values():
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()
    return {
        name: Measured(
            statistics.median(walls[name]),
            statistics.median(cpus[name]),
            [round(x) for x in walls[name]],
            # Round by round: the load on the machine moves between rounds.
            statistics.median(w / u for w, u in zip(walls[name], walls["unfenced"], strict=True)),
        )
        for name in VARIANTS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000, help="appends per variant per round")
    parser.add_argument(
        "--no-commit-wait", action="store_true", help="synchronous_commit=off for the appends"
    )
    args = parser.parse_args()
    result = asyncio.run(
        lease_fence_bench(
            args.postgres_url, args.rounds, args.calls, commit_wait=not args.no_commit_wait
        )
    )
    unfenced = result["unfenced"]
    for name, m in result.items():
        print(
            f"{name:9s} wall {m.wall_us:6.1f} us (x{m.ratio:.3f} unfenced, by round)  "
            f"backend cpu {m.cpu_us:6.1f} us (x{m.cpu_us / unfenced.cpu_us:.3f} unfenced, "
            f"{m.cpu_us - unfenced.cpu_us:+.1f})  rounds {m.rounds_us}"
        )


if __name__ == "__main__":
    main()
