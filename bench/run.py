"""`make bench`: session-memory against the SDK's sessions and a bare-ASGI ceiling.

Everything runs side by side in one run, on this machine, with the same load
generators: wrk for server throughput (it is far faster than any Python client),
bench/loadgen.py (RemoteSession or SQLiteSession in 1 or 4 OS processes) for what
an agent sees end to end, bench/peers.py for the turn workload against the peers a
team would pick instead (RedisSession on the machine's Redis, SQLAlchemySession on
its PostgreSQL), and bench/clients.py for the client's CPU per call against
redis-py's. Prints the tables and writes the figures as JSON.

    python -m bench.run [--quick] [--only SECTION ...] [--postgres-url URL] [--redis-url URL]
                        [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
from session_memory.storage.sqlite import MIGRATIONS, split_script

from bench import clients, peers
from bench.cpu import CpuProbe, pg_backends_cpu, process_tree_cpu, redis_pid
from bench.history import history_bench
from bench.loadgen import ITEM, OPS, prefill, run_clients
from tests.utils.server import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
# The databases the bench creates (and drops) on the PostgreSQL server it is given.
PG_DB = "session_memory_bench"
SQLALCHEMY_DB = "session_memory_bench_sqlalchemy"
ITEM_JSON = json.dumps(ITEM)

# -- processes and memory --------------------------------------------------------------


def proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status field in kB (VmHWM = peak RSS, RssAnon = anonymous memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


class Ceiling(ServerProcess):
    """The bare ASGI app under the same server (uvicorn, uvloop, httptools)."""

    def __init__(self, log_path: Path) -> None:
        super().__init__("", log_path=log_path)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "bench.ceiling:app", "--port", str(self.port),
            "--log-level", "warning", "--no-server-header", "--timeout-keep-alive", "30",
        ]  # fmt: skip


# -- wrk -----------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, *, connections: int, seconds: float, post: bool = False) -> dict[str, float]:
    """Requests per second and p50/p99 latency (ms) from one wrk run."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if post:
        script = Path(tempfile.gettempdir()) / "session-memory-post.lua"
        body = json.dumps({"items": [ITEM]})
        script.write_text(
            f"wrk.method = 'POST'\nwrk.body = [[{body}]]\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        command[1:1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors from {url}:\n{out}")
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        value, unit = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        result[f"p{pct}_ms"] = round(float(value) * _UNITS[unit], 3)
    return result


# -- the end-to-end table ------------------------------------------------------------


