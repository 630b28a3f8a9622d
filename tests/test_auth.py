"""API keys and tenants: who may read what."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from session_memory_client import ProblemError, RemoteSession

from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP

KEY_A, KEY_B, KEY_C = "key-alpha-0123456789", "key-beta-0123456789", "key-gamma-0123456789"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("auth")
    keys_file = folder / "keys"
    keys_file.write_text(f"# operators\n\ngamma:{KEY_C}\n")
    digest_b = hashlib.sha256(KEY_B.encode()).hexdigest()
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        env={
            "SESSION_MEMORY_API_KEYS": f"alpha:{KEY_A},beta:sha256:{digest_b}",
            "SESSION_MEMORY_API_KEYS_FILE": str(keys_file),
        },
    ) as server:
        yield server


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "url",
    ["/v1/sessions", "/v1/sessions/s", "/v1/sessions/s/items", "/v1/sessions/s/items?limit=5"],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("wrong"),
        auth(KEY_A + "x"),
        {"Authorization": KEY_A},
        {"Authorization": "Basic eDp5"},
    ],
)
def test_missing_or_wrong_key_is_the_same_401(
    keyed: ServerProcess, url: str, headers: dict[str, str]
) -> None:
    response = httpx2.get(keyed.base_url + url, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    # Whoever reads it (a script, the command line, the browser) is told where the key goes.
    assert body["detail"].startswith("send a valid API key as 'Authorization: Bearer <key>'")
    for where in ("api_key=", "--api-key", "API key box"):
        assert where in body["detail"]


def test_writes_without_a_key_store_nothing(keyed: ServerProcess) -> None:
    for method, url in [("POST", "/items"), ("DELETE", "/items/last"), ("DELETE", "")]:
        response = httpx2.request(
            method, f"{keyed.base_url}/v1/sessions/guarded{url}", json={"items": [{"n": 1}]}
        )
        assert response.status_code == 401
    assert (
        httpx2.get(f"{keyed.base_url}/v1/sessions/guarded/items", headers=auth(KEY_A)).json()[
            "items"
        ]
        == []
    )


def test_health_probes_need_no_key(keyed: ServerProcess) -> None:
    assert httpx2.get(keyed.base_url + "/healthz").status_code == 200
    assert httpx2.get(keyed.base_url + "/readyz").status_code == 200


async def test_tenants_are_isolated(keyed: ServerProcess) -> None:
    sessions = {
        key: RemoteSession("shared-id", base_url=keyed.base_url, api_key=key)
        for key in (KEY_A, KEY_B, KEY_C)
    }
    for key, remote in sessions.items():
        await remote.clear_session()
        await remote.add_items([{"owner": key[:9]}])  # type: ignore[list-item]
    for key, remote in sessions.items():
        assert await remote.get_items() == [{"owner": key[:9]}]
        assert await remote.get_items(limit=1) == [{"owner": key[:9]}]
    assert await sessions[KEY_B].pop_item() == {"owner": KEY_B[:9]}
    assert await sessions[KEY_A].get_items() == [{"owner": KEY_A[:9]}]
    await sessions[KEY_C].clear_session()
    assert await sessions[KEY_A].get_items() == [{"owner": KEY_A[:9]}]

    listed = httpx2.get(f"{keyed.base_url}/v1/sessions", headers=auth(KEY_B)).json()
    assert [record["id"] for record in listed["sessions"]] == ["shared-id"]
    assert listed["sessions"][0]["item_count"] == 0
    for remote in sessions.values():
        await remote.close()


async def test_client_with_a_wrong_key_gets_401(keyed: ServerProcess) -> None:
    async with RemoteSession("s", base_url=keyed.base_url, api_key="nope") as remote:
        with pytest.raises(ProblemError) as caught:
            await remote.get_items()
    assert caught.value.status == 401


def _serve(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "session_memory",
            "serve",
            "--database-url",
            f"sqlite:///{tmp_path}/x.db",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_refuses_to_serve_open_on_a_network_address(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--host", "0.0.0.0", "--port", "1", env={})
    assert result.returncode != 0
    assert "refusing to serve without API keys on 0.0.0.0" in result.stderr


def test_a_malformed_key_entry_stops_the_start(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--port", "1", env={"SESSION_MEMORY_API_KEYS": "no-colon-here"})
    assert result.returncode != 0
    assert "expected tenant:key" in result.stderr
    assert "no-colon-here" not in result.stderr  # the secret is never echoed


def _refused_in_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("text", ["", "\n\n", "# alpha:key-to-come\n\n# more later\n"])
def test_a_keys_file_without_keys_stops_the_start(tmp_path: Path, text: str) -> None:
    # Read as "no keys", it once started the server open to anyone.
    keys_file = tmp_path / "keys"
    keys_file.write_text(text)
    result = _serve(tmp_path, "--port", "1", env={"SESSION_MEMORY_API_KEYS_FILE": str(keys_file)})
    _refused_in_one_line(result, str(keys_file), "holds no API keys")


def test_a_keys_setting_without_keys_stops_the_start(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--port", "1", env={"SESSION_MEMORY_API_KEYS": " , "})
    _refused_in_one_line(result, "SESSION_MEMORY_API_KEYS", "holds no tenant:key")


def test_one_key_for_two_tenants_stops_the_start(tmp_path: Path) -> None:
    # Requests with it once landed in whichever tenant was listed last.
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# team\nalpha:{KEY_A}\nbeta:{KEY_B}\n\ngamma:{KEY_A}\n")
    result = _serve(tmp_path, "--port", "1", env={"SESSION_MEMORY_API_KEYS_FILE": str(keys_file)})
    _refused_in_one_line(result, f"{keys_file} line 5", "'alpha'", f"{keys_file} line 2")
    assert KEY_A not in result.stderr  # the secret is never echoed
    # Across the setting and the file too, a digest standing for the same key.
    digest = hashlib.sha256(KEY_B.encode()).hexdigest()
    result = _serve(
        tmp_path,
        "--port",
        "1",
        env={
            "SESSION_MEMORY_API_KEYS": f"delta:sha256:{digest}",
            "SESSION_MEMORY_API_KEYS_FILE": str(keys_file),
        },
    )
    _refused_in_one_line(result, f"{keys_file} line 3", "SESSION_MEMORY_API_KEYS entry 1")


def test_one_key_listed_twice_for_one_tenant_is_one_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"alpha:{KEY_A}\nalpha:{KEY_A}\n")
    server = ServerProcess(
        f"sqlite:///{tmp_path}/twice.db",
        log_path=tmp_path / "log",
        extra_args=["--log-level", "info"],
        env={"SESSION_MEMORY_API_KEYS_FILE": str(keys_file)},
    )
    with server:
        response = httpx2.get(server.base_url + "/v1/sessions", headers=auth(KEY_A))
        assert response.status_code == 200
    assert "1 API key for 1 tenant" in (tmp_path / "log").read_text()


def test_open_on_a_network_address_when_allowed(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path}/o.db",
        log_path=tmp_path / "log",
        extra_args=["--host", "0.0.0.0"],
        env={"SESSION_MEMORY_ALLOW_OPEN": "true"},
    )
    with server:
        assert httpx2.get(server.base_url + "/v1/sessions").status_code == 200
    assert "NO API KEYS CONFIGURED" in (tmp_path / "log").read_text()
