"""``session-memory sessions fork`` and ``sessions follow`` against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx2

from tests.utils.server import ServerProcess


def cli(base_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "session_memory", "sessions", "--base-url", base_url, *args]


def test_sessions_fork_and_follow(server: ServerProcess, session_id: str) -> None:
    items = f"{server.base_url}/v1/sessions/{session_id}/items"
    httpx2.post(items, json={"items": [{"n": 1}, {"n": 2}]}).raise_for_status()
    done = subprocess.run(
        cli(server.base_url, "fork", session_id, session_id + "-b", "--through-seq", "1"),
        capture_output=True,
        check=True,
    )
    assert json.loads(done.stdout)["count"] == 1
    follower = subprocess.Popen(
        cli(server.base_url, "follow", session_id, "--after", "1"),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert follower.stdout is not None
        line = json.loads(follower.stdout.readline())
        assert line == {"event": "append", "seq": 2, "item": {"n": 2}}
        httpx2.delete(items + "/last").raise_for_status()
        assert json.loads(follower.stdout.readline())["event"] == "pop"
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()