def e2e(
    pool: ProcessPoolExecutor, kind: str, target: str, op: str, procs: int, tasks: int, secs: float
) -> dict[str, float]:
    session_id = {"add_items(1)": "w1", "add_items(10)": "w10", "get_items(20)": "r"}.get(op, "p")
    futures = [
        pool.submit(run_clients, kind, target, op, session_id, tasks, secs) for _ in range(procs)
    ]
    latencies = [lat for future in futures for lat in future.result()]
    latencies.sort()
    return {
        "ops_per_s": round(len(latencies) / secs, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


def e2e_table(
    pool: ProcessPoolExecutor, systems: dict[str, tuple[str, str, int | None]], secs: float
) -> list[dict[str, Any]]:
    rows = []
    for name, (kind, target, pid) in systems.items():
        prefill(kind, target, "r", 1000)
        prefill(kind, target, "p", 40_000 if kind != "ceiling" else 0)
        for op in OPS:
            for label, procs, tasks in (("1", 1, 1), ("32 (4x8)", 4, 8)):
                result = e2e(
                    pool, "remote" if kind == "ceiling" else kind, target, op, procs, tasks, secs
                )
                rows.append({"system": name, "op": op, "concurrency": label, **result})
                print(f"  {name:28} {op:14} c={label:9} {result}", flush=True)
        if pid is not None:
            rows.append({"system": name, "server_peak_rss_mb": mb(proc_status(pid, "VmHWM"))})
    return rows


# -- the turn workload against the peers, and the client's cost ------------------------

SM_SQLITE = "RemoteSession -> session-memory on SQLite"
SM_PG = "RemoteSession -> session-memory on PostgreSQL"
REDIS = "RedisSession (Redis on loopback)"
REDIS_FSYNC = "RedisSession, Redis with appendfsync always"
REDIS_RAW = "redis-py LRANGE/RPUSH, no SDK (machine's Redis)"
SQLALCHEMY = "SQLAlchemySession on the same PostgreSQL (asyncpg)"
SQLITE_SESSION = "SQLiteSession, one shared file"

# (ours, peer) pairs whose ratios the goals name, where both ran; and on the
# full-history workloads, ours on PostgreSQL against Redis too.
RATIO_PAIRS = (
    (SM_SQLITE, REDIS),
    (SM_SQLITE, REDIS_FSYNC),
    (SM_PG, SQLALCHEMY),
    (SM_SQLITE, SQLITE_SESSION),
)
FULL_HISTORY_PAIRS = ((SM_PG, REDIS),)
# System: (kind, target) or (kind, target, a probe of the server side's CPU).
System = tuple[str, str] | tuple[str, str, CpuProbe | None]


def peer_table(
    pool: ProcessPoolExecutor,
    systems: dict[str, System],
    *,
    procs: int,
    tasks: int,
    seconds: float,
    lead: float = 3.0,
    workload: peers.Workload = peers.WORKLOADS["limit20"],
    rounds: int = 1,
) -> dict[str, Any]:
    """The turn workload on each system; rows plus the ratios the issue asks for.

    With several ``rounds`` of ``seconds`` each, the systems take turns, in reverse
    order every other round (A B C, C B A, ...), so load that drifts during the run
    (other jobs on the machine) weighs on each alike; a row covers all its rounds.
    """
    measured: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for round_ in range(rounds):
        names = list(systems) if round_ % 2 == 0 else list(reversed(systems))
        for name in names:
            kind, target, *probe = systems[name]
            row = peers.turns(
                pool,
                name,
                kind,
                target,
                procs=procs,
                tasks=tasks,
                seconds=seconds,
                lead=lead,
                workload=workload,
                server_cpu=probe[0] if probe else None,
            )
            measured[name].append(row)
            shown = {key: value for key, value in row.items() if key != "latencies"}
            print(f"  {name:52} {shown}", flush=True)
    rows = []
    for name in systems:
        row = peers.merge(measured[name], workload)
        del row["latencies"]
        rows.append(row)
    by_name = {row["system"]: row for row in rows}
    ratios = {}
    pairs = RATIO_PAIRS + (FULL_HISTORY_PAIRS if workload.limit is None else ())
    for ours, peer in pairs:
        if ours in by_name and peer in by_name:
            ratios[f"{ours} / {peer}"] = {
                "turns": round(by_name[ours]["turns_per_s"] / by_name[peer]["turns_per_s"], 3),
                "p99": round(by_name[ours]["p99_ms"] / by_name[peer]["p99_ms"], 3),
            }
    client_cpu = {}
    for ours in (SM_SQLITE, SM_PG):
        for peer in (REDIS_RAW, REDIS):
            if ours in by_name and peer in by_name:
                client_cpu[f"{ours} / {peer}"] = round(
                    by_name[ours]["client_cpu_us_per_turn"]
                    / by_name[peer]["client_cpu_us_per_turn"],
                    3,
                )
    return {
        "workload": f"{workload.name}: {procs} processes x {tasks} tasks",
        "rows": rows,
        "ratios": ratios,
        "client_cpu_ratios": client_cpu,
    }


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def peer_markdown(table: dict[str, Any]) -> str:
    lines = [
        "| backend | turns/s | p50 ms | p99 ms | client CPU µs/turn | server CPU µs/turn |",
        "|---|---|---|---|---|---|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| {row['system']} | {row['turns_per_s']:,.0f} | {row['p50_ms']:.0f} "
            f"| {row['p99_ms']:.0f} | {_us(row.get('client_cpu_us_per_turn'))} "
            f"| {_us(row.get('server_cpu_us_per_turn'))} |"
        )
    return "\n".join(lines)


CLIENT_COST = {
    "ours": "RemoteSession (aiohttp), decodes",
    "redis-py": "redis-py LRANGE 20 / RPUSH 2",
    "RedisSession": "RedisSession (redis-py), decodes",
}


def client_cost(calls: int, log_dir: Path, redis_url: str = peers.REDIS_URL) -> dict[str, Any]:
    """Client CPU per call: RemoteSession vs raw redis-py (and the SDK's RedisSession)."""
    rows = clients.measure(list(CLIENT_COST.values()), calls, log_dir, redis_url=redis_url)
    cpu = {(row["client"], row["op"]): row["cpu_us_per_call"] for row in rows}
    out: dict[str, Any] = {"calls": calls, "rows": rows}
    for key, name in CLIENT_COST.items():
        out[key] = {
            "get_us": cpu[name, "get"],
            "add_us": cpu[name, "post"],
            "turn_us": round(cpu[name, "get"] + cpu[name, "post"], 1),
        }
    out["ours_vs_redis_py_per_call"] = round(out["ours"]["turn_us"] / out["redis-py"]["turn_us"], 3)
    out["ours_vs_redis_session_per_turn"] = round(
        out["ours"]["turn_us"] / out["RedisSession"]["turn_us"], 3
    )
    return out


# -- databases built directly, for the scaling series --------------------------------


def build_db(path: Path, sessions: list[tuple[str, int]], item_bytes: int = 200) -> None:
    """A SQLite file in the service's schema holding ``sessions`` (id, item count)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    conn.execute("BEGIN")
    for version, sql in MIGRATIONS:
        for statement in split_script(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
    body = json.dumps({"role": "user", "content": "y" * (item_bytes - 32)})
    now = time.time()
    conn.executemany(
        "INSERT INTO sessions (id, tenant, session_id, created_at, updated_at, item_count, "
        "last_seq, revision) VALUES (?, '', ?, ?, ?, ?, ?, ?)",
        ((n + 1, sid, now, now, count, count, n + 1) for n, (sid, count) in enumerate(sessions)),
    )
    for n, (_, count) in enumerate(sessions):
        conn.executemany(
            "INSERT INTO items (session, seq, body) VALUES (?, ?, ?)",
            ((n + 1, seq, body) for seq in range(1, count + 1)),
        )
    conn.execute("COMMIT")
    # A served database has its WAL checkpointed; a 200 MB WAL would slow every read.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def tail_latency(base_url: str, session_id: str, secs: float) -> dict[str, float]:
    """get_items(limit=20) latency with one connection (wrk -c1)."""
    return wrk(f"{base_url}/v1/sessions/{session_id}/items?limit=20", connections=1, seconds=secs)


def scaling(work: Path, quick: bool, secs: float) -> dict[str, Any]:
    big = 100_000 if quick else 1_000_000
    cases = {
        "items_100": [("s", 100)],
        "items_10000": [("s", 10_000)],
        f"items_{big}": [("s", big)],
        "sessions_10000": [("s", 100)] + [(f"o{n}", 1) for n in range(9_999)],
        f"sessions_{big}": [("s", 100)] + [(f"o{n}", 1) for n in range(big - 1)],
    }
    out: dict[str, Any] = {}
    for name, sessions in cases.items():
        db = work / f"{name}.db"
        started = time.perf_counter()
        build_db(db, sessions)
        built = time.perf_counter() - started
        with ServerProcess(f"sqlite:///{db}", log_path=work / "scaling.log") as server:
            out[name] = tail_latency(server.base_url, "s", secs)
        print(f"  {name:18} built in {built:4.1f}s  {out[name]}", flush=True)
        db.unlink()
    return out


# -- memory --------------------------------------------------------------------------


def memory(work: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with ServerProcess(f"sqlite:///{work}/mem.db", log_path=work / "mem.log") as server:
        assert server.process is not None
        time.sleep(1)
        out["idle_rss_anon_mb"] = mb(proc_status(server.process.pid, "RssAnon"))
        target = 100_000 if quick else 1_000_000
        script = work / "many.lua"
        body = json.dumps({"items": [{"role": "user", "content": "z" * 60}] * 100})
        script.write_text(
            f"local body = [[{body}]]\nlocal n = 0\n"
            "request = function()\n  n = n + 1\n"
            "  return wrk.format('POST', '/v1/sessions/m' .. (n % 10000) .. '/items', "
            "{['Content-Type'] = 'application/json'}, body)\nend\n"
        )
        # 100 items a request over 10,000 sessions, until the target count is stored.
        load = subprocess.Popen(
            ["wrk", "-t1", "-c32", "-d300s", "-s", str(script), server.base_url],
            stdout=subprocess.DEVNULL,
        )
        with sqlite3.connect(work / "mem.db") as conn:
            while (
                conn.execute("SELECT coalesce(sum(item_count), 0) FROM sessions").fetchone()[0]
                < target
                and load.poll() is None
            ):
                time.sleep(0.2)
            load.terminate()
            load.wait()
            written = conn.execute("SELECT count(*), count(DISTINCT session) FROM items").fetchone()
        out["written_items"], out["written_sessions"] = written
        out["after_writes_rss_anon_mb"] = mb(proc_status(server.process.pid, "RssAnon"))

    count = 20_000 if quick else 100_000
    build_db(work / "stream.db", [("big", count)], item_bytes=1000)
    with ServerProcess(f"sqlite:///{work}/stream.db", log_path=work / "mem.log") as server:
        assert server.process is not None
        pid = server.process.pid
        before = proc_status(pid, "RssAnon")
        peak = before
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, proc_status(pid, "RssAnon"))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        received = 0
        with httpx2.stream("GET", f"{server.base_url}/v1/sessions/big/items", timeout=120) as r:
            for chunk in r.iter_bytes():
                received += len(chunk)
        stop.set()
        sampler.join()
        out["stream"] = {
            "items": count,
            "body_mb": round(received / 2**20, 1),
            "rss_anon_growth_mb": mb(peak - before),
        }
    return out


# -- targets -------------------------------------------------------------------------


def find(rows: list[dict[str, Any]], system: str, op: str, concurrency: str) -> dict[str, Any]:
    return next(
        r for r in rows if r["system"] == system and r.get("op") == op
        and r.get("concurrency") == concurrency
    )  # fmt: skip


def targets(results: dict[str, Any], big: int) -> list[dict[str, Any]]:
    """Every goal whose figures this run measured (``--only`` may leave some out)."""
    checks: list[tuple[str, float, str, bool]] = []
    if "e2e" in results and "server" in results:
        checks += _server_checks(results)
    if "scaling" in results:
        scale = results["scaling"]
        items_ratio = scale[f"items_{big}"]["p50_ms"] / scale["items_100"]["p50_ms"]
        sessions_ratio = scale[f"sessions_{big}"]["p50_ms"] / scale["sessions_10000"]["p50_ms"]
        checks += [
            (f"get_items(20) p50, {big} vs 100 items", items_ratio, "<= 1.2", items_ratio <= 1.2),
            (
                f"get_items(20) p50, {big} vs 10000 sessions",
                sessions_ratio,
                "<= 1.2",
                sessions_ratio <= 1.2,
            ),
        ]
    if "memory" in results:
        checks += _memory_checks(results["memory"])
    checks += peer_checks(results)
    if "client_cost" in results:
        cost = results["client_cost"]["ours_vs_redis_py_per_call"]
        checks.append(
            (
                "client CPU per call (get + add), RemoteSession vs redis-py",
                cost,
                "<= 1.0",
                cost <= 1,
            )
        )
    return [
        {"target": name, "measured": round(value, 3), "goal": goal, "met": met}
        for name, value, goal, met in checks
    ]


def _server_checks(results: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    rows = results["e2e"]
    srv = results["server"]
    sm = "session-memory (SQLite)"
    base = "SQLiteSession x4 processes"
    add_ratio = (
        find(rows, sm, "add_items(1)", "32 (4x8)")["ops_per_s"]
        / find(rows, base, "add_items(1)", "32 (4x8)")["ops_per_s"]
    )
    return [
        ("add_items(1) from 4 processes vs SQLiteSession x4", add_ratio, ">= 3.0", add_ratio >= 3),
        (
            "GET items?limit=20 vs bare ASGI (wrk, c=32)",
            srv["get_ratio"],
            ">= 0.50",
            srv["get_ratio"] >= 0.5,
        ),
        (
            "POST items (1 item) vs bare ASGI (wrk, c=32)",
            srv["post_ratio"],
            ">= 0.50",
            srv["post_ratio"] >= 0.5,
        ),
    ]


def _memory_checks(mem: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    return [
        (
            f"RssAnon growth streaming {mem['stream']['body_mb']} MB",
            mem["stream"]["rss_anon_growth_mb"],
            "< 50 MB",
            mem["stream"]["rss_anon_growth_mb"] < 50,
        ),
        ("RssAnon at idle", mem["idle_rss_anon_mb"], "< 80 MB", mem["idle_rss_anon_mb"] < 80),
        (
            f"RssAnon after {mem['written_items']} items over {mem['written_sessions']} sessions",
            mem["after_writes_rss_anon_mb"],
            "< 130 MB",
            mem["after_writes_rss_anon_mb"] < 130,
        ),
    ]


# The goals on the turn workloads: (workload, ours, peer, field, at least?, bound).
PEER_GOALS: tuple[tuple[str, str, str, str, bool, float], ...] = (
    ("full200", SM_SQLITE, REDIS, "turns", True, 3.0),
    ("full200", SM_SQLITE, REDIS, "p99", False, 0.5),
    ("full200", SM_PG, REDIS, "turns", True, 2.0),
    ("full1000", SM_SQLITE, REDIS, "turns", True, 5.0),
    ("full1000", SM_PG, REDIS, "turns", True, 5.0),
    ("limit20", SM_SQLITE, REDIS, "turns", True, 1.0),
    ("limit20", SM_SQLITE, REDIS_FSYNC, "turns", True, 1.5),
    ("limit20", SM_PG, SQLALCHEMY, "turns", True, 3.0),
)


def peer_checks(results: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """The goals of the turn workloads that were measured: ratios, and client CPU per turn."""
    checks = []
    tables = results.get("peers", {})
    for key, ours, peer, field, at_least, bound in PEER_GOALS:
        ratio = tables.get(key, {}).get("ratios", {}).get(f"{ours} / {peer}")
        if ratio is None:
            continue
        value = ratio[field]
        what = "turns/s" if field == "turns" else "p99 turn"
        checks.append(
            (
                f"{peers.WORKLOADS[key].name}: {what}, {_short(ours)} vs {_short(peer)}",
                value,
                f"{'>=' if at_least else '<='} {bound}",
                value >= bound if at_least else value <= bound,
            )
        )
    for key, table in tables.items():
        cpu = table.get("client_cpu_ratios", {}).get(f"{SM_SQLITE} / {REDIS_RAW}")
        if cpu is not None:
            name = f"{peers.WORKLOADS[key].name}: client CPU per turn, ours vs redis-py"
            checks.append((name, cpu, "<= 1.0", cpu <= 1))
    return checks


def _short(system: str) -> str:
    return {
        SM_SQLITE: "ours on SQLite",
        SM_PG: "ours on PostgreSQL",
        REDIS: "RedisSession",
        REDIS_FSYNC: "RedisSession (fsync)",
        REDIS_RAW: "redis-py",
        SQLALCHEMY: "SQLAlchemySession",
        SQLITE_SESSION: "SQLiteSession",
    }.get(system, system)


def turn_systems(
    sm: ServerProcess, pg: ServerProcess, fsync: peers.OwnRedis, args: argparse.Namespace
) -> dict[str, System]:
    """Every backend of the turn workload, each with a probe of its server side's CPU."""
    assert sm.process is not None
    assert pg.process is not None
    assert fsync.process is not None
    sm_pid, pg_pid, fsync_pid = sm.process.pid, pg.process.pid, fsync.process.pid
    redis_server = redis_pid(args.redis_url)
    sqlalchemy_url = peers.asyncpg_url(peers.database_url(args.postgres_url, SQLALCHEMY_DB))

    def ours_on_pg() -> dict[int, float]:
        return {**process_tree_cpu(pg_pid), **pg_backends_cpu(args.postgres_url, PG_DB)}

    return {
        SM_SQLITE: ("remote", sm.base_url, lambda: process_tree_cpu(sm_pid)),
        SM_PG: ("remote", pg.base_url, ours_on_pg),
        REDIS: ("redis", args.redis_url, lambda: process_tree_cpu(redis_server)),
        REDIS_FSYNC: ("redis", fsync.url, lambda: process_tree_cpu(fsync_pid)),
        REDIS_RAW: ("redis_raw", args.redis_url, lambda: process_tree_cpu(redis_server)),
        SQLALCHEMY: (
            "sqlalchemy",
            sqlalchemy_url,
            lambda: pg_backends_cpu(args.postgres_url, SQLALCHEMY_DB),
        ),
        SQLITE_SESSION: ("sqlite_session", str(args.work / "turns-sdk.db"), None),
    }


def section(title: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:5.1f}s] {title}", flush=True)


SECTIONS = ("server", "e2e", "turns", "clients", "scaling", "history", "memory")


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        ),
    }


