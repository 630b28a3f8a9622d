"""Every ``session-memory`` command from a plain install: ``pip install ./client .``.

No dev extras, so none of the test tools (httpx2, pytest) and no PostgreSQL driver:
what a user gets from the README's install. ``sessions fork`` and ``follow`` once
failed there with ``No module named 'httpx2'`` while the tests, which have it,
passed. The environment is made once for this module, from a copy of the sources
(see ``tests.utils.venvs``), and every command runs from it: each one's ``--help``,
then each against a live server that the plain install serves, or on its files.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from session_memory.cli import build_parser

from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess
from tests.utils.venvs import copy_sources, fresh_venv, pip_install, pip_list, run

pytestmark = pytest.mark.slow

# Nothing from this repository may reach the plain environment's commands.
ISOLATED = {"PYTHONPATH": "", "PYTHONSAFEPATH": "1"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plain environment's ``bin`` folder, after ``pip install ./client .``."""
    folder = tmp_path_factory.mktemp("plain-install")
    clone = copy_sources(folder / "clone")
    python = fresh_venv(folder / "venv")
    pip_install(python, "./client", ".", cwd=clone)
    installed = pip_list(python)
    assert {"session-memory", "session-memory-client", "aiohttp"} <= set(installed)
    # What only the dev extras or [postgres] bring is absent.
    assert not {"httpx2", "pytest", "asyncpg"} & set(installed), sorted(installed)
    return python.parent


class PlainServer(ServerProcess):
    """``serve`` run by the plain environment's ``session-memory`` script."""

    def __init__(self, bin_dir: Path, database_url: str, **kwargs: Any) -> None:
        super().__init__(database_url, **kwargs)
        self.script = bin_dir / "session-memory"

    def command(self) -> list[str]:
        # The parent's command is [python, "-m", "session_memory", "serve", ...].
        return [str(self.script), *super().command()[3:]]


@pytest.fixture(scope="module")
def served(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlainServer]:
    folder = tmp_path_factory.mktemp("plain-server")
    server = PlainServer(
        plain, f"sqlite:///{folder}/s.db", log_path=folder / "log", env=ISOLATED, cwd=folder
    )
    with server:
        yield server


def cli(plain: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(plain / "session-memory"), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env={**ISOLATED, "PATH": str(plain), "HOME": str(plain.parent)},
        cwd=plain.parent,
    )
    assert "ModuleNotFoundError" not in result.stderr, result.stderr
    return result


def _commands() -> list[list[str]]:
    """Every command and ``sessions`` action the parser knows, as argument lists."""

    def below(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    found += below(sub, [*prefix, name])
        return found

    return below(build_parser(), [])


def test_every_command_has_help(plain: Path) -> None:
    commands = _commands()
    assert ["sessions", "follow"] in commands
    assert ["sessions", "fork"] in commands
    assert cli(plain, "--help").returncode == 0
    assert cli(plain, "--version").stdout.startswith("session-memory ")
    for command in commands:
        result = cli(plain, *command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith("usage: session-memory " + " ".join(command))


def test_sessions_commands_against_a_live_server(plain: Path, served: PlainServer) -> None:
    url = ["--base-url", served.base_url]
    httpx2.post(
        f"{served.base_url}/v1/sessions/plain/items",
        json={"items": [{"n": 1}, {"n": 2}]},
        headers={"Session-Metadata": '{"topic": "install"}'},
    ).raise_for_status()
    listed = cli(plain, "sessions", "list", *url, "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "plain" in {record["id"] for record in json.loads(listed.stdout)["sessions"]}
    shown = cli(plain, "sessions", "show", "plain", *url, "--items")
    assert shown.returncode == 0, shown.stderr
    assert 'metadata: {"topic": "install"}' in shown.stdout.splitlines()
    forked = cli(plain, "sessions", "fork", "plain", "plain-copy", "--through-seq", "1", *url)
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout)["count"] == 1
    follower = spawn(
        [str(plain / "session-memory"), "sessions", "follow", "plain", "--after", "0", *url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**ISOLATED, "PATH": str(plain)},
    )
    try:
        assert follower.stdout is not None
        events = [json.loads(follower.stdout.readline()) for _ in range(2)]
        assert events == [
            {"event": "append", "seq": 1, "item": {"n": 1}},
            {"event": "append", "seq": 2, "item": {"n": 2}},
        ]
        follower.send_signal(signal.SIGINT)
        assert follower.wait(30) == 0
    finally:
        end_group(follower)
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()
    assert cli(plain, "sessions", "delete", "plain-copy", *url).returncode == 0
    exported = cli(plain, "export", *url)
    assert exported.returncode == 0, exported.stderr
    assert '"session_id":"plain"' in exported.stdout


def test_data_and_info_commands_on_files(plain: Path, tmp_path: Path) -> None:
    database = ["--database-url", f"sqlite:///{tmp_path}/plain.db"]
    assert cli(plain, "migrate", *database).returncode == 0
    lines = '{"tenant":"t","session_id":"s","item":{"n":1}}\n'
    loaded = cli(plain, "import", *database, stdin=lines)
    assert loaded.returncode == 0, loaded.stderr
    exported = cli(plain, "export", *database)
    # An export carries each session's record, then its items with their seqs.
    record, item = (json.loads(line) for line in exported.stdout.splitlines())
    assert (record["session_id"], record["session"]["last_seq"]) == ("s", 1)
    assert item == {"tenant": "t", "session_id": "s", "seq": 1, "item": {"n": 1}}
    assert json.loads(cli(plain, "config").stdout)["port"] == 8000
    assert json.loads(cli(plain, "openapi").stdout)["openapi"].startswith("3.")


def test_postgres_without_its_driver_names_the_install_from_a_clone(plain: Path) -> None:
    result = cli(
        plain, "serve", "--port", "0", "--database-url", "postgresql://postgres@127.0.0.1/test"
    )
    assert result.returncode == 1
    assert result.stderr == (
        "session-memory: PostgreSQL needs the asyncpg driver, which is not installed; "
        "from a clone of session-memory: pip install './client' '.[postgres]' (in the "
        "checkout's own .venv: .venv/bin/pip install -e '.[postgres]')\n"
    )


def test_the_plain_install_runs_nothing_from_the_repository(plain: Path) -> None:
    where = run(
        plain / "python",
        "-c",
        "import session_memory, session_memory_client; "
        "print(session_memory.__file__); print(session_memory_client.__file__)",
        env=ISOLATED,
        cwd=plain.parent,
    ).stdout.split()
    assert all(str(plain.parent) in path and "site-packages" in path for path in where), where
