"""The benchmark's own machinery still fits the service (no timings asserted here)."""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import asyncpg
import httpx2
import pytest
import redis

from bench import peers
from bench.cpu import process_tree_cpu, redis_pid
from bench.lease_fence import lease_fence_bench
from bench.run import (
    REDIS,
    REDIS_FSYNC,
    REDIS_RAW,
    SM_PG,
    SM_SQLITE,
    SQLALCHEMY,
    SQLITE_SESSION,
    build_db,
    client_cost,
    peer_markdown,
    peer_table,
    wrk,
)
from tests.utils.postgres import POSTGRES_URL, require_postgres
from tests.utils.server import ServerProcess, free_port

# Real processes over TCP; each test has a Redis server of its own (own_redis).
pytestmark = pytest.mark.slow


def test_databases_built_for_the_scaling_series_are_served(tmp_path: Path) -> None:
    build_db(tmp_path / "b.db", [("s", 30), ("other", 2)], item_bytes=100)
    with ServerProcess(f"sqlite:///{tmp_path}/b.db", log_path=tmp_path / "log") as server:
        page = httpx2.get(f"{server.base_url}/v1/sessions/s/items?limit=20").json()
        assert (len(page["items"]), page["first_seq"], page["last_seq"]) == (20, 11, 30)
        listed = httpx2.get(f"{server.base_url}/v1/sessions").json()["sessions"]
        assert {record["id"]: record["item_count"] for record in listed} == {"s": 30, "other": 2}
        if shutil.which("wrk") is None:
            pytest.skip("wrk is not installed (apt-get install wrk); .ci/run installs it")
        result = wrk(f"{server.base_url}/v1/sessions/s/items?limit=20", connections=2, seconds=1)
        assert set(result) == {"rps", "p50_ms", "p99_ms"}


# -- the peers: a short run of the turn workload and of the client-cost line -----------


@pytest.fixture
def own_redis() -> Iterator[peers.OwnRedis]:
    """A Redis server of the test's own (nothing on disk, like the machine's): no other
    test run or `make bench` on this machine can empty its keys mid-test."""
    if shutil.which("redis-server") is None:  # CI installs it; missing, it is a failure
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    with peers.OwnRedis(free_port(), fsync=False) as server:
        yield server


