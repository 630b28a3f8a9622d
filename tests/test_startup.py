"""Starting and stopping the real ``session-memory`` command: clean stops, clear mistakes.

Each test runs the installed command in its own process group and reads its exit
status and stderr, as an operator would see them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from tests.utils.processes import end_group, spawn
from tests.utils.server import ServerProcess, free_port

pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    process = spawn(
        [sys.executable, "-m", "session_memory", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        end_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_short_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert 1 <= len(result.stderr.strip().splitlines()) <= 2, result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path}/s.db",
        log_path=tmp_path / "log",
        extra_args=["--log-level", "info"],
    ).start()
    assert server.stop(sig) == 0
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log
    assert "Application shutdown complete." in log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_long_command_stops_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    # `import` waiting on a pipe that never ends is a command that is running when stopped.
    process = spawn(
        [sys.executable, "-m", "session_memory", "import"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SESSION_MEMORY_DATABASE_URL": f"sqlite:///{tmp_path}/i.db"},
    )
    try:
        # Until the database exists the command has not reached its reading loop.
        while not (tmp_path / "i.db").exists() and process.poll() is None:
            subprocess.run(["sleep", "0.05"], check=True)
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    finally:
        end_group(process)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


def test_version_is_printed() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("session-memory ")


def test_a_sqlite_url_with_one_slash_is_refused_with_the_right_form(tmp_path: Path) -> None:
    result = run_cli("serve", "--database-url", "sqlite:/x.db", cwd=tmp_path)
    assert_short_error(result, "sqlite:///", "--database-url")
    assert not (tmp_path / "x.db").exists()


def test_an_unknown_database_scheme_names_the_flag(tmp_path: Path) -> None:
    result = run_cli("serve", "--database-url", "mysql://u:secret@x/y")
    assert_short_error(result, "unsupported database URL scheme 'mysql'", "--database-url")
    assert "secret" not in result.stderr


def test_a_data_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the folder should be")
    result = run_cli("serve", "--database-url", f"sqlite:///{tmp_path}/blocker/data/s.db")
    assert_short_error(result, "cannot create the data folder", "--database-url")


def test_a_port_in_use_is_found_before_the_database_is_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "serve", "--port", str(port), "--database-url", f"sqlite:///{tmp_path}/d/p.db"
        )
    assert_short_error(result, f"port {port}", "--port")
    assert not (tmp_path / "d" / "p.db").exists()


def test_a_second_server_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/one.db"
    with ServerProcess(url, log_path=tmp_path / "first.log") as first:
        result = run_cli("serve", "--port", str(free_port()), "--database-url", url)
        assert_short_error(result, "already serving", str(tmp_path / "one.db"), "--database-url")
        assert first.process is not None
        assert f"process {first.process.pid}" in result.stderr
        assert httpx2.get(first.base_url + "/readyz").status_code == 200
    # Once the first is gone (even killed) the file can be served again.
    with ServerProcess(url, log_path=tmp_path / "second.log") as second:
        assert httpx2.get(second.base_url + "/readyz").status_code == 200


def test_a_store_that_fails_to_open_is_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"this is not a SQLite database" * 100)
    result = run_cli(
        "serve", "--port", str(free_port()), "--database-url", f"sqlite:///{tmp_path}/bad.db"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "cannot start" in result.stderr
    assert "--database-url" in result.stderr


def test_start_up_summary_and_uvicorn_lines_are_json(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path}/sum.db",
        log_path=tmp_path / "log",
        extra_args=["--log-level", "info"],
        env={"SESSION_MEMORY_API_KEYS": "a:key-one-0123456789,a:key-two-0123456789,b:k3-012345"},
    )
    with server:
        pass
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    summary = next(line for line in lines if line["msg"].startswith("session-memory "))
    assert summary["backend"] == "sqlite"
    assert summary["database"] == str(tmp_path / "sum.db")
    assert summary["address"] == f"127.0.0.1:{server.port}"
    assert summary["ui"] == f"{server.base_url}/ui"
    assert summary["docs"] == f"{server.base_url}/docs"
    assert (summary["tenants"], summary["keys"], summary["open"]) == (2, 3, False)
    assert "/ui" in summary["msg"]
    assert "3 API keys for 2 tenants" in summary["msg"]


def test_start_up_summary_names_postgres_without_its_password(tmp_path: Path) -> None:
    from tests.utils.postgres import schema_url

    with schema_url() as url:
        secret_url = url.replace("postgres@", "postgres:hunter2@", 1)
        with ServerProcess(
            secret_url, log_path=tmp_path / "log", extra_args=["--log-level", "info"]
        ):
            pass
    text = (tmp_path / "log").read_text()
    assert "hunter2" not in text
    summary = next(
        json.loads(line) for line in text.splitlines() if '"backend": "postgresql"' in line
    )
    assert summary["database_host"] == "127.0.0.1:5432"
    assert summary["open"] is True


def test_workers_stop_cleanly_on_ctrl_c_and_leave_nothing(tmp_path: Path) -> None:
    from tests.utils.postgres import schema_url
    from tests.utils.processes import group_members

    with schema_url() as url:
        server = ServerProcess(
            url, log_path=tmp_path / "log", extra_args=["--workers", "2", "--log-level", "info"]
        ).start()
        assert server.process is not None
        assert server.process.send_signal(signal.SIGINT) is None
        try:
            assert server.process.wait(30) == 0
            # The workers and their resource tracker end with it, not by our kill
            # (the tracker notices its pipe closing a moment after the parent exits).
            deadline = time.monotonic() + 10
            while group_members(server.process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert group_members(server.process.pid) == []
        finally:
            end_group(server.process)
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log


# -- PostgreSQL's start-up mistakes: one line each, exit 1, as SQLite's -------------


def _postgres_url(
    *, user: str | None = None, port: int | None = None, database: str | None = None
) -> str:
    """The test server's URL with one part changed to something that is not there."""
    from urllib.parse import urlsplit

    from tests.utils.postgres import POSTGRES_URL, require_postgres

    require_postgres()
    parts = urlsplit(POSTGRES_URL)
    login = user or parts.username
    return (
        f"postgresql://{login}@{parts.hostname}:{port or parts.port or 5432}"
        f"/{database or parts.path.lstrip('/')}"
    )


