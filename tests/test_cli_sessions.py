"""``session-memory sessions``: flags before or after the action, pages, metadata, warnings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import pytest

from tests.utils.server import ServerProcess, free_port

pytestmark = pytest.mark.slow  # a real server and the real command

KEY = "cli-sessions-key-0123456789"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "session_memory", "sessions", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SESSION_MEMORY_API_KEY": ""},
    )


@pytest.fixture(scope="module")
def five(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose one key sees five sessions, s0 to s4, each with metadata and one
    item; s2 has a TTL of its own and had a second item, popped."""
    folder = tmp_path_factory.mktemp("cli-sessions")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "log",
        env={"SESSION_MEMORY_API_KEYS": f"ops:{KEY}"},
    ) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        for n in range(5):
            items = [{"n": n}, {"n": "popped"}] if n == 2 else [{"n": n}]
            httpx2.post(
                f"{server.base_url}/v1/sessions/s{n}/items",
                json={"items": items},
                headers={
                    **auth,
                    "Session-Metadata": json.dumps({"topic": f"t{n}"}),
                    **({"Session-TTL": "3600"} if n == 2 else {}),
                },
            ).raise_for_status()
        httpx2.delete(f"{server.base_url}/v1/sessions/s2/items/last", headers=auth)
        yield server.base_url


def test_connection_flags_go_after_the_action_too(five: str) -> None:
    after = run("list", "--base-url", five, "--api-key", KEY, "--json")
    assert after.returncode == 0, after.stderr
    assert len(json.loads(after.stdout)["sessions"]) == 5
    # After the action they win over the ones before it.
    both = run("--base-url", "http://127.0.0.1:9", "--api-key", "wrong", "show", "s1")
    assert both.returncode != 0
    both = run(
        "--base-url", "http://127.0.0.1:9", "show", "s1", "--base-url", five, "--api-key", KEY
    )
    assert both.returncode == 0, both.stderr
    assert run("--api-key", KEY, "list", "--base-url", five).returncode == 0


def test_list_pages_with_cursor_and_all(five: str) -> None:
    flags = ["--base-url", five, "--api-key", KEY]
    first = run("list", *flags, "--limit", "2", "--json")
    page = json.loads(first.stdout)
    assert len(page["sessions"]) == 2
    assert page["next_cursor"]
    second = json.loads(
        run("list", *flags, "--limit", "2", "--cursor", page["next_cursor"], "--json").stdout
    )
    seen = [record["id"] for record in page["sessions"] + second["sessions"]]
    assert len(set(seen)) == 4
    every = json.loads(run("list", *flags, "--limit", "2", "--all", "--json").stdout)
    assert sorted(record["id"] for record in every["sessions"]) == [f"s{n}" for n in range(5)]
    assert every["next_cursor"] is None
    # For people: the table says how to go on.
    table = run("list", *flags, "--limit", "2")
    assert len(table.stdout.splitlines()) == 3
    assert f"--cursor {page['next_cursor']}" in table.stderr
    assert "--all" in table.stderr
    assert len(run("list", *flags, "--limit", "2", "--all").stdout.splitlines()) == 6


def test_show_prints_metadata(five: str) -> None:
    text = run("show", "s3", "--base-url", five, "--api-key", KEY, "--items")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert 'metadata: {"topic": "t3"}' in lines
    assert lines[-1] == '   1  {"n": 3}'
    shown = json.loads(run("show", "s3", "--base-url", five, "--api-key", KEY, "--json").stdout)
    assert shown["metadata"] == {"topic": "t3"}


def test_show_prints_the_ttl_and_the_last_seq(five: str) -> None:
    own = run("show", "s2", "--base-url", five, "--api-key", KEY).stdout.splitlines()
    assert [line for line in own if line.startswith(("ttl:", "last seq:"))] == [
        "ttl:      3600 s",
        "last seq: 2",
    ]
    default = run("show", "s3", "--base-url", five, "--api-key", KEY).stdout.splitlines()
    assert "ttl:      the server's default" in default
    assert "last seq: 1" in default


def test_fork_and_follow_take_the_flags_after_the_action(five: str) -> None:
    done = run("fork", "s4", "s4-copy", "--base-url", five, "--api-key", KEY)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "session_id": "s4-copy",
        "count": 1,
        "first_seq": 1,
        "last_seq": 1,
    }
    refused = run("fork", "s4", "s4-copy", "--base-url", five, "--api-key", KEY)
    assert refused.returncode == 1
    assert refused.stderr.startswith("session-memory: 409 ")
    command = [sys.executable, "-m", "session_memory", "sessions", "follow", "s4-copy"]
    follower = subprocess.Popen(
        [*command, "--after", "0", "--base-url", five, "--api-key", KEY],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline()) == {
            "event": "append",
            "seq": 1,
            "item": {"n": 4},
        }
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()


def test_a_server_that_does_not_answer_is_said_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("list", "--base-url", url)
    assert result.returncode == 1
    first, last = result.stderr.splitlines()
    assert first.startswith(f"session-memory: could not connect to session-memory at {url}")
    assert "retrying for up to" in first
    assert "(at most 2 more attempts)" in first
    assert last.startswith(f"session-memory: could not connect to session-memory at {url}")
