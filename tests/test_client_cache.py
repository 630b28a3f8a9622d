"""RemoteSession keeps what it read and asks only for what changed: never stale, never shared.

The writes come from another OS process (``tests.utils.writer``), so nothing in the
reading process can know of them: every read must learn them from the service. Each
read is checked against a read of a session object that keeps nothing.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import pytest
from session_memory_client import DEFAULT_CACHE_BYTES, RemoteSession, SessionMemoryClient
from session_memory_client._cache import ReadCache

from tests.utils.scripted import Answer, Seen, scripted_server
from tests.utils.writer import Writer


def _item(n: int, **extra: Any) -> Any:
    return {"n": n, **extra}


def _path(session_id: str) -> str:
    return f"/v1/sessions/{quote(session_id, safe='').replace('.', '%2E')}"


@pytest.fixture
def writer(base_url: str) -> Iterator[Writer]:
    with Writer(base_url) as process:
        yield process


@asynccontextmanager
async def pair(base_url: str, session_id: str, **options: Any) -> AsyncIterator[tuple[Any, Any]]:
    """A session that keeps what it reads, and one that keeps nothing (the truth)."""
    async with (
        RemoteSession(session_id, base_url=base_url, **options) as cached,
        RemoteSession(session_id, base_url=base_url, cache_bytes=0) as plain,
    ):
        yield cached, plain


async def agree(cached: RemoteSession, plain: RemoteSession, expected: list[Any]) -> None:
    for limit in (None, 1, 2, 5, 50):
        want = expected if limit is None else expected[-limit:]
        assert await cached.get_items(limit) == want, limit
        assert await plain.get_items(limit) == want, limit


# -- every kind of change, made by another process ------------------------------------


async def test_changes_by_another_process_are_always_seen(
    base_url: str, session_id: str, writer: Writer
) -> None:
    path, other = _path(session_id), f"{session_id}-source"
    items = path + "/items"
    expected = [_item(n) for n in range(5)]
    assert writer.send("POST", items, {"items": expected}) == 201
    async with pair(base_url, session_id) as (cached, plain):
        await agree(cached, plain, expected)
        steps = [
            "append",
            "pop",
            "pop then append as many",
            "replace the tail",
            "replace all",
            "metadata",
            "clear",
            "clear and make again, longer",
            "fork into the same id",
        ]
        for step in steps:
            if step == "append":
                writer.send("POST", items, {"items": [_item(5), _item(6)]})
                expected += [_item(5), _item(6)]
            elif step == "pop":
                writer.send("DELETE", items + "/last")
                expected.pop()
            elif step == "pop then append as many":
                writer.send("DELETE", items + "/last")
                writer.send("POST", items, {"items": [_item(60)]})
                expected[-1:] = [_item(60)]
            elif step == "replace the tail":
                seqs = (await plain.read_items(limit=2)).first_seq
                writer.send("PUT", items, {"items": [_item(70)], "from_seq": seqs})
                expected[-2:] = [_item(70)]
            elif step == "replace all":
                expected = [_item(n) for n in range(80, 84)]
                writer.send("PUT", items, {"items": expected})
            elif step == "metadata":
                headers = {"content-type": "application/merge-patch+json"}
                writer.send("PATCH", path, {"metadata": {"k": "v"}}, headers)
            elif step == "clear":
                writer.send("DELETE", path)
                expected = []
            elif step == "clear and make again, longer":
                writer.send("POST", items, {"items": [_item(1), _item(2)]})
                await agree(cached, plain, [_item(1), _item(2)])
                writer.send("DELETE", path)
                expected = [_item(n) for n in range(100, 107)]
                writer.send("POST", items, {"items": expected})
            else:
                writer.send("DELETE", path)
                expected = [_item(n) for n in range(200, 210)]
                writer.send("POST", _path(other) + "/items", {"items": expected})
                assert (
                    writer.send("POST", _path(other) + "/fork", {"session_id": session_id}) == 201
                )
            await agree(cached, plain, expected)
    writer.send("DELETE", _path(other))


async def test_an_expired_session_is_seen_to_go_and_come_back(
    base_url: str, session_id: str, writer: Writer
) -> None:
    items = _path(session_id) + "/items"
    async with pair(base_url, session_id) as (cached, plain):
        # Long enough that the reads before it ends finish first on a loaded machine.
        writer.send("POST", items, {"items": [_item(n) for n in range(5)]}, {"Session-TTL": "4"})
        await agree(cached, plain, [_item(n) for n in range(5)])
        await asyncio.sleep(4.3)
        await agree(cached, plain, [])
        again = [_item(n) for n in range(10, 17)]
        writer.send("POST", items, {"items": again})
        await agree(cached, plain, again)


async def test_reads_racing_another_process_stay_consistent(base_url: str, session_id: str) -> None:
    """A process appends and pops as fast as it can while this one reads: every read is
    a history the session could have held (numbers rising, none repeated), and once
    the writer stops the kept items are exactly the session's."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(target=_churn, args=(base_url, session_id, stop), daemon=True)
    process.start()
    try:
        async with pair(base_url, session_id) as (cached, plain):
            deadline = time.monotonic() + 2.0
            reads = 0
            while time.monotonic() < deadline or reads < 20:
                for limit in (None, 3):
                    got = [item["n"] for item in await cached.get_items(limit)]
                    assert got == sorted(set(got)), got
                    reads += 1
            stop.set()
            process.join(30)
            assert process.exitcode == 0
            final = await plain.get_items()
            assert await cached.get_items() == final
            assert await cached.get_items(3) == final[-3:]
    finally:
        stop.set()
        process.join(5)
        if process.is_alive():
            process.kill()


