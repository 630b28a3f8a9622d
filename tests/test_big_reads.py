"""Big reads against a real server: 60 items of 8 MiB read four at a time with
``limit=60`` (and one unbounded, streamed read) stay within a stated memory bound,
and /healthz keeps answering meanwhile. Loopback only; bounded in count and time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from .test_big_bodies import PROBE_BOUND_SECONDS, Prober, memory_kib
from .utils.postgres import schema_url
from .utils.server import ServerProcess

MIB = 1024 * 1024
ITEM_BYTES = 8 * MIB - 64  # within max_item_bytes (8 MiB)
ITEMS = 60
READERS = 4
# The default page bound is 16 MiB, so each limit=60 read holds two items (three
# while it finds the cut) and its answer; four at once, with the allocator's slack.
# Without the bound each read held all 60 items, about 480 MiB, several times over.
READ_RSS_BOUND_KIB = 450 * 1024


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    log = tmp_path / "server.log"
    if request.param == "sqlite":
        with ServerProcess(f"sqlite:///{tmp_path}/reads.db", log_path=log) as process:
            yield process
    else:
        with schema_url() as url, ServerProcess(url, log_path=log) as process:
            yield process


def _item(n: int) -> bytes:
    head = b'{"n":%d,"pad":"' % n
    return head + b"x" * (ITEM_BYTES - len(head) - 2) + b'"}'


def _fill(base_url: str) -> None:
    with httpx2.Client(base_url=base_url, timeout=120) as http:
        for first in range(0, ITEMS, 3):
            body = b'{"items":[' + b",".join(_item(n) for n in range(first, first + 3)) + b"]}"
            answer = http.post(
                "/v1/sessions/big/items",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 201, answer.text


def _reset_peak(server: ServerProcess) -> None:
    # Writing 5 to clear_refs resets VmHWM, so the peak measured is the reads' own.
    assert server.process is not None
    Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")


def test_big_reads_hold_bounded_memory_and_leave_the_loop_free(server: ServerProcess) -> None:
    _fill(server.base_url)
    before = memory_kib(server, "VmRSS")
    _reset_peak(server)
    pages: list[dict[str, object]] = []
    streamed: list[int] = []
    errors: list[str] = []

    def read_page() -> None:
        answer = httpx2.get(server.base_url + "/v1/sessions/big/items?limit=60", timeout=120)
        if answer.status_code != 200:
            errors.append(answer.text[:200])
            return
        pages.append(answer.json())

    def read_all() -> None:
        count, tail = 0, b""
        marker = b'{"n":'
        with httpx2.stream("GET", server.base_url + "/v1/sessions/big/items", timeout=120) as r:
            for chunk in r.iter_bytes():
                # A marker may straddle two chunks: count it in the seam, once.
                joined = tail + chunk
                count += joined.count(marker)
                tail = joined[-(len(marker) - 1) :]
        streamed.append(count)

    with Prober(server.base_url) as prober:
        threads = [threading.Thread(target=read_page) for _ in range(READERS)]
        threads.append(threading.Thread(target=read_all))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    grown = memory_kib(server, "VmHWM") - before
    assert grown < READ_RSS_BOUND_KIB, f"peak RSS grew by {grown // 1024} MiB"
    assert not errors, errors
    assert len(pages) == READERS
    for page in pages:
        # 16 MiB holds two of these items: the latest two, and there is more.
        items = page["items"]
        assert isinstance(items, list)
        assert [item["n"] for item in items] == [ITEMS - 2, ITEMS - 1]
        assert (page["first_seq"], page["last_seq"], page["has_more"]) == (59, 60, True)
    assert streamed == [ITEMS]
    assert prober.answers
    assert not prober.failures, prober.failures
    assert prober.slowest < PROBE_BOUND_SECONDS, prober.slowest
    _walk_back(server.base_url)


def _walk_back(base_url: str) -> None:
    """Paging backward by bytes (two items a page here) reaches every item once."""
    seen: list[int] = []
    before: int | None = None
    with httpx2.Client(base_url=base_url, timeout=120) as http:
        for _ in range(ITEMS):
            query = "limit=60" + (f"&before={before}" if before else "")
            page = http.get(f"/v1/sessions/big/items?{query}").json()
            seen[:0] = [item["n"] for item in page["items"]]
            if not page["has_more"]:
                break
            before = page["first_seq"]
    assert seen == list(range(ITEMS))
