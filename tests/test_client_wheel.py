"""The client's wheel, installed alone into a fresh environment next to someone's agent project.

Slow by nature (fresh virtual environments, the Agents SDK from the package index), so
the wheel is built once per test run and pip's own cache is reused.
"""

from __future__ import annotations

import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.server import ServerProcess
from tests.utils.venvs import fresh_venv, pip_list, run

ROOT = Path(__file__).resolve().parent.parent
PROJECT = Path(__file__).resolve().parent / "agent_project"
# The oldest openai-agents release the client supports, and the newest.
SDK_VERSIONS = ["0.23.1", "0.24.0"]
SERVER_PACKAGES = {"fastapi", "uvicorn", "aiosqlite", "session-memory"}


def _run(*command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return run(*command, cwd=cwd, env=env).stdout


@pytest.fixture(scope="session")
def client_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client's wheel, built once per test run from client/."""
    out = tmp_path_factory.mktemp("wheel")
    # Built as pip builds it for a user (isolated, with the declared setuptools), once.
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out,
        ROOT / "client",
    )  # fmt: skip
    (wheel,) = out.glob("session_memory_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/")[0] for name in archive.namelist()}
    # One import package of our own: nothing named app or client lands in site-packages.
    assert {name for name in top if not name.endswith(".dist-info")} == {"session_memory_client"}
    return wheel


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "server.log") as server:
        yield server


@pytest.mark.parametrize("sdk_version", SDK_VERSIONS)
def test_wheel_alone_serves_an_agent_project(
    sdk_version: str, client_wheel: Path, live_server: ServerProcess, tmp_path: Path
) -> None:
    python = fresh_venv(tmp_path / "venv")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]

    _run(*pip, client_wheel)
    alone = pip_list(python)
    assert "session-memory-client" in alone
    assert "aiohttp" in alone
    assert "httpx2" not in alone  # the client speaks HTTP through aiohttp alone
    assert not SERVER_PACKAGES & set(alone), sorted(alone)

    # Without the SDK the client still works (scripts, the service's own CLI).
    without_sdk = _run(
        python,
        "-c",
        "import asyncio\n"
        "from session_memory_client import SessionMemoryClient\n"
        "async def main():\n"
        "    async with SessionMemoryClient() as client:\n"
        "        await client.session('no-sdk').add_items([{'n': 1}])\n"
        "        print((await client.session('no-sdk').read_items()).items)\n"
        "asyncio.run(main())\n",
        cwd=tmp_path,
        env={"SESSION_MEMORY_BASE_URL": live_server.base_url},
    )
    assert without_sdk.strip() == "[{'n': 1}]"

    # The agent project's own dependency, pinned by the project; the client must not move it.
    _run(*pip, f"openai-agents=={sdk_version}")
    assert pip_list(python)["openai-agents"] == sdk_version

    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    out = _run(
        python,
        "agent.py",
        cwd=project,
        env={
            "SESSION_MEMORY_BASE_URL": live_server.base_url,
            # Nothing from this repository may leak into the fresh environment.
            "PYTHONPATH": "",
            "PYTHONSAFEPATH": "",
        },
    )
    assert out.splitlines() == [
        f"openai-agents {sdk_version}",
        "project modules: app, client",
        "second turn saw: My name is Ada. | Nice to meet you, Ada. | What is my name?",
    ]
