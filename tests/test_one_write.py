"""A response whose length is known leaves the server in one write.

uvicorn writes a head and then a body; ``EdgeProtocol`` joins them, which on the hot
routes saves a send(2) and a loopback delivery per request. Checked on a real
server process traced by strace: the write that carries a status line carries the
whole response, as the client received it (a HEAD response: its head). Streamed
(chunked) responses keep uvicorn's writes; tests/test_big_reads.py covers them.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from .utils.server import ServerProcess

pytestmark = pytest.mark.slow

# strace's line for one write of a response: the call, its first bytes, its result.
WRITE = re.compile(r'^\d+\s+(?:write|sendto|sendmsg|writev)\(\d+, .*"HTTP/1\.1 (\d{3}) .*= (\d+)$')


def _traced(tmp_path: Path, trace: Path) -> ServerProcess:
    strace = shutil.which("strace")
    assert strace, "these tests need strace (apt-get install strace)"
    server = ServerProcess(f"sqlite:///{tmp_path}/one.db", log_path=tmp_path / "server.log")
    command = server.command
    # strace execs the server as its child, in the server's process group.
    server.command = lambda: [  # type: ignore[method-assign]
        strace, "-f", "-qq", "-e", "trace=write,sendto,sendmsg,writev", "-e", "signal=none",
        "-s", "24", "-o", str(trace), *command(),
    ]  # fmt: skip
    return server


def _response_writes(trace: Path, expected: int, timeout: float = 10.0) -> list[tuple[int, int]]:
    """(status, bytes written) of each write that began a response, once ``expected`` are in."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            (int(match[1]), int(match[2]))
            for line in trace.read_text(errors="replace").splitlines()
            if (match := WRITE.match(line))
        ]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _raw(port: int, request: bytes) -> bytes:
    """One request on its own connection; the whole answer (the request says close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_hot_route_responses_are_written_once(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    with _traced(tmp_path, trace) as server:
        # /readyz answered once while starting; the trace holds that write too.
        ready = len(_response_writes(trace, 1))
        post = _raw(
            server.port,
            b"POST /v1/sessions/s1/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 42\r\nConnection: close\r\n\r\n"
            b'{"items":[{"role":"user","content":"hi"}]}',
        )
        get = _raw(
            server.port,
            b"GET /v1/sessions/s1/items?limit=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n",
        )
        head = _raw(
            server.port,
            b"HEAD /v1/sessions/s1/items?limit=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: close\r\n\r\n",
        )
        writes = _response_writes(trace, ready + 3)[ready:]
    assert post.startswith(b"HTTP/1.1 201 ")
    assert b'"last_seq":1' in post
    assert get.startswith(b"HTTP/1.1 200 ")
    assert b'"content":"hi"' in get
    assert head.startswith(b"HTTP/1.1 200 ")
    assert head.endswith(b"\r\n\r\n")
    # Each write that starts a response holds all of it: head and body together.
    assert writes == [(201, len(post)), (200, len(get)), (200, len(head))]
