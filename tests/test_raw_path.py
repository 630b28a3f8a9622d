"""Session ids decoded from the raw path: ``%2F`` and invalid UTF-8 are 422s, never
another session or a path separator. A real server per path (hot path, FastAPI).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .utils.server import ServerProcess

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module", params=["hot-path", "fastapi"])
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp(f"raw-path-{request.param}")
    env = {"SESSION_MEMORY_HOT_PATH": "true" if request.param == "hot-path" else "false"}
    with ServerProcess(
        f"sqlite:///{folder}/paths.db", log_path=folder / "server.log", env=env
    ) as server:
        yield server.base_url


def _fill(base_url: str, encoded_id: str, count: int = 2) -> None:
    items = ",".join(f'{{"n":{n}}}' for n in range(count))
    answer = httpx2.post(
        f"{base_url}/v1/sessions/{encoded_id}/items",
        content=f'{{"items":[{items}]}}'.encode(),
        headers=JSON,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text


def _count(base_url: str, encoded_id: str) -> int:
    answer = httpx2.get(f"{base_url}/v1/sessions/{encoded_id}/items?limit=100", timeout=30)
    assert answer.status_code == 200, answer.text
    return len(answer.json()["items"])


def _assert_422(answer: httpx2.Response, loc: list[str]) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["errors"][0]["loc"] == loc


def test_an_encoded_slash_in_an_id_pops_nothing(base_url: str) -> None:
    victim = f"cli-{uuid.uuid4()}"
    _fill(base_url, victim)
    answer = httpx2.delete(f"{base_url}/v1/sessions/{victim}%2Fitems%2Flast", timeout=30)
    _assert_422(answer, ["path", "session_id"])
    answer = httpx2.delete(f"{base_url}/v1/sessions/{victim}%2fitems%2flast", timeout=30)
    _assert_422(answer, ["path", "session_id"])
    assert _count(base_url, victim) == 2


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", "/items?limit=5"), ("GET", "/items"), ("POST", "/items"), ("GET", ""), ("DELETE", "")],
)
def test_an_encoded_slash_is_refused_on_every_route(
    base_url: str, method: str, suffix: str
) -> None:
    answer = httpx2.request(
        method,
        f"{base_url}/v1/sessions/a%2Fb{suffix}",
        content=b'{"items":[{}]}' if method == "POST" else None,
        headers=JSON,
        timeout=30,
    )
    _assert_422(answer, ["path", "session_id"])


@pytest.mark.parametrize("escape", ["%FF", "%FE", "%C0", "%C0%AF", "%ED%A0%80", "x%E2%82"])
def test_invalid_utf8_in_an_id_is_refused(base_url: str, escape: str) -> None:
    for method, suffix in (("POST", "/items"), ("GET", "/items?limit=1"), ("DELETE", "")):
        answer = httpx2.request(
            method,
            f"{base_url}/v1/sessions/{escape}{suffix}",
            content=b'{"items":[{}]}' if method == "POST" else None,
            headers=JSON,
            timeout=30,
        )
        _assert_422(answer, ["path", "session_id"])


def test_the_replacement_character_is_an_id_of_its_own(base_url: str) -> None:
    # U+FFFD itself is a valid id; it no longer shares a session with %FF or %FE.
    _fill(base_url, "%EF%BF%BD", count=1)
    record = httpx2.get(f"{base_url}/v1/sessions/%EF%BF%BD", timeout=30).json()
    assert record["id"] == "\ufffd"
    assert httpx2.get(f"{base_url}/v1/sessions/%FF", timeout=30).status_code == 422


def test_other_escapes_still_name_their_session(base_url: str) -> None:
    _fill(base_url, "caf%C3%A9%20%3F%25", count=3)
    record = httpx2.get(f"{base_url}/v1/sessions/caf%C3%A9%20%3F%25", timeout=30).json()
    assert record["id"] == "café ?%"
    assert _count(base_url, "caf%C3%A9%20%3F%25") == 3


def test_cli_delete_refuses_a_slash_and_pops_nothing(base_url: str) -> None:
    victim = f"cli-{uuid.uuid4()}"
    _fill(base_url, victim)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "session_memory",
            "sessions",
            "--base-url",
            base_url,
            "delete",
            f"{victim}/items/last",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "'/'" in done.stderr
    assert _count(base_url, victim) == 2
