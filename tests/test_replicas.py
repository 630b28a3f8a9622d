"""Three server replicas on one PostgreSQL, with clients spread over all of them."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.utils.postgres import schema_url
from tests.utils.server import ServerProcess
from tests.utils.workers import canonical, replica_popper, replica_writer

pytestmark = pytest.mark.slow  # real processes over TCP

SPAWN = multiprocessing.get_context("spawn")
BATCH = 3


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with schema_url() as url, ExitStack() as stack:
        servers = [
            stack.enter_context(ServerProcess(url, log_path=tmp_path / f"replica{n}.log"))
            for n in range(3)
        ]
        yield servers


def _items(base_url: str, session_id: str) -> list[dict[str, Any]]:
    response = httpx2.get(f"{base_url}/v1/sessions/{session_id}/items", timeout=30)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _assert_batches_whole_and_ordered(items: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """Every batch lies in one contiguous run in order; each writer's batches in its order."""
    assert len(items) % BATCH == 0
    seen: set[tuple[int, int]] = set()
    last_batch: dict[int, int] = {}
    for start in range(0, len(items), BATCH):
        run = items[start : start + BATCH]
        key = (run[0]["w"], run[0]["b"])
        assert [(item["w"], item["b"], item["i"]) for item in run] == [
            (*key, i) for i in range(BATCH)
        ], f"batch {key} is not contiguous"
        assert key not in seen, f"batch {key} stored twice"
        seen.add(key)
        assert key[1] > last_batch.get(key[0], -1), f"writer {key[0]} out of order"
        last_batch[key[0]] = key[1]
    return seen


def test_replicas_share_one_ordered_history(replicas: list[ServerProcess]) -> None:
    urls = [server.base_url for server in replicas]
    prefill = [{"p": n} for n in range(300)]
    httpx2.post(f"{urls[0]}/v1/sessions/popped/items", json={"items": prefill}).raise_for_status()

    with ProcessPoolExecutor(8, mp_context=SPAWN) as pool:
        writers = [pool.submit(replica_writer, urls, "shared", w, 60, BATCH) for w in range(4)]
        poppers = [pool.submit(replica_popper, urls, "popped", n) for n in range(4)]
        written = [future.result(timeout=180) for future in writers]
        popped = [text for future in poppers for text in future.result(timeout=180)]

    assert all(failed == [] for _, failed in written)
    views = [_items(url, "shared") for url in urls]
    assert views[0] == views[1] == views[2]
    assert len(views[0]) == 4 * 60 * BATCH
    assert _assert_batches_whole_and_ordered(views[0]) == {
        (w, b) for w in range(4) for b in range(60)
    }

    assert len(popped) == 300
    assert sorted(popped) == sorted(canonical(item) for item in prefill)


def test_sigkill_of_one_replica_loses_no_acknowledged_write(
    replicas: list[ServerProcess],
) -> None:
    urls = [server.base_url for server in replicas]
    victim = replicas[0]
    with ProcessPoolExecutor(4, mp_context=SPAWN) as pool:
        futures = [pool.submit(replica_writer, urls, "load", w, 150, BATCH) for w in range(4)]
        # Kill once the load is well under way.
        pause = threading.Event()
        for _ in range(600):
            if len(_items(urls[1], "load")) >= 40 * BATCH:
                break
            pause.wait(0.05)
        victim.kill()
        written = [future.result(timeout=180) for future in futures]

    stored = _items(urls[1], "load")
    assert stored == _items(urls[2], "load")
    batches = _assert_batches_whole_and_ordered(stored)
    acked = {(w, b) for w, (ok, _) in enumerate(written) for b in ok}
    failed = {(w, b) for w, (_, bad) in enumerate(written) for b in bad}
    assert failed, "the kill should have failed some requests"
    assert acked <= batches, "an acknowledged batch is missing"
    assert batches <= acked | failed
    # The others went on: each writer that lost a request had later ones acknowledged.
    for writer, (ok, bad) in enumerate(written):
        if bad:
            assert max(ok) > min(bad), f"writer {writer} stopped at the kill"