def test_the_turn_workload_runs_against_us_and_every_peer(
    tmp_path: Path, own_redis: peers.OwnRedis
) -> None:
    require_postgres()
    suffix = uuid.uuid4().hex[:12]
    pg_db, sa_db = f"sm_bench_test_{suffix}", f"sm_bench_test_sa_{suffix}"
    pg_url = peers.fresh_database(POSTGRES_URL, pg_db)
    sa_url = peers.fresh_database(POSTGRES_URL, sa_db)
    try:
        with (
            ServerProcess(f"sqlite:///{tmp_path}/sm.db", log_path=tmp_path / "sm.log") as sm,
            ServerProcess(pg_url, log_path=tmp_path / "pg.log") as pg,
            ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            table = peer_table(
                pool,
                {
                    SM_SQLITE: ("remote", sm.base_url),
                    SM_PG: ("remote", pg.base_url),
                    REDIS: ("redis", own_redis.url),
                    SQLALCHEMY: (
                        "sqlalchemy",
                        peers.asyncpg_url(sa_url),
                    ),
                    SQLITE_SESSION: ("sqlite_session", str(tmp_path / "sdk.db")),
                },
                procs=2,
                tasks=2,
                seconds=0.3,
                lead=0.5,
            )
            # Independently of the bench's own read-back: the turns really reached each store.
            listed = httpx2.get(f"{pg.base_url}/v1/sessions", params={"limit": 100}).json()
            assert len([s for s in listed["sessions"] if s["item_count"] > 20]) == 4
        redis_keys = redis.Redis.from_url(own_redis.url).keys("agents:session:*:messages")
        assert len(redis_keys) == 2 * 2  # 2 processes x 2 tasks (the setup session stays empty)
        assert _scalar(sa_url, "SELECT count(DISTINCT session_id) FROM agent_messages") == 4
    finally:
        peers.drop_database(POSTGRES_URL, pg_db)
        peers.drop_database(POSTGRES_URL, sa_db)

    rows = {row["system"]: row for row in table["rows"]}
    assert list(rows) == [SM_SQLITE, SM_PG, REDIS, SQLALCHEMY, SQLITE_SESSION]
    for row in rows.values():
        assert (row["sessions"], row["turns"] > 0, row["p50_ms"] <= row["p99_ms"]) == (
            4,
            True,
            True,
        )
    assert set(table["ratios"]) == {
        f"{SM_SQLITE} / {REDIS}",
        f"{SM_PG} / {SQLALCHEMY}",
        f"{SM_SQLITE} / {SQLITE_SESSION}",
    }
    assert peer_markdown(table).count("\n") == 1 + len(rows)


def test_the_client_cost_line_measures_ours_and_redis_py(
    tmp_path: Path, own_redis: peers.OwnRedis
) -> None:
    cost = client_cost(200, tmp_path, own_redis.url)
    for key in ("ours", "redis-py", "RedisSession"):
        assert cost[key]["get_us"] > 0
        assert cost[key]["add_us"] > 0
    assert cost["ours_vs_redis_py_per_call"] > 0
    assert not redis.Redis.from_url(own_redis.url).keys("*")  # it cleaned up after itself


def test_the_full_history_workload_measures_cpu_and_a_redis_with_fsync(
    tmp_path: Path, own_redis: peers.OwnRedis
) -> None:
    workload = peers.Workload("get_items(), 30 items stored", None, 30)
    assert own_redis.process is not None
    plain_redis = redis_pid(own_redis.url)
    assert plain_redis == own_redis.process.pid
    with (
        ServerProcess(f"sqlite:///{tmp_path}/sm.db", log_path=tmp_path / "sm.log") as sm,
        peers.OwnRedis(free_port()) as fsync,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        assert sm.process is not None
        assert fsync.process is not None
        sm_pid, fsync_pid = sm.process.pid, fsync.process.pid
        config = redis.Redis.from_url(fsync.url).config_get("append*")
        assert (config["appendonly"], config["appendfsync"]) == ("yes", "always")
        table = peer_table(
            pool,
            {
                SM_SQLITE: ("remote", sm.base_url, lambda: process_tree_cpu(sm_pid)),
                REDIS_FSYNC: ("redis", fsync.url, lambda: process_tree_cpu(fsync_pid)),
                REDIS_RAW: ("redis_raw", own_redis.url, lambda: process_tree_cpu(plain_redis)),
            },
            procs=1,
            tasks=2,
            seconds=0.3,
            lead=0.5,
            workload=workload,
        )
    assert fsync.process is None  # stopped with the context
    for row in table["rows"]:
        assert row["workload"] == workload.name
        assert row["turns"] > 0
        assert row["client_cpu_us_per_turn"] > 0
        # Read from /proc in clock ticks (10 ms): a Redis of its own can spend less
        # than one in so short a run; ours, a Python process, never does.
        assert row["server_cpu_us_per_turn"] >= 0
    assert {row["system"]: row for row in table["rows"]}[SM_SQLITE]["server_cpu_us_per_turn"] > 0
    assert set(table["ratios"]) == {f"{SM_SQLITE} / {REDIS_FSYNC}"}
    assert set(table["client_cpu_ratios"]) == {f"{SM_SQLITE} / {REDIS_RAW}"}
    assert "server CPU" in peer_markdown(table)


def _scalar(url: str, sql: str) -> object:
    async def query() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(query())


def test_the_lease_fence_bench_appends_through_each_variant() -> None:
    require_postgres()
    result = asyncio.run(lease_fence_bench(POSTGRES_URL, rounds=1, calls=3, commit_wait=False))
    assert sorted(result) == ["inline", "unfenced", "wrapper"]
    assert all(m.wall_us > 0 and len(m.rounds_us) == 1 for m in result.values())
