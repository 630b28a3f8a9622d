"""Clients that hold a server without using it: keyless clients at the connection cap,
bodies that trickle, clients that never read their answers, half-closes, and the
shutdown deadline. Real server processes over loopback; every load is bounded and
light (a cap of 50 connections, 20 clients that do not read).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.utils.postgres import schema_url
from tests.utils.server import ServerProcess

pytestmark = pytest.mark.slow

KEY = "tenant-key-0123456789"
HOST = b"Host: 127.0.0.1\r\n"
MIB = 1024 * 1024
# Generous bounds on "it ended at all": far above what each takes when it works.
ENDS_WITHIN_SECONDS = 30.0


def _server(tmp_path: Path, url: str | None = None, **settings: str) -> ServerProcess:
    return ServerProcess(
        url or f"sqlite:///{tmp_path}/slow.db",
        log_path=tmp_path / "server.log",
        extra_args=["--log-level", "info"],
        env={f"SESSION_MEMORY_{name.upper()}": value for name, value in settings.items()},
    )


def _connect(server: ServerProcess, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Set before connecting, so the window the server sees is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(ENDS_WITHIN_SECONDS)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response with a content-length: status, headers, body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed before a whole body"
        body += chunk
    return int(lines[0].split(" ")[1]), headers, body


def _trickle(sock: socket.socket, every: float) -> bytes | None:
    """Send a byte every ``every`` seconds until the server closes the connection.

    What the server sent meanwhile, or None if it never closed it.
    """
    received = bytearray()
    deadline = time.monotonic() + ENDS_WITHIN_SECONDS
    try:
        while time.monotonic() < deadline:
            while select.select([sock], [], [], 0)[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return bytes(received)
                received += chunk
            sock.sendall(b" ")
            time.sleep(every)
    except OSError:
        return bytes(received)
    return None


def _closed(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (input ended or reset), reading what is there."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
    except OSError:
        return True
    return False


def _post_head(path: str, length: int, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n".encode() if key else b""
    return (
        f"POST {path} HTTP/1.1\r\n".encode()
        + HOST
        + auth
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


def _get(path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n".encode() + HOST + f"Authorization: Bearer {key}\r\n\r\n".encode()
    )


# -- keyless clients, trickled bodies -------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/sessions/x/items", "/healthz"])
def test_an_answer_before_its_body_closes_the_connection(tmp_path: Path, path: str) -> None:
    # The server used to read and drop the rest of a refused body for as long as it
    # trickled in, one byte now and then, holding the connection for good.
    with _server(tmp_path, api_keys=f"team:{KEY}") as server, _connect(server) as sock:
        sock.sendall(_post_head(path, 1_000_000_000) + b'{"items": [')
        status, headers, _ = _answer(sock)
        assert status in (401, 405)
        assert headers["connection"] == "close"
        assert _trickle(sock, every=0.5) is not None, "the connection was held open"


def test_a_body_has_a_deadline_however_steadily_it_trickles(tmp_path: Path) -> None:
    settings = {"api_keys": f"team:{KEY}", "body_deadline_seconds": "2"}
    with _server(tmp_path, **settings) as server, _connect(server) as sock:
        sock.sendall(_post_head("/v1/sessions/slow/items", 100_000, KEY) + b'{"items": [')
        # Each pause is far below the body timeout (30 s); only the deadline ends it.
        answer = _trickle(sock, every=0.2)
        assert answer is not None, "the body was never cut off"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["limit"] == "body_deadline_seconds"


def _attack(server: ServerProcess, slot: int) -> socket.socket:
    """One keyless connection, of the kinds that held slots: a huge body, a slow head."""
    sock = _connect(server)
    kind = slot % 3
    if kind == 0:
        sock.sendall(_post_head("/v1/sessions/x/items", 1_000_000_000) + b"[")
    elif kind == 1:
        sock.sendall(_post_head("/healthz", 1_000_000_000) + b"[")
    else:
        sock.sendall(b"POST /v1/sessions/x/items HTTP/1.1\r\n" + HOST + b"X-Slow: ")
    return sock


class _Attacker:
    """Keeps ``count`` keyless connections open, trickling a byte into each now and then,
    and opens a new one for each the server closes."""

    def __init__(self, server: ServerProcess, count: int) -> None:
        self.server = server
        self.sockets: list[socket.socket | None] = [None] * count
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            for slot, sock in enumerate(self.sockets):
                if sock is not None and not _closed(sock):
                    try:
                        sock.sendall(b"a")
                        continue
                    except OSError:
                        pass
                if sock is not None:
                    sock.close()
                try:
                    self.sockets[slot] = _attack(self.server, slot)
                    self.opened += 1
                except OSError:
                    self.sockets[slot] = None
            self._stop.wait(0.5)

    def __enter__(self) -> _Attacker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def test_keyless_clients_at_the_cap_keep_no_tenant_out(tmp_path: Path) -> None:
    settings = {"api_keys": f"team:{KEY}", "max_connections": "50", "idle_timeout_seconds": "120"}
    auth = {"Authorization": f"Bearer {KEY}"}
    with _server(tmp_path, **settings) as server, _connect(server) as kept:
        # A tenant's keep-alive connection, idle while the attack goes on.
        kept.sendall(_get("/v1/sessions/t/items?limit=1", KEY))
        assert _answer(kept)[0] == 200
        with _Attacker(server, 50) as attacker:
            while attacker.opened < 50:
                time.sleep(0.05)
            time.sleep(1)  # every attacker has been answered or is in its head
            statuses = [
                httpx2.post(
                    server.base_url + "/v1/sessions/t/items",
                    json={"items": [{"n": n}]},
                    headers=auth,
                    timeout=ENDS_WITHIN_SECONDS,
                ).status_code
                for n in range(15)
            ]
            probes = [
                httpx2.get(server.base_url + path, timeout=ENDS_WITHIN_SECONDS).status_code
                for path in ("/healthz", "/readyz") * 3
            ]
            kept.sendall(_get("/v1/sessions/t/items", KEY))
            status, _, body = _answer(kept)
        assert statuses == [201] * 15
        assert probes == [200] * 6
        assert status == 200
        assert [item["n"] for item in json.loads(body)["items"]] == list(range(15))


# -- clients that do not read ---------------------------------------------------------


def _memory_kib(server: ServerProcess, field: str) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def _held_by_server(server: ServerProcess, clients: list[socket.socket]) -> int:
    """How many of ``clients``' connections the server process still holds open."""
    assert server.process is not None
    ports = {sock.getsockname()[1] for sock in clients}
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server.port and int(remote, 16) in ports:
            inodes.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        try:
            held += os.readlink(fd) in inodes
        except OSError:
            continue
    return held


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/unread.db"
    else:
        with schema_url() as url:
            yield url


