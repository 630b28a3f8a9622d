"""Clients that go away: counted as 499 (not 500) in /metrics and the access log, at
info and without a traceback; a pipelined connection reset mid-answer logs no
traceback either. Real server processes over loopback, hot path on and off.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .utils.server import ServerProcess

ITEMS_ROUTE = "/v1/sessions/{session_id}/items"
HOST = b"Host: 127.0.0.1\r\n"


@pytest.fixture(params=["hot-path", "fastapi"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "SESSION_MEMORY_HOT_PATH": "true" if request.param == "hot-path" else "false",
        # Small read pages, so a 16 MiB history streams in several.
        "SESSION_MEMORY_MAX_READ_PAGE_BYTES": str(2 * 1024 * 1024),
    }
    with ServerProcess(
        f"sqlite:///{tmp_path}/gone.db",
        log_path=tmp_path / "server.log",
        extra_args=["--log-level", "info"],
        env=env,
    ) as process:
        yield process


def _requests(server: ServerProcess, method: str) -> dict[str, float]:
    """session_memory_requests_total for the items route, by status."""
    found: dict[str, float] = {}
    for line in httpx2.get(server.base_url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("session_memory_requests_total{") and (
            f'method="{method}"' in line and f'route="{ITEMS_ROUTE}"' in line
        ):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            found[status] = float(line.rsplit(" ", 1)[1])
    return found


def _wait_for(server: ServerProcess, method: str, status: str) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = _requests(server, method)
        if status in counts:
            return counts
        time.sleep(0.05)
    raise AssertionError(f"no {status} for {method}: {_requests(server, method)}")


def _log_lines(server: ServerProcess) -> list[dict[str, object]]:
    assert server.log_path is not None
    text = server.log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), as a client that crashes does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_gone_mid_upload_counts_as_499(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/sessions/gone/items HTTP/1.1\r\n" + HOST + b"Content-Type: "
            b"application/json\r\nContent-Length: 100000\r\n\r\n" + b'{"items":[{"a":1},'
        )
        # The server has the head once it asks for more of the body; then leave.
        _wait_for_request_start(server)
    counts = _wait_for(server, "POST", "499")
    assert "500" not in counts
    lines = [line for line in _log_lines(server) if line.get("status") == 499]
    assert lines, "no access log line for the 499"
    assert all(line["level"] == "info" for line in lines)


def _wait_for_request_start(server: ServerProcess) -> None:
    # The body read is what notices the disconnect; give the request time to reach it
    # by waiting until another request on another connection is answered.
    assert httpx2.get(server.base_url + "/healthz", timeout=30).status_code == 200


def test_a_pipelined_connection_reset_mid_answer_logs_no_traceback(
    server: ServerProcess,
) -> None:
    big = '{"items":[' + ",".join(['{"a":"' + "x" * 100_000 + '"}'] * 20) + "]}"
    answer = httpx2.post(
        server.base_url + "/v1/sessions/big/items",
        content=big.encode(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 201
    pipelined = (
        b"GET /v1/sessions/big/items HTTP/1.1\r\n"
        + HOST
        + b"\r\n"
        + (b"GET /v1/sessions/big/items?limit=20 HTTP/1.1\r\n" + HOST + b"\r\n") * 3
    )
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        # A small receive buffer: the answers back up and the server is mid-write.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(pipelined)
        sock.recv(1024)
        _reset(sock)
    # Every request of those connections has been dealt with once a new one is answered
    # after the last of them was counted.
    deadline = time.monotonic() + 20
    while sum(_requests(server, "GET").values()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "500" not in _requests(server, "GET")
    _log_lines(server)  # no traceback


def test_a_client_gone_mid_stream_counts_as_499(server: ServerProcess) -> None:
    # 16 MiB of items: the unbounded read streams them in pages of 2 MiB.
    for _ in range(4):
        big = '{"items":[' + ",".join(['{"a":"' + "x" * 1_000_000 + '"}'] * 4) + "]}"
        answer = httpx2.post(
            server.base_url + "/v1/sessions/streamed/items",
            content=big.encode(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        assert answer.status_code == 201
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /v1/sessions/streamed/items HTTP/1.1\r\n" + HOST + b"\r\n")
    assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    _reset(sock)
    counts = _wait_for(server, "GET", "499")
    assert "500" not in counts
    _log_lines(server)  # no traceback