def server_section(sm: ServerProcess, ceiling: ServerProcess, wrk_secs: int) -> dict[str, Any]:
    httpx2.post(
        f"{sm.base_url}/v1/sessions/r/items", json={"items": [ITEM] * 1000}
    ).raise_for_status()
    server: dict[str, Any] = {}
    for name, url in (("ceiling", ceiling.base_url), ("session-memory", sm.base_url)):
        server[f"{name} GET"] = wrk(
            f"{url}/v1/sessions/r/items?limit=20", connections=32, seconds=wrk_secs
        )
        server[f"{name} POST"] = wrk(
            f"{url}/v1/sessions/wrk/items", connections=32, seconds=wrk_secs, post=True
        )
    for key, value in server.items():
        print(f"  {key:22} {value}", flush=True)
    server["get_ratio"] = round(
        server["session-memory GET"]["rps"] / server["ceiling GET"]["rps"], 3
    )
    server["post_ratio"] = round(
        server["session-memory POST"]["rps"] / server["ceiling POST"]["rps"], 3
    )
    return server


def turns_section(
    pool: ProcessPoolExecutor,
    sm: ServerProcess,
    pg: ServerProcess,
    args: argparse.Namespace,
    seconds: float,
) -> dict[str, Any]:
    """Every workload of the turn table, on every backend (a Redis with fsync started for it)."""
    tables = {}
    with peers.OwnRedis(free_port()) as fsync:
        systems = turn_systems(sm, pg, fsync, args)
        for key, workload in peers.WORKLOADS.items():
            print(f"  -- {workload.name}", flush=True)
            tables[key] = peer_table(
                pool,
                systems,
                procs=4,
                tasks=8,
                seconds=seconds,
                lead=2.0,
                workload=workload,
                rounds=2,
            )
    return tables