def _churn(base_url: str, session_id: str, stop: Any) -> None:
    import httpx2

    items = f"{base_url}{_path(session_id)}/items"
    with httpx2.Client(timeout=30) as http:
        n = 0
        while not stop.is_set():
            http.post(items, json={"items": [_item(n + 1), _item(n + 2)]}).raise_for_status()
            n += 2
            if n % 6 == 0:
                http.delete(items + "/last").raise_for_status()


# -- what a caller gets is its own ---------------------------------------------------


async def test_changing_what_a_read_returned_changes_nothing_kept(remote: RemoteSession) -> None:
    nested = {"role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}
    await remote.add_items([_item(1, role="user"), nested])  # type: ignore[list-item]
    first = await remote.get_items()
    first[0]["n"] = 99  # type: ignore[typeddict-unknown-key]
    first[1]["content"][0]["text"] = "changed"  # type: ignore[index, typeddict-item]
    first[1]["content"].append({"type": "x"})  # type: ignore[union-attr, typeddict-item]
    first.append(_item(3))  # type: ignore[arg-type]
    again = await remote.get_items()
    assert again == [_item(1, role="user"), nested]
    assert again[0] is not first[0]
    assert await remote.get_items(1) == [nested]


# -- the bound and the switch ----------------------------------------------------------


async def test_the_cache_stays_within_its_bound(base_url: str, session_id: str) -> None:
    pad = "x" * 400
    bound = 4_000
    async with SessionMemoryClient(base_url=base_url, cache_bytes=bound) as client:
        sessions = [client.session(f"{session_id}-{n}") for n in range(3)]
        expected = [list(range(20 * n, 20 * n + 20)) for n in range(3)]
        for session, numbers in zip(sessions, expected, strict=True):
            await session.add_items([_item(k, pad=pad) for k in numbers])
        cache: ReadCache = client._cache  # type: ignore[assignment]
        for rounds in range(3):
            for session, numbers in zip(sessions, expected, strict=True):
                assert [item["n"] for item in await session.get_items()] == numbers
                assert [item["n"] for item in await session.get_items(3)] == numbers[-3:]
                assert 0 < cache.nbytes <= bound, rounds
                await session.add_items([_item(1000 + rounds, pad=pad)])
                numbers.append(1000 + rounds)


async def test_the_cache_can_be_switched_off() -> None:
    seen: list[Seen] = []
    page = {"items": [_item(1)], "first_seq": 1, "last_seq": 1, "has_more": False}
    async with scripted_server(lambda _request: Answer(200, page), seen) as url:
        async with RemoteSession("s", base_url=url, cache_bytes=0) as off:
            assert off._reads._cache is None
            assert await off.get_items() == [_item(1)]
            assert await off.get_items(5) == [_item(1)]
        async with SessionMemoryClient(base_url=url, cache_bytes=0) as client:
            assert await client.session("s").get_items() == [_item(1)]
        async with RemoteSession("s", base_url=url) as on:
            assert await on.get_items() == [_item(1)]
    paths = [request.path for request in seen]
    assert paths == [
        "/v1/sessions/s/items?limit=10000",
        "/v1/sessions/s/items?limit=5",
        "/v1/sessions/s/items?limit=10000",
        # A server that gives no read token: nothing is kept, each read is in full.
        "/v1/sessions/s/items?limit=10000&known=",
    ]
    with pytest.raises(ValueError, match="cache_bytes"):
        RemoteSession("s", cache_bytes=-1)
    assert DEFAULT_CACHE_BYTES >= 2**20


async def test_what_the_client_sends_and_makes_of_each_answer() -> None:
    """Against scripted answers: the token goes back each time, and unchanged, since
    and full answers each turn into the right history."""
    seen: list[Seen] = []

    def page(
        items: list[int], first: int | None, since: int | None, token: str, **more: Any
    ) -> Answer:
        last = None if first is None else first + len(items) - 1
        body = {"items": [_item(n) for n in items], "first_seq": first, "last_seq": last}
        body |= {"has_more": False, "since": since, "unchanged": False, "read_token": token}
        return Answer(200, body | more)

    answers = [
        page([1, 2], 1, None, "t1"),
        page([], None, 2, "t1", unchanged=True),
        page([3], 3, 2, "t2"),
        page([1, 2], 1, None, "t3"),  # after a pop elsewhere
        page([7, 8], 7, 2, "t4", has_more=True),  # more appended than the limit
    ]
    async with (
        scripted_server(lambda _request: answers.pop(0), seen) as url,
        RemoteSession("s", base_url=url) as remote,
    ):
        assert [i["n"] for i in await remote.get_items()] == [1, 2]
        assert [i["n"] for i in await remote.get_items()] == [1, 2]
        assert [i["n"] for i in await remote.get_items()] == [1, 2, 3]
        assert [i["n"] for i in await remote.get_items()] == [1, 2]
        assert [i["n"] for i in await remote.get_items(2)] == [7, 8]
    assert [request.path.split("?")[1] for request in seen] == [
        "limit=10000&known=",
        "limit=10000&known=t1",
        "limit=10000&known=t1",
        "limit=10000&known=t2",
        "limit=2&known=t3",
    ]


def test_one_cache_serves_the_sessions_of_a_client() -> None:
    client = SessionMemoryClient(base_url="http://127.0.0.1:9", cache_bytes=1234)
    a, b = client.session("a"), client.session("b")
    assert a._reads._cache is b._reads._cache is client._cache
    assert client._cache is not None
    assert client._cache.max_bytes == 1234
    assert json.dumps(DEFAULT_CACHE_BYTES)


def test_entries_share_their_lists_without_seeing_each_others_items() -> None:
    from session_memory_client._cache import CacheEntry, keep

    def entry(token: str, numbers: list[int]) -> CacheEntry:
        return CacheEntry(token, [_item(n) for n in numbers], [10] * len(numbers), False)

    base = entry("t0", [1, 2])
    first = base.followed_by(entry("t1", [3]))  # extends base's lists in place
    second = base.followed_by(entry("t2", [4, 5]))  # base no longer ends them: a copy
    assert [item["n"] for item in base.latest(None)] == [1, 2]
    assert [item["n"] for item in first.latest(None)] == [1, 2, 3]
    assert [item["n"] for item in second.latest(None)] == [1, 2, 4, 5]
    assert [item["n"] for item in first.followed_by(entry("t3", [6])).latest(2)] == [3, 6]
    assert (second.count, second.nbytes, second.token) == (4, 40, "t2")
    nested = CacheEntry("t", [keep({"a": [1]})], [5], True).followed_by(
        CacheEntry("u", [keep({"b": 1})], [5], True)
    )
    assert (nested.flat, nested.latest(None)) == (False, [{"a": [1]}, {"b": 1}])
    # Past its bound an entry drops its oldest items to three quarters of it.
    big = entry("t", list(range(100)))
    kept = big.trimmed(500)
    assert kept is not None
    assert (kept.count, kept.nbytes, kept.complete) == (37, 370, False)
    assert kept.trimmed(500) is kept
    assert big.trimmed(5) is None
