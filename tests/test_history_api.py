"""Replace, fork, metadata and live follow over HTTP, against a real server per backend."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
from session_memory_client.protocol import ProblemType, session_path

from tests.utils.server import ServerProcess

JSON = {"content-type": "application/json"}


def items_url(session_id: str) -> str:
    return session_path(session_id) + "/items"


async def append(http: httpx2.AsyncClient, session_id: str, *ns: int, **headers: str) -> str:
    response = await http.post(
        items_url(session_id), json={"items": [{"n": n} for n in ns]}, headers=headers
    )
    assert response.status_code == 201, response.text
    return response.headers["etag"]


async def numbers(http: httpx2.AsyncClient, session_id: str) -> list[int]:
    response = await http.get(items_url(session_id))
    return [item["n"] for item in response.json()["items"]]


async def test_replace_answers_seqs_and_etag(http: httpx2.AsyncClient, session_id: str) -> None:
    await append(http, session_id, 1, 2, 3)
    body = b'{"from_seq": 2, "items": [ {"n":  9} ]}'
    response = await http.put(items_url(session_id), content=body, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json() == {"count": 1, "first_seq": 4, "last_seq": 4}
    read = await http.get(items_url(session_id))
    assert read.content.startswith(b'{"items":[{"n":1},{"n":  9}]')
    assert read.headers["etag"] == response.headers["etag"]


async def test_replace_with_stale_if_match_is_412_and_changes_nothing(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    stale = await append(http, session_id, 1)
    await append(http, session_id, 2)
    response = await http.put(
        items_url(session_id), json={"items": [{"n": 0}]}, headers={"If-Match": stale}
    )
    assert response.status_code == 412
    assert response.json()["type"] == ProblemType.PRECONDITION_FAILED
    assert await numbers(http, session_id) == [1, 2]


async def test_replace_idempotency_key_replays(http: httpx2.AsyncClient, session_id: str) -> None:
    await append(http, session_id, 1)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await http.put(items_url(session_id), json={"items": [{"n": 5}]}, headers=key)
    again = await http.put(items_url(session_id), json={"items": [{"n": 5}]}, headers=key)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    other = await http.put(items_url(session_id), json={"items": [{"n": 6}]}, headers=key)
    assert other.status_code == 422
    assert await numbers(http, session_id) == [5]


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [], "from_seq": -1}',
        b'{"items": [], "from_seq": "3"}',
        b'{"items": [1]}',
        b'{"items": [], "extra": 1}',
        b'{"from_seq": 1}',
        b"[]",
    ],
)
async def test_replace_refuses_bad_bodies(
    http: httpx2.AsyncClient, session_id: str, body: bytes
) -> None:
    response = await http.put(items_url(session_id), content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_fork_copies_and_refuses_existing_or_missing(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await append(http, session_id, 1, 2, 3)
    target = f"{session_id}-fork"
    url = session_path(session_id) + "/fork"
    response = await http.post(url, json={"session_id": target, "through_seq": 2})
    assert response.status_code == 201, response.text
    assert response.json() == {"session_id": target, "count": 2, "first_seq": 1, "last_seq": 2}
    assert await numbers(http, target) == [1, 2]
    again = await http.post(url, json={"session_id": target})
    assert again.status_code == 409
    assert again.json()["type"] == ProblemType.SESSION_EXISTS
    missing = await http.post(
        session_path(f"{session_id}-none") + "/fork", json={"session_id": "x"}
    )
    assert missing.status_code == 404
    bad = await http.post(url, json={"session_id": "a/b"})
    assert bad.status_code == 422


async def test_metadata_header_patch_and_filters(http: httpx2.AsyncClient) -> None:
    prefix = f"meta-{uuid.uuid4()}-"
    user = str(uuid.uuid4())
    await append(http, prefix + "a", 1, **{"Session-Metadata": json.dumps({"user_id": user})})
    await append(http, prefix + "b", 1, **{"Session-Metadata": json.dumps({"user_id": user})})
    await append(http, prefix + "c", 1)
    record = (await http.get(session_path(prefix + "a"))).json()
    assert record["metadata"] == {"user_id": user}

    async def listed(query: str) -> list[str]:
        response = await http.get(f"/v1/sessions?{query}")
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["sessions"]]

    assert await listed(f"metadata.user_id={user}") == [prefix + "b", prefix + "a"]
    assert await listed(f"prefix={prefix}") == [prefix + "c", prefix + "b", prefix + "a"]

    patch = await http.patch(
        session_path(prefix + "a"),
        content=json.dumps({"metadata": {"user_id": None, "label": "x"}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patch.status_code == 200, patch.text
    assert patch.json()["metadata"] == {"label": "x"}
    assert await listed(f"metadata.user_id={user}") == [prefix + "b"]
    assert await listed(f"metadata.label=x&prefix={prefix}") == [prefix + "a"]

    stale = await http.patch(
        session_path(prefix + "a"), json={"metadata": {"k": 1}}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    missing = await http.patch(session_path(prefix + "zzz"), json={"metadata": {"k": 1}})
    assert missing.status_code == 404
    not_object = await http.patch(session_path(prefix + "a"), json=[1])
    assert not_object.status_code == 422
    too_large = await http.patch(session_path(prefix + "a"), json={"metadata": {"k": "v" * 5000}})
    assert too_large.status_code == 413
    # A merge patch of the record: what it cannot mean is refused, never stored.
    for body in ({"k": 1}, {"id": "x"}, {"item_count": 0}, {"metadata": "x"}, {"metadata": [1]}):
        refused = await http.patch(session_path(prefix + "a"), json=body)
        assert refused.status_code == 422, (body, refused.text)
    assert (await http.get(session_path(prefix + "a"))).json()["metadata"] == {"label": "x"}
    unchanged = await http.patch(session_path(prefix + "a"), json={})
    assert unchanged.json()["metadata"] == {"label": "x"}
    cleared = await http.patch(session_path(prefix + "a"), json={"metadata": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["metadata"] == {}
    assert await listed(f"metadata.label=x&prefix={prefix}") == []
    bad_header = await http.post(
        items_url(prefix + "d"), json={"items": []}, headers={"Session-Metadata": "[1]"}
    )
    assert bad_header.status_code == 422


async def test_the_record_shows_its_own_ttl_and_the_highest_seq_it_gave(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await append(http, session_id, 1, 2, 3, **{"Session-TTL": "3600"})
    await http.delete(items_url(session_id) + "/last")  # seq 3 is not given again
    record = (await http.get(session_path(session_id))).json()
    assert (record["item_count"], record["ttl"], record["last_seq"]) == (2, 3600, 3)
    assert list(record)[-2:] == ["ttl", "last_seq"]  # after the members it always had
    replaced = await http.put(items_url(session_id), json={"from_seq": 2, "items": [{"n": 4}]})
    assert replaced.json()["last_seq"] == 4
    await append(http, session_id, 5)  # seq 5, without Session-TTL: the TTL is kept
    await http.delete(items_url(session_id) + "/last")
    await http.delete(items_url(session_id) + "/last")  # seq 1 is left, the newest
    listed = (await http.get("/v1/sessions", params={"prefix": session_id})).json()
    patched = (await http.patch(session_path(session_id), json={"metadata": {"k": 1}})).json()
    for shown in (listed["sessions"][0], patched):
        assert (shown["item_count"], shown["ttl"], shown["last_seq"]) == (1, 3600, 5)
    # Read-only, like the rest of the record but its metadata.
    for body in ({"ttl": 5}, {"last_seq": 1}, {"ttl": None, "metadata": {"k": 2}}):
        refused = await http.patch(session_path(session_id), json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert "is read-only" in refused.json()["detail"]
    assert (await http.get(session_path(session_id))).json() == patched

    await append(http, session_id + "-default", 1)
    default = (await http.get(session_path(session_id + "-default"))).json()
    assert (default["ttl"], default["last_seq"], default["expires_at"]) == (None, 1, None)
    await append(http, session_id + "-never", 1, **{"Session-TTL": "0"})
    never = (await http.get(session_path(session_id + "-never"))).json()
    assert (never["ttl"], never["expires_at"]) == (0, None)


async def events(response: httpx2.Response) -> AsyncIterator[dict[str, str]]:
    """Server-sent events as dicts of their fields; comments come as {"comment": ...}."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if not line:
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(": ")
            event[name] = event[name] + "\n" + value if name in event else value


