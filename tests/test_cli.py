"""The ``session-memory`` command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx2
import pytest
from session_memory.main import openapi_spec
from session_memory.storage.sqlite import MIGRATIONS

from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow  # real processes over TCP


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "session_memory", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_openapi_command_prints_the_spec() -> None:
    result = run_cli("openapi")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == openapi_spec()


def test_serve_rejects_an_unknown_database_scheme(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "1", "--database-url", "mysql://x/y")
    assert result.returncode != 0
    assert "unsupported database URL scheme 'mysql'" in result.stderr


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    result = run_cli("serve", "--workers", "2", "--database-url", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode != 0
    assert "--workers needs PostgreSQL" in result.stderr


def test_migrate_command_creates_the_schema(tmp_path: Path) -> None:
    result = run_cli("migrate", "--database-url", f"sqlite:///{tmp_path}/m.db")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "m.db") as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == [version for version, _ in MIGRATIONS]


def test_serve_rejects_invalid_settings() -> None:
    result = run_cli("serve", "--port", "70000")
    assert result.returncode != 0
    assert "port" in result.stderr


def test_default_database_lives_under_data_in_the_working_directory(tmp_path: Path) -> None:
    server = ServerProcess(None, cwd=tmp_path).start()
    try:
        assert (tmp_path / "data" / "sessions.db").exists()
    finally:
        assert server.stop(signal.SIGTERM) == 0


def test_sigterm_finishes_in_flight_requests(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path}/s.db", log_path=tmp_path / "log").start()
    body = json.dumps({"items": [{"text": "x" * 1000} for _ in range(2000)]}).encode()
    head = (
        "POST /v1/sessions/s/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        # Headers and half the body are in: the request is in flight when SIGTERM lands.
        sock.sendall(head + body[: len(body) // 2])
        exit_codes: list[int] = []
        stopper = threading.Thread(target=lambda: exit_codes.append(server.stop(signal.SIGTERM)))
        stopper.start()
        # The server has stopped accepting once a new connection is refused.
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            except OSError:
                break
            threading.Event().wait(0.01)
        sock.sendall(body[len(body) // 2 :])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    stopper.join()
    assert answer.split(b" ", 2)[1] == b"201", answer
    assert exit_codes == [0]
    restarted = ServerProcess(f"sqlite:///{tmp_path}/s.db").start()
    try:
        items = httpx2.get(restarted.base_url + "/v1/sessions/s/items").json()["items"]
        assert len(items) == 2000
    finally:
        restarted.stop()


def test_config_prints_effective_settings_with_secrets_masked() -> None:
    result = run_cli(
        "config",
        env={
            "SESSION_MEMORY_API_KEYS": "alpha:very-secret-key",
            "SESSION_MEMORY_DATABASE_URL": "postgresql://app:hunter2@db:5432/sessions",
            "SESSION_MEMORY_MAX_ITEMS_PER_SESSION": "500",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "very-secret-key" not in result.stdout
    assert "hunter2" not in result.stdout
    effective = json.loads(result.stdout)
    assert effective["database_url"] == "postgresql://app:***@db:5432/sessions"
    assert effective["api_keys"] == "**********"
    assert effective["max_items_per_session"] == 500
    assert effective["port"] == 8000