def run_sections(args: argparse.Namespace, results: dict[str, Any], started: float) -> None:
    """The sections ``args.only`` names, in order, on servers started for them."""
    only, work = set(args.only), args.work
    secs = 1.0 if args.quick else 1.5  # per end-to-end measurement
    pg_url = peers.database_url(args.postgres_url, PG_DB)
    with (
        ServerProcess(f"sqlite:///{work}/sm.db", log_path=work / "sm.log") as sm,
        Ceiling(work / "ceiling.log") as ceiling,
        ServerProcess(pg_url, log_path=work / "pg.log") as pg,
        ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        assert sm.process is not None
        assert ceiling.process is not None
        assert pg.process is not None
        if "server" in only:
            section("server throughput (wrk, 1 thread, 32 connections)", started)
            results["server"] = server_section(sm, ceiling, 2 if args.quick else 3)
        if "e2e" in only:
            section(
                "end to end (Python clients; 1 process x 1 task, or 4 processes x 8 tasks)", started
            )
            systems: dict[str, tuple[str, str, int | None]] = {
                "SQLiteSession x4 processes": ("sqlite_session", str(work / "sdk.db"), None),
                "session-memory (SQLite)": ("remote", sm.base_url, sm.process.pid),
                "ceiling (bare ASGI)": ("ceiling", ceiling.base_url, ceiling.process.pid),
                "session-memory (PostgreSQL)": ("remote", pg.base_url, pg.process.pid),
            }
            results["e2e"] = e2e_table(pool, systems, secs)
        if "turns" in only:
            section("turns: a read + add_items(2 x 1 KB), 4 processes x 8 tasks, 2 rounds", started)
            results["peers"] = turns_section(pool, sm, pg, args, 1.0 if args.quick else 3.0)
    if "clients" in only:
        section("client CPU per call, 8 tasks, do-nothing server on the other CPU", started)
        results["client_cost"] = client_cost(1500 if args.quick else 4000, work, args.redis_url)
    if "scaling" in only:
        section("scaling: get_items(limit=20) latency, one connection", started)
        results["scaling"] = scaling(work, args.quick, 2)
    if "history" in only:
        section("history: replace, follow (append -> event), fork", started)
        results["history"] = history_bench(work, args.postgres_url, args.quick)
    if "memory" in only:
        section("memory", started)
        results["memory"] = memory(work, args.quick)
        print(f"  {results['memory']}", flush=True)


def report(results: dict[str, Any]) -> None:
    loads = (
        round(results["load_average_at_start"][0], 1),
        round(results["load_average_at_end"][0], 1),
    )
    print(f"\ntargets ({results['seconds']} s in all; load average {loads[0]} -> {loads[1]})")
    for row in results["targets"]:
        mark = "MET " if row["met"] else "MISS"
        print(f"  {mark} {row['target']:72} {row['measured']:>10} (goal {row['goal']})")
    for table in results.get("peers", {}).values():
        print("\nturns (" + table["workload"] + ")\n" + peer_markdown(table))
        for name, ratio in table["ratios"].items():
            print(f"  {name}: turns/s x{ratio['turns']}, p99 x{ratio['p99']}")
        for name, ratio in table["client_cpu_ratios"].items():
            print(f"  client CPU per turn, {name}: x{ratio}")
    cost = results.get("client_cost")
    if cost is not None:
        print(
            f"client CPU per call pair (µs): RemoteSession {cost['ours']['turn_us']}, redis-py "
            f"{cost['redis-py']['turn_us']} (x{cost['ours_vs_redis_py_per_call']}), RedisSession "
            f"{cost['RedisSession']['turn_us']} (x{cost['ours_vs_redis_session_per_turn']})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and shorter runs")
    parser.add_argument(
        "--postgres-url",
        default=peers.POSTGRES_SERVER,
        help="the PostgreSQL server the bench creates its own databases on",
    )
    parser.add_argument(
        "--redis-url", default=peers.REDIS_URL, help="Redis database (number) the bench flushes"
    )
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="run these sections"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk: apt-get install wrk")
    peers.fresh_redis(args.redis_url)
    peers.fresh_database(args.postgres_url, PG_DB)
    peers.fresh_database(args.postgres_url, SQLALCHEMY_DB)
    args.work = Path(tempfile.mkdtemp(prefix="session-memory-bench-"))
    results: dict[str, Any] = {
        "machine": _machine(),
        "quick": args.quick,
        "sections": args.only,
        # Other jobs on the machine move every figure; the load says how busy it was.
        "load_average_at_start": os.getloadavg(),
    }
    started = time.perf_counter()
    try:
        run_sections(args, results, started)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
        peers.drop_database(args.postgres_url, PG_DB)
        peers.drop_database(args.postgres_url, SQLALCHEMY_DB)
        peers.fresh_redis(args.redis_url)

    results["targets"] = targets(results, 100_000 if args.quick else 1_000_000)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["load_average_at_end"] = os.getloadavg()
    report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
