"""The ``session-memory`` command line."""

from __future__ import annotations

import json
import os
import signal
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
    results: list[int] = []

    def send() -> None:
        try:
            response = httpx2.post(
                server.base_url + "/v1/sessions/s/items",
                content=body,
                headers={"content-type": "application/json"},
                timeout=30,
            )
        except (httpx2.ConnectError, httpx2.RemoteProtocolError):
            # The stop came first: refused, or closed before its headers were read.
            return
        results.append(response.status_code)

    sender = threading.Thread(target=send)
    sender.start()
    threading.Event().wait(0.05)
    assert server.stop(signal.SIGTERM) == 0
    sender.join()
    if results == [201]:  # the request made it in before the stop: it was completed
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
