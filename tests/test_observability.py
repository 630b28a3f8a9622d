"""Metrics, request ids and the JSON request log, from a real server process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP

KEY = "observer-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("observed")
    with ServerProcess(
        f"sqlite:///{folder}/o.db",
        log_path=folder / "server.log",
        extra_args=["--log-level", "info"],
        env={"SESSION_MEMORY_API_KEYS": f"watchers:{KEY}"},
    ) as server:
        yield server


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_requests_items_and_batches(observed: ServerProcess) -> None:
    base = observed.base_url
    before = httpx2.get(base + "/metrics").text
    route = "/v1/sessions/{session_id}/items"
    for _ in range(3):
        response = httpx2.post(
            base + "/v1/sessions/m/items", json={"items": [{"n": 1}] * 4}, headers=AUTH
        )
        assert response.status_code == 201
    assert httpx2.get(base + "/v1/sessions/m/items?limit=5", headers=AUTH).status_code == 200
    assert httpx2.get(base + "/v1/sessions/m/items", headers=AUTH).status_code == 200  # routed
    assert httpx2.get(base + "/v1/sessions/m/items").status_code == 401
    after = httpx2.get(base + "/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text

    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("session_memory_requests_total", method="POST", route=route, status="201") == 3
    assert grew("session_memory_requests_total", method="GET", route=route, status="200") == 2
    assert grew("session_memory_requests_total", method="GET", route=route, status="401") == 1
    assert grew("session_memory_items_written_total") == 12
    assert grew("session_memory_items_read_total") == 5 + 12
    assert grew("session_memory_write_batch_items_count") == 3
    assert grew("session_memory_write_batch_items_sum") == 12
    assert grew("session_memory_request_duration_seconds_count", method="POST", route=route) == 3
    assert "session_memory_sessions " in text


def test_request_id_is_echoed_or_made(observed: ServerProcess) -> None:
    given = httpx2.get(observed.base_url + "/healthz", headers={"X-Request-ID": "trace-abc-123"})
    assert given.headers["x-request-id"] == "trace-abc-123"
    made = httpx2.get(observed.base_url + "/v1/sessions/x/items?limit=1", headers=AUTH)
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    odd = httpx2.get(observed.base_url + "/healthz", headers={"X-Request-ID": "x" * 500})
    assert odd.headers["x-request-id"] != "x" * 500


def test_one_json_log_line_per_request(observed: ServerProcess, tmp_path: Path) -> None:
    rid = "log-line-check-42"
    httpx2.post(
        observed.base_url + "/v1/sessions/logged/items",
        json={"items": [{"n": 1}]},
        headers={**AUTH, "X-Request-ID": rid},
    )
    httpx2.get(
        observed.base_url + "/v1/sessions/logged", headers={**AUTH, "X-Request-ID": rid + "b"}
    )
    assert observed.log_path is not None
    lines = [
        json.loads(line)
        for line in observed.log_path.read_text().splitlines()
        if line.startswith("{")
    ]
    post = next(line for line in lines if line.get("request_id") == rid)
    assert post["msg"] == "request"
    assert (post["method"], post["route"], post["status"], post["tenant"]) == (
        "POST",
        "/v1/sessions/{session_id}/items",
        201,
        "watchers",
    )
    assert post["duration_ms"] >= 0
    routed = next(line for line in lines if line.get("request_id") == rid + "b")
    assert (routed["route"], routed["status"], routed["tenant"]) == (
        "/v1/sessions/{session_id}",
        200,
        "watchers",
    )
    assert KEY not in observed.log_path.read_text()


def test_probes_and_the_browser_log_at_debug(observed: ServerProcess) -> None:
    quiet = ["/healthz", "/readyz", "/metrics"]
    for path in quiet:
        httpx2.get(observed.base_url + path, headers={"X-Request-ID": "quiet" + path})
    httpx2.get(
        observed.base_url + "/v1/sessions/browsed/items?limit=5",
        headers={**AUTH, "X-Request-ID": "from-ui", "Referer": observed.base_url + "/ui"},
    )
    httpx2.get(
        observed.base_url + "/v1/sessions/browsed/items?limit=5",
        headers={**AUTH, "X-Request-ID": "not-from-ui", "Referer": observed.base_url + "/x"},
    )
    assert observed.log_path is not None
    logged = {
        json.loads(line).get("request_id")
        for line in observed.log_path.read_text().splitlines()
        if line.startswith("{")
    }
    assert "not-from-ui" in logged  # the server logs at info, and this one is info
    assert not logged & {"from-ui", *("quiet" + path for path in quiet)}
