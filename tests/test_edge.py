"""The network edge under abuse: header floods, slow and idle connections, too many
connections, a held upload at shutdown, foreign Host names; HEAD, protocol errors,
/readyz and /docs. Real server processes over loopback; every load is bounded.
"""

from __future__ import annotations

import json
import logging
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
from session_memory.config import Settings
from session_memory.main import create_app
from session_memory.storage.sqlite import SQLiteStore

from .utils.server import ServerProcess

PROBLEM = "application/problem+json"
HOST = b"Host: 127.0.0.1\r\n"


def _server(tmp_path: Path, nofile: int | None = None, **settings: str) -> ServerProcess:
    """A server with settings from the environment (``idle_timeout_seconds="1"``...)."""
    server = ServerProcess(
        f"sqlite:///{tmp_path}/edge.db",
        log_path=tmp_path / "server.log",
        env={f"SESSION_MEMORY_{name.upper()}": value for name, value in settings.items()},
    )
    if nofile is not None:
        command = server.command
        # prlimit execs the server in place: same pid, a smaller descriptor table.
        server.command = lambda: ["prlimit", f"--nofile={nofile}:{nofile}", *command()]  # type: ignore[method-assign]
    return server


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[ServerProcess]:
    with _server(tmp_path) as server:
        yield server


def _memory_kib(server: ServerProcess, field: str) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


def _connect(server: ServerProcess, timeout: float = 20.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _problem_of(answer: bytes, status: int) -> dict[str, object]:
    assert answer, "the server sent no answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert b"content-type: " + PROBLEM.encode() in head.lower()
    problem: dict[str, object] = json.loads(body)
    assert problem["status"] == status
    return problem


def _flood(server: ServerProcess, total: int, answers: list[bytes]) -> None:
    """Send header lines until the server answers or ``total`` bytes are sent."""
    line = b"X-Fill: " + b"a" * 16_000 + b"\r\n"
    sent = 0
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + HOST)
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(line)
        answers.append(_read_until_closed(sock) if sent < total else b"")


def test_header_flood_is_refused_before_it_is_buffered(edge: ServerProcess) -> None:
    # Four floods of up to 24 MiB each; unbounded, the server would hold them all.
    before = _memory_kib(edge, "VmRSS")
    answers: list[bytes] = []
    floods = [
        threading.Thread(target=_flood, args=(edge, 24 * 1024 * 1024, answers)) for _ in range(4)
    ]
    for flood in floods:
        flood.start()
    for flood in floods:
        flood.join(60)
    assert len(answers) == 4
    for answer in answers:
        problem = _problem_of(answer, 431)
        assert problem["limit"] == "max_header_bytes"
    assert _memory_kib(edge, "VmHWM") - before < 32 * 1024
    assert httpx2.get(edge.base_url + "/healthz", timeout=10).status_code == 200


def test_too_many_header_fields_get_431(edge: ServerProcess) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % n for n in range(101))
    with _connect(edge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + HOST + fields + b"\r\n")
        problem = _problem_of(_read_until_closed(sock), 431)
    assert problem["max_header_count"] == 100