def test_clients_that_do_not_read_are_bounded_then_cut_off(
    tmp_path: Path, database_url: str
) -> None:
    settings = {"send_timeout_seconds": "3", "max_pending_write_bytes": str(32 * MIB)}
    with _server(tmp_path, database_url, **settings) as server:
        item = '{"a":"' + "x" * (8 * MIB - 64) + '"}'
        answer = httpx2.post(
            server.base_url + "/v1/sessions/big/items",
            content=f'{{"items":[{item},{item}]}}'.encode(),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        assert answer.status_code == 201, answer.text[:300]
        # One page read whole first, so the baseline has seen one of its size.
        read = httpx2.get(server.base_url + "/v1/sessions/big/items?limit=2", timeout=60)
        assert len(read.content) > 16 * MIB - 1024
        before = _memory_kib(server, "VmRSS")
        clients = []
        for n in range(20):
            sock = _connect(server, rcvbuf=4096)
            target = (
                "/v1/sessions/big/events?after=0" if n % 2 else "/v1/sessions/big/items?limit=2"
            )
            sock.sendall(f"GET {target} HTTP/1.1\r\n".encode() + HOST + b"\r\n")
            clients.append(sock)
        try:
            # Each has been answered in part (or already cut off): the server has
            # produced what it holds for them.
            waiting = list(clients)
            deadline = time.monotonic() + ENDS_WITHIN_SECONDS
            while waiting and time.monotonic() < deadline:
                readable, _, _ = select.select(waiting, [], [], 1)
                waiting = [sock for sock in waiting if sock not in readable]
            assert not waiting, "some requests were never answered"
            time.sleep(0.5)
            grown = _memory_kib(server, "VmRSS") - before
            # Unbounded, each stream held about 32 MiB and each read 17 MiB (~490 MiB).
            assert grown < 160 * 1024, f"RSS grew by {grown} KiB for 20 clients that do not read"
            deadline = time.monotonic() + 60
            while _held_by_server(server, clients) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _held_by_server(server, clients) == 0, (
                "the server kept them after the send timeout"
            )
            after = _memory_kib(server, "VmRSS") - before
            assert after < 64 * 1024, f"RSS stayed {after} KiB above where it was"
            # The server is still all there for a client that reads.
            again = httpx2.get(server.base_url + "/v1/sessions/big/items?limit=2", timeout=60)
            assert again.content == read.content
        finally:
            for sock in clients:
                sock.close()


# -- half-closes and the shutdown deadline ------------------------------------------------


def _read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def test_pipelined_requests_before_a_half_close_are_all_answered(tmp_path: Path) -> None:
    with _server(tmp_path) as server:
        body = b'{"items":[{"n":1}]}'
        one = _post_head("/v1/sessions/piped/items", len(body)) + body
        with _connect(server) as sock:
            sock.sendall(one * 3)
            sock.shutdown(socket.SHUT_WR)  # as `nc -N` does once its input ends
            answers = _read_until_closed(sock)
        assert answers.count(b"HTTP/1.1 201 ") == 3, answers[:600]
        with _connect(server) as sock:
            sock.sendall(b"GET /v1/sessions/piped/items HTTP/1.1\r\n" + HOST + b"\r\n")
            sock.shutdown(socket.SHUT_WR)
            answer = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["items"] == [{"n": 1}] * 3


def test_a_request_cut_off_by_the_shutdown_deadline_is_one_log_line(tmp_path: Path) -> None:
    server = _server(tmp_path, shutdown_timeout_seconds="1", body_timeout_seconds="600").start()
    try:
        with _connect(server) as sock:
            sock.sendall(
                _post_head("/v1/sessions/held/items", 1000).replace(
                    b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"
                )
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 100")
            sock.sendall(b'{"items": [')
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            answer = _read_until_closed(sock)
            assert server.process.wait(timeout=ENDS_WITHIN_SECONDS) == 0
    finally:
        server.kill()
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:300]
    assert b"retry-after: 1" in answer.lower()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    cancelled = [line for line in lines if line["msg"] == "request cancelled by shutdown"]
    assert len(cancelled) == 1, cancelled
    assert cancelled[0]["level"] == "warning"
    assert cancelled[0]["path"] == "/v1/sessions/held/items"
    assert not [line for line in lines if line.get("status") == 500]


def test_the_new_bounds_are_serve_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "session_memory", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in (
        "--body-deadline",
        "--send-timeout",
        "--max-pending-write-bytes",
        "--unauthenticated-connection-share",
    ):
        assert flag in result.stdout