def _postgres_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("session-memory: ")
    assert "--database-url" in result.stderr
    for needle in needles:
        assert needle in result.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"]])
def test_postgres_that_is_not_there_is_one_line(command: list[str]) -> None:
    port = free_port()  # nothing listens on it
    result = run_cli(*command, "--database-url", _postgres_url(port=port))
    _postgres_line(result, f"cannot reach PostgreSQL at 127.0.0.1:{port}", "connection refused")


def test_a_missing_postgres_database_is_one_line() -> None:
    result = run_cli(
        "serve", "--port", str(free_port()), "--database-url",
        _postgres_url(database="no_such_database_here"),
    )  # fmt: skip
    _postgres_line(result, "has no database 'no_such_database_here'", "createdb")


def test_a_postgres_login_refused_is_one_line() -> None:
    result = run_cli(
        "serve", "--port", str(free_port()), "--database-url",
        _postgres_url(user="no_such_role_here"),
    )  # fmt: skip
    _postgres_line(result, "refused the login", "no_such_role_here", "user or password")


def test_a_missing_postgres_driver_names_the_install_from_a_clone(tmp_path: Path) -> None:
    # An asyncpg that cannot be imported stands for an install without [postgres].
    (tmp_path / "asyncpg.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'asyncpg'\", name='asyncpg')\n"
    )
    path = [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    process = spawn(
        [sys.executable, "-m", "session_memory", "serve", "--port", str(free_port()),
         "--database-url", "postgresql://postgres@127.0.0.1:5432/test"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=60)
    finally:
        end_group(process)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert result.returncode == 1, err
    assert err == (
        "session-memory: PostgreSQL needs the asyncpg driver, which is not installed; "
        "from a clone of session-memory: pip install './client' '.[postgres]' (in the "
        "checkout's own .venv: .venv/bin/pip install -e '.[postgres]')\n"
    )


def test_the_start_up_line_says_how_to_stop(tmp_path: Path) -> None:
    with ServerProcess(
        f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "log", extra_args=["--log-level", "info"]
    ):
        pass
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    summary = next(line for line in lines if line["msg"].startswith("session-memory "))
    assert summary["msg"].endswith("; Ctrl-C stops it")