def test_malformed_request_gets_a_problem(edge: ServerProcess) -> None:
    with _connect(edge) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + HOST + b"No colon here\r\n\r\n")
        _problem_of(_read_until_closed(sock), 400)


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with _server(tmp_path, idle_timeout_seconds="1") as server:
        sockets = [_connect(server) for _ in range(50)]
        try:
            # Each read blocks until the server closes the socket (or 20 s pass).
            assert all(sock.recv(1) == b"" for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()


def test_a_connection_is_closed_once_idle_for_the_timeout_after_its_answers(
    tmp_path: Path,
) -> None:
    # The idle clock restarts with each answer: requests a fraction of the timeout
    # apart keep the connection past several timeouts; once they stop, it is closed.
    with _server(tmp_path, idle_timeout_seconds="1") as server, _connect(server) as sock:
        request = b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\n"
        for _ in range(12):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                assert chunk, "the server closed a connection that was not idle"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
            time.sleep(0.25)
        # Blocks until the server closes the socket (or 20 s pass).
        assert sock.recv(1) == b""


def test_slowloris_headers_are_dropped(tmp_path: Path) -> None:
    with _server(tmp_path, header_timeout_seconds="1", idle_timeout_seconds="60") as server:
        with _connect(server) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n" + HOST)
            answer = b""
            # A byte now and then keeps the connection from looking idle.
            for _ in range(100):
                readable, _, _ = select.select([sock], [], [], 0.2)
                if readable:
                    answer = _read_until_closed(sock)
                    break
                sock.sendall(b"X")
            problem = _problem_of(answer, 408)
        assert problem["limit"] == "header_timeout_seconds"


def test_a_stalled_body_is_dropped(tmp_path: Path) -> None:
    with _server(tmp_path, body_timeout_seconds="1", idle_timeout_seconds="60") as server:
        with _connect(server) as sock:
            sock.sendall(
                b"POST /v1/sessions/slow/items HTTP/1.1\r\n" + HOST + b"Content-Type: "
                b"application/json\r\nContent-Length: 100\r\n\r\n" + b'{"items": ['
            )
            problem = _problem_of(_read_until_closed(sock), 408)
        assert problem["limit"] == "body_timeout_seconds"
        assert httpx2.get(server.base_url + "/v1/sessions/slow/items").json()["items"] == []


def test_idle_connections_past_the_descriptor_limit_do_not_lock_out_clients(
    tmp_path: Path,
) -> None:
    # 300 idle connections against 200 descriptors: unbounded, accept() fails for good.
    with _server(tmp_path, nofile=200, idle_timeout_seconds="600") as server:
        sockets = [_connect(server) for _ in range(300)]
        try:
            response = httpx2.get(server.base_url + "/readyz", timeout=10)
            assert response.status_code == 200
        finally:
            for sock in sockets:
                sock.close()


def _hold_upload(server: ServerProcess) -> socket.socket:
    """A connection whose request the application has begun: it waits for the body."""
    sock = _connect(server)
    sock.sendall(
        b"POST /v1/sessions/held/items HTTP/1.1\r\n" + HOST + b"Content-Type: "
        b"application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
    )
    # "100 Continue" is sent once the application asks for the body.
    assert sock.recv(100).startswith(b"HTTP/1.1 100")
    return sock


def test_busy_connections_past_the_cap_get_503_until_they_end(tmp_path: Path) -> None:
    limits = {"max_connections": "5", "body_timeout_seconds": "2", "idle_timeout_seconds": "60"}
    with _server(tmp_path, **limits) as server:
        held = [_hold_upload(server) for _ in range(5)]
        try:
            with _connect(server) as extra:
                problem = _problem_of(_read_until_closed(extra), 503)
                assert problem["limit"] == "max_connections"
            # The uploads stall and time out; the service is reachable again.
            for sock in held:
                _problem_of(_read_until_closed(sock), 408)
            assert httpx2.get(server.base_url + "/healthz", timeout=10).status_code == 200
        finally:
            for sock in held:
                sock.close()


def test_sigterm_with_a_held_upload_exits_within_the_drain_bound(tmp_path: Path) -> None:
    server = _server(tmp_path, shutdown_timeout_seconds="1", body_timeout_seconds="600").start()
    try:
        with _hold_upload(server) as sock:
            sock.sendall(b'{"items": [')
            started = time.monotonic()
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            # The drain bound is 1 s; allow generously for start-up of shutdown.
            assert server.process.wait(timeout=15) == 0
            assert time.monotonic() - started < 15
    finally:
        server.kill()


def _get(server: ServerProcess, host: str, path: str = "/healthz") -> httpx2.Response:
    return httpx2.get(server.base_url + path, headers={"Host": host}, timeout=10)


def test_open_mode_refuses_foreign_host_names(edge: ServerProcess) -> None:
    refused = _get(edge, "attacker.example")
    assert refused.status_code == 421
    assert refused.headers["content-type"] == PROBLEM
    assert _get(edge, "attacker.example", "/v1/sessions/x/items?limit=5").status_code == 421
    for host in ("localhost", "localhost:9999", "127.0.0.1:1", "[::1]:8000", "LOCALHOST"):
        assert _get(edge, host).status_code == 200, host


def test_allowed_hosts_setting_replaces_the_loopback_default(tmp_path: Path) -> None:
    with _server(tmp_path, allowed_hosts="memory.internal, 127.0.0.1") as server:
        assert _get(server, "memory.internal:8000").status_code == 200
        assert _get(server, "attacker.example").status_code == 421
        assert _get(server, "localhost").status_code == 421


def test_keyed_mode_answers_any_host_name(tmp_path: Path) -> None:
    with _server(tmp_path, api_keys="team:secret-key-1") as server:
        assert _get(server, "memory.example.com").status_code == 200


def test_head_is_answered_wherever_get_is(edge: ServerProcess) -> None:
    for path in ("/healthz", "/readyz", "/v1/sessions/h/items?limit=5", "/openapi.json"):
        get = httpx2.get(edge.base_url + path, timeout=10)
        head = httpx2.head(edge.base_url + path, timeout=10)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
        assert head.headers["content-type"] == get.headers["content-type"]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_readyz_detail_is_generic(tmp_path: Path) -> None:
    records = _Records()
    logging.getLogger("session_memory").addHandler(records)
    store = SQLiteStore(tmp_path / "r.db")
    app = create_app(Settings(), store=store)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        await store.close()
        try:
            response = await http.get("/readyz")
        finally:
            logging.getLogger("session_memory").removeHandler(records)
    assert response.status_code == 503
    assert response.json()["detail"] == "the database did not answer"
    # The driver's own words go to the log, not to whoever asked.
    assert any(message.startswith("readiness check failed: ") for message in records.messages)


async def test_docs_load_nothing_from_other_hosts() -> None:
    transport = httpx2.ASGITransport(app=create_app(Settings()))
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        for marker in ("http://", "https://", '"//', "'//"):
            assert marker not in page.text
        references = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert len(references) == 3
        for reference in references:
            assert reference.startswith("/docs/assets/")
            asset = await http.get(reference)
            assert asset.status_code == 200
            assert len(asset.content) > 100
        assert (await http.get("/docs/assets/index.html")).status_code == 404
        assert (await http.get("/redoc")).status_code == 404


def test_serve_flags_reach_the_settings() -> None:
    # The flags are named after their settings, without "_seconds".
    result = subprocess.run(
        [sys.executable, "-m", "session_memory", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for flag in ("--header-timeout", "--body-timeout", "--idle-timeout", "--max-connections"):
        assert flag in result.stdout
    for flag in ("--shutdown-timeout", "--max-header-count", "--allowed-hosts"):
        assert flag in result.stdout
