"""``session-memory sessions lease`` (and the lease in ``show`` and ``follow``) against a
real server on each backend: which run holds a session, and freeing a stuck lease."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx2
from session_memory_client.protocol import RUN_LEASE, session_path

from tests.utils.scripted import Answer, Seen, scripted_server
from tests.utils.server import ServerProcess


def cli(base_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "session_memory", "sessions", *args, "--base-url", base_url]


def run(base_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(base_url, *args), capture_output=True, text=True, timeout=60)


def acquire(base_url: str, session_id: str, ttl: float = 3600) -> dict[str, object]:
    """A lease as a run that then crashed would leave it: held for a long TTL."""
    answer = httpx2.post(base_url + session_path(session_id) + "/lease", json={"ttl": ttl})
    answer.raise_for_status()
    lease: dict[str, object] = answer.json()
    return lease


def test_lease_shows_the_run_holding_it_and_release_frees_it(
    server: ServerProcess, session_id: str
) -> None:
    url = server.base_url
    free = run(url, "lease", session_id)
    assert (free.returncode, free.stdout) == (0, ""), free.stderr
    assert "no run holds the lease" in free.stderr
    assert json.loads(run(url, "lease", session_id, "--json").stdout) is None
    lease = acquire(url, session_id)
    shown = run(url, "lease", session_id)
    assert shown.returncode == 0, shown.stderr
    assert f"token:    {lease['token']}\n" in shown.stdout
    assert "ttl:      3600 s\n" in shown.stdout
    assert json.loads(run(url, "lease", session_id, "--json").stdout) == lease
    # The session's writes are refused without the token: the lease is stuck.
    items = url + session_path(session_id) + "/items"
    assert httpx2.post(items, json={"items": [{"n": 1}]}).status_code == 409
    freed = run(url, "lease", session_id, "--release", "--json")
    assert freed.returncode == 0, freed.stderr
    assert json.loads(freed.stdout) == {"released": lease}
    assert f'released the lease of "{session_id}" (token {lease["token"]})' in freed.stderr
    assert httpx2.post(items, json={"items": [{"n": 1}]}).status_code == 201
    assert json.loads(run(url, "lease", session_id, "--json").stdout) is None
    # Nothing held: nothing to release, and that is no error.
    again = run(url, "lease", session_id, "--release")
    assert again.returncode == 0, again.stderr
    assert "no run holds the lease" in again.stderr


def test_show_says_who_holds_the_lease(server: ServerProcess, session_id: str) -> None:
    url = server.base_url
    items = url + session_path(session_id) + "/items"
    httpx2.post(items, json={"items": [{"n": 1}]}).raise_for_status()
    plain = run(url, "show", session_id)
    assert plain.returncode == 0, plain.stderr
    assert "lease:" not in plain.stdout
    assert json.loads(run(url, "show", session_id, "--json").stdout)["lease"] is None
    lease = acquire(url, session_id, ttl=600)
    held = run(url, "show", session_id)
    assert f"lease:    token {lease['token']}, until " in held.stdout
    assert "(ttl 600 s)" in held.stdout
    assert json.loads(run(url, "show", session_id, "--json").stdout)["lease"] == lease


async def test_release_says_when_the_lease_changed_after_it_was_read(
    server: ServerProcess, session_id: str
) -> None:
    """Another run's lease follows the one the command read, before its release: the
    command frees nothing and says so. The server in between only orders the requests;
    every answer is the real server's."""
    first = acquire(server.base_url, session_id)
    lease_url = server.base_url + session_path(session_id) + "/lease"
    taken_over: list[dict[str, object]] = []

    def forward(request: Seen) -> Answer:
        headers = {k: v for k, v in request.headers.items() if k == RUN_LEASE.lower()}
        answer = httpx2.request(
            request.method, server.base_url + request.path, headers=headers, content=request.body
        )
        if request.method == "GET" and not taken_over:
            # Read: now the first lease ends and another run's follows it.
            httpx2.delete(lease_url, headers={RUN_LEASE: str(first["token"])}).raise_for_status()
            taken_over.append(acquire(server.base_url, session_id))
        return Answer(answer.status_code, answer.json())

    seen: list[Seen] = []
    async with scripted_server(forward, seen) as between:
        process = await asyncio.create_subprocess_exec(
            *cli(between, "lease", session_id, "--release"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
    assert process.returncode == 1, err
    assert [request.method for request in seen] == ["GET", "DELETE"]
    assert seen[1].headers[RUN_LEASE.lower()] == str(first["token"])
    assert b"changed before it could be released" in err
    assert out == b""
    # The other run's lease is untouched.
    assert httpx2.get(lease_url).json() == taken_over[0]


def test_follow_prints_lease_events(server: ServerProcess, session_id: str) -> None:
    lease_url = server.base_url + session_path(session_id) + "/lease"
    items = server.base_url + session_path(session_id) + "/items"
    httpx2.post(items, json={"items": [{"n": 1}]}).raise_for_status()
    follower = subprocess.Popen(
        cli(server.base_url, "follow", session_id, "--after", "0"),
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert follower.stdout is not None
        # The first item comes out once the stream is open: what follows is live.
        assert json.loads(follower.stdout.readline())["event"] == "append"
        lease = acquire(server.base_url, session_id, ttl=60)
        assert json.loads(follower.stdout.readline()) == {"event": "lease", **lease}
        token = {RUN_LEASE: str(lease["token"])}
        httpx2.delete(lease_url, headers=token).raise_for_status()
        assert json.loads(follower.stdout.readline()) == {
            "event": "lease-end",
            "token": lease["token"],
        }
    finally:
        os.killpg(follower.pid, signal.SIGKILL)
        follower.wait()
        if follower.stdout is not None:
            follower.stdout.close()
