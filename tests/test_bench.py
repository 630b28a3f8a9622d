"""The benchmark's own machinery still fits the service (no timings asserted here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx2
import pytest

from bench.run import build_db, wrk
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP


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
