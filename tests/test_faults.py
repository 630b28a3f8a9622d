"""Hostile and broken input, and crashes under load: 4xx answers, nothing lost, server alive."""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx2
import pytest

from tests.utils.server import ServerProcess
from tests.utils.workers import replica_writer

pytestmark = pytest.mark.slow  # real processes over TCP

SPAWN = multiprocessing.get_context("spawn")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("faults")
    with ServerProcess(f"sqlite:///{folder}/f.db", log_path=folder / "server.log") as server:
        yield server


def assert_alive(server: ServerProcess) -> None:
    assert httpx2.get(server.base_url + "/readyz", timeout=10).status_code == 200
    response = httpx2.post(
        server.base_url + "/v1/sessions/alive/items", json={"items": [{"ok": True}]}, timeout=10
    )
    assert response.status_code == 201


def raw_request(server: ServerProcess, request: bytes) -> bytes:
    """Send bytes as they are and read the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # no more requests: the server answers, then closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"items": [{"a": 1}', JSON, 400),
        (b"\xff\xfe{}", JSON, 400),
        (b'{"items": [{"a": "\xc3\x28"}]}', JSON, 400),
        (b'{"items": []}', {"content-type": "text/plain"}, 415),
        (b'{"items": []}', {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b'{"items":[{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}", JSON, 422),
        (b'{"items":[{"a":' + b'{"b":' * 100_000 + b"1" + b"}" * 100_000 + b"}]}", JSON, 422),
    ],
)
def test_broken_bodies_get_4xx(
    target: ServerProcess, body: bytes, headers: dict[str, str], status: int
) -> None:
    response = httpx2.post(
        target.base_url + "/v1/sessions/broken/items", content=body, headers=headers, timeout=30
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert httpx2.get(target.base_url + "/v1/sessions/broken/items").json()["items"] == []
    assert_alive(target)


def test_fifty_megabyte_body_is_413(target: ServerProcess) -> None:
    big = b'{"items":[{"text":"' + b"x" * (50 * 2**20) + b'"}]}'
    response = httpx2.post(
        target.base_url + "/v1/sessions/huge/items", content=big, headers=JSON, timeout=60
    )
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 2**20):
            yield big[start : start + 2**20]

    try:
        response = httpx2.post(
            target.base_url + "/v1/sessions/huge/items", content=chunks(), headers=JSON, timeout=60
        )
        assert response.status_code == 413
    except httpx2.WriteError:
        pass  # the server answered 413 and closed before the rest was sent
    assert httpx2.get(target.base_url + "/v1/sessions/huge/items").json()["items"] == []
    assert_alive(target)


def test_huge_headers_are_refused(target: ServerProcess) -> None:
    request = (
        b"GET /v1/sessions/h/items HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (1024 * 1024)
        + b"\r\n\r\n"
    )
    try:
        answer = raw_request(target, request)
    except (ConnectionResetError, BrokenPipeError):
        answer = b""
    assert answer.split(b" ", 2)[1] == b"431"
    assert_alive(target)


def test_garbage_on_the_socket(target: ServerProcess) -> None:
    for junk in (b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"NOT-HTTP\r\n\r\n"):
        try:
            answer = raw_request(target, junk)
        except (ConnectionResetError, BrokenPipeError):
            answer = b""
        assert answer == b"" or answer.split(b" ", 2)[1].startswith(b"4")
    assert_alive(target)


def test_sigkill_under_four_process_load_keeps_every_acknowledged_batch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/k.db"
    server = ServerProcess(url, log_path=tmp_path / "server.log").start()
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        futures = [
            pool.submit(replica_writer, [server.base_url], "load", w, 400, 3) for w in range(4)
        ]
        pause = threading.Event()
        for _ in range(600):
            response = httpx2.get(f"{server.base_url}/v1/sessions/load?x=1", timeout=5)
            if response.status_code == 200 and response.json()["item_count"] >= 300:
                break
            pause.wait(0.02)
        server.kill()
        written = [future.result(timeout=120) for future in futures]

    with ServerProcess(url, log_path=tmp_path / "server.log") as restarted:
        items = httpx2.get(f"{restarted.base_url}/v1/sessions/load/items", timeout=30).json()[
            "items"
        ]
    batches: dict[tuple[int, int], list[int]] = {}
    for position, item in enumerate(items):
        batches.setdefault((item["w"], item["b"]), []).append(position)
    for key, positions in batches.items():
        assert len(positions) == 3, f"batch {key} half stored or doubled"
        assert positions == list(range(positions[0], positions[0] + 3)), f"batch {key} split"
    for writer, (acked, failed) in enumerate(written):
        assert failed, "the kill came after the load ended"
        for batch in acked:
            assert (writer, batch) in batches, f"acknowledged batch {writer}/{batch} lost"
        stored = sorted(b for w, b in batches if w == writer)
        assert stored[: len(acked)] == acked
    assert json.dumps(items)  # the whole history reads back as JSON
