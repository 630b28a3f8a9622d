"""Large request bodies against a real server: refused by count and size while they are
split, with bounded memory and the event loop free for other requests meanwhile.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .utils.server import ServerProcess

MIB = 1024 * 1024
# What one refused 32 MiB body may add to the server's peak RSS: the body itself,
# its text and the join of its chunks (about 3 x 32 MiB), and slack for the allocator.
BODY_RSS_BOUND_KIB = 160 * 1024
# /healthz must answer within this while a body is validated: a behaviour check
# (is the loop free?), far above its usual millisecond answer.
PROBE_BOUND_SECONDS = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        f"sqlite:///{tmp_path}/bodies.db", log_path=tmp_path / "server.log"
    ) as process:
        yield process


def memory_kib(server: ServerProcess, field: str) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


class Prober:
    """Polls /healthz in a thread and keeps the slowest answer's time."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.slowest = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx2.Client(base_url=self.base_url, timeout=30) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = http.get("/healthz").status_code
                except httpx2.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.answers += 1
                if status != 200:
                    self.failures.append(str(status))
                self._stop.wait(0.02)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _post(base_url: str, body: bytes, method: str = "POST") -> httpx2.Response:
    return httpx2.request(
        method,
        base_url + "/v1/sessions/bodies/items",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )


# Every route whose body carries items goes through the one bounded parser: the
# atomic replace (PUT) as much as the append (POST).
ITEM_METHODS = pytest.mark.parametrize("method", ["POST", "PUT"])


@ITEM_METHODS
def test_a_body_of_millions_of_objects_is_refused_with_bounded_memory(
    server: ServerProcess, method: str
) -> None:
    # One item of 32 MiB made of {} objects: decoded whole, it would build ~11M dicts.
    inner = b"{}," * ((32 * MIB - 64) // 3)
    body = b'{"items":[{"a":[' + inner + b"{}]}]}"
    assert len(body) <= 32 * MIB
    before = memory_kib(server, "VmRSS")
    with Prober(server.base_url) as prober:
        answer = _post(server.base_url, body, method)
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["limit"] == "max_item_bytes"
    grown = memory_kib(server, "VmHWM") - before
    assert grown < BODY_RSS_BOUND_KIB, f"peak RSS grew by {grown} KiB"
    assert prober.answers
    assert not prober.failures, prober.failures
    assert prober.slowest < PROBE_BOUND_SECONDS


@ITEM_METHODS
def test_a_body_of_too_many_items_is_refused_with_bounded_memory(
    server: ServerProcess, method: str
) -> None:
    body = b'{"items":[' + b"{}," * ((32 * MIB - 64) // 3) + b"{}]}"
    before = memory_kib(server, "VmRSS")
    with Prober(server.base_url) as prober:
        answer = _post(server.base_url, body, method)
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["limit"] == "max_items_per_request"
    grown = memory_kib(server, "VmHWM") - before
    assert grown < BODY_RSS_BOUND_KIB, f"peak RSS grew by {grown} KiB"
    assert not prober.failures, prober.failures
    assert prober.slowest < PROBE_BOUND_SECONDS


def test_a_fork_body_is_bounded_by_what_a_fork_holds(server: ServerProcess) -> None:
    # A fork's body is an id and a number: a 32 MiB one is refused by its size,
    # before any of it is parsed (it once was parsed whole on the event loop).
    assert _post(server.base_url, b'{"items":[{}]}').status_code == 201
    body = b'{"session_id":"copy","x":[' + b"{}," * ((32 * MIB - 64) // 3) + b"{}]}"
    before = memory_kib(server, "VmRSS")
    answer = httpx2.post(
        server.base_url + "/v1/sessions/bodies/fork",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert answer.status_code == 413, answer.text[:300]
    grown = memory_kib(server, "VmHWM") - before
    assert grown < BODY_RSS_BOUND_KIB, f"peak RSS grew by {grown} KiB"


def test_integers_past_python_int_limit_are_kept_byte_for_byte(server: ServerProcess) -> None:
    digits = "7" * 20_000
    item = f'{{"n":{digits},"f":{digits}.{digits}e-{digits}}}'
    answer = _post(server.base_url, f'{{"items":[{item}]}}'.encode())
    assert answer.status_code == 201, answer.text
    read = httpx2.get(server.base_url + "/v1/sessions/bodies/items?limit=1", timeout=30)
    assert read.content.startswith(b'{"items":[' + item.encode() + b"]")