async def next_event(stream: AsyncIterator[dict[str, str]]) -> dict[str, str]:
    while True:
        event = await asyncio.wait_for(anext(stream), 10)
        if "comment" not in event:
            return event


async def test_follow_streams_appends_and_changes_and_resumes(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await append(http, session_id, 1)
    url = session_path(session_id) + "/events"
    async with http.stream("GET", url, params={"after": 0}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        first = await next_event(stream)
        assert (first["id"], first["event"], first["data"]) == ("1", "append", '{"n":1}')
        await http.post(
            items_url(session_id), content=b'{"items":[{"n": 2},\n{\n"n":3}]}', headers=JSON
        )
        second, third = await next_event(stream), await next_event(stream)
        assert (second["id"], second["data"]) == ("2", '{"n": 2}')
        assert (third["id"], third["data"]) == ("3", '{\n"n":3}')
        await http.delete(items_url(session_id) + "/last")
        popped = await next_event(stream)
        assert popped["event"] == "pop"
        assert json.loads(popped["data"])["revision"] > 0
        await http.put(items_url(session_id), json={"items": [{"n": 4}]})
        replaced, appended = await next_event(stream), await next_event(stream)
        assert replaced["event"] == "replace"
        assert (appended["event"], appended["id"]) == ("append", "4")
    await append(http, session_id, 5, 6)
    async with http.stream("GET", url, headers={"Last-Event-ID": "4"}) as response:
        stream = events(response)
        resumed = [await next_event(stream), await next_event(stream)]
        assert [e["id"] for e in resumed] == ["5", "6"]
        assert [json.loads(e["data"])["n"] for e in resumed] == [5, 6]


async def test_follow_without_cursor_starts_at_now(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await append(http, session_id, 1, 2)
    async with http.stream("GET", session_path(session_id) + "/events") as response:
        stream = events(response)
        assert (await asyncio.wait_for(anext(stream), 10)) == {"comment": "following"}
        await append(http, session_id, 3)
        event = await next_event(stream)
        assert (event["id"], event["data"]) == ("3", '{"n":3}')


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?after=-1", {}),
        ("?after=x", {}),
        ("?after=%C2%B2", {}),  # ², which int() takes: only ASCII digits are numbers
        ("?after=1_0", {}),
        ("", {"Last-Event-ID": "abc"}),
    ],
)
async def test_follow_refuses_bad_cursors(
    http: httpx2.AsyncClient, session_id: str, query: str, headers: dict[str, str]
) -> None:
    # Bounded: a cursor taken by mistake would open an endless stream.
    response = await asyncio.wait_for(
        http.get(session_path(session_id) + "/events" + query, headers=headers), 10
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


# -- on a server with small bounds: one session per tenant, 1 KiB read pages ----------


@pytest.fixture(scope="module")
def bounded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("bounded")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        env={
            "SESSION_MEMORY_MAX_SESSIONS_PER_TENANT": "1",
            "SESSION_MEMORY_MAX_READ_PAGE_BYTES": "1024",
        },
    ) as process:
        yield process


@pytest.mark.slow
async def test_fork_and_replace_creating_a_session_past_the_limit_are_422(
    bounded_server: ServerProcess,
) -> None:
    async with httpx2.AsyncClient(base_url=bounded_server.base_url) as http:
        await append(http, "only", 1)
        forked = await http.post(session_path("only") + "/fork", json={"session_id": "copy"})
        replaced = await http.put(items_url("new"), json={"items": [{"n": 1}]})
        for refused in (forked, replaced):
            assert refused.status_code == 422, refused.text
            assert (refused.json()["limit"], refused.json()["max"]) == (
                "max_sessions_per_tenant",
                1,
            )
        assert (await http.get(session_path("copy"))).status_code == 404
        # The existing session is no new one: replacing its items is fine.
        assert (await http.put(items_url("only"), json={"items": [{"n": 2}]})).status_code == 200
        await http.delete(session_path("only"))


@pytest.mark.slow
async def test_follow_catches_up_in_pages_bounded_by_bytes(
    bounded_server: ServerProcess,
) -> None:
    async with httpx2.AsyncClient(base_url=bounded_server.base_url, timeout=30) as http:
        # 12 items of about 300 bytes: several 1 KiB pages, each short of the count.
        big = [{"n": n, "pad": "x" * 300} for n in range(12)]
        created = await http.post(items_url("paged"), json={"items": big})
        assert created.status_code == 201
        url = session_path("paged") + "/events"
        async with http.stream("GET", url, params={"after": 0}) as response:
            stream = events(response)
            seen = [await next_event(stream) for _ in big]
        assert [event["id"] for event in seen] == [str(n) for n in range(1, 13)]
        assert [json.loads(event["data"])["n"] for event in seen] == list(range(12))
        await http.delete(session_path("paged"))
