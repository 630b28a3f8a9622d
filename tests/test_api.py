"""The HTTP API over real TCP: shapes, paging, and problem+json errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from session_memory import Settings, create_app
from session_memory.api.schemas import (
    AppendResponse,
    ItemPageResponse,
    Problem,
    SessionListResponse,
    SessionRecord,
)
from session_memory.storage.sqlite import SQLiteStore

from tests.utils.server import ServerProcess

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.slow  # real server processes over TCP


def items_url(session_id: str) -> str:
    return f"/v1/sessions/{quote(session_id, safe='')}/items"


def assert_problem(response: httpx2.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    Problem.model_validate(body)
    assert body["status"] == status
    assert body["detail"]
    return dict(body)


async def post_items(
    http: httpx2.AsyncClient, session_id: str, items: list[object]
) -> httpx2.Response:
    return await http.post(items_url(session_id), json={"items": items})


async def test_post_then_get_round_trips_bytes(http: httpx2.AsyncClient, session_id: str) -> None:
    raw = '{"items":[{"b":1,  "a":[1.50,1e2,12345678901234567890123]},{"t":"é 🙂 \\u05e9"}]}'
    response = await http.post(
        items_url(session_id), content=raw.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201
    assert AppendResponse.model_validate(response.json()) == AppendResponse(
        count=2, first_seq=1, last_seq=2
    )
    got = await http.get(items_url(session_id))
    assert got.status_code == 200
    assert got.content == (
        b'{"items":[{"b":1,  "a":[1.50,1e2,12345678901234567890123]},'
        b'{"t":"\xc3\xa9 \xf0\x9f\x99\x82 \\u05e9"}],"first_seq":1,"last_seq":2,"has_more":false}'
    )
    ItemPageResponse.model_validate(got.json())


async def test_empty_batch_is_a_noop(http: httpx2.AsyncClient, session_id: str) -> None:
    response = await post_items(http, session_id, [])
    assert response.status_code == 201
    assert response.json() == {"count": 0, "first_seq": None, "last_seq": None}
    assert_problem(await http.get(f"/v1/sessions/{session_id}"), 404)


async def test_batch_with_one_bad_item_stores_nothing(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await post_items(http, session_id, [{"n": 0}])
    response = await post_items(http, session_id, [{"n": 1}, {"n": 2}, "oops", {"n": 3}])
    problem = assert_problem(response, 422)
    assert "items[2]" in str(problem["detail"])
    assert (await http.get(items_url(session_id))).json()["items"] == [{"n": 0}]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("limit=-1", "greater than or equal to 0"),
        ("limit=abc", "valid integer"),
        ("limit=1.5", "valid integer"),
        ("limit=99999999999999999999999", "less than or equal to"),
        ("after=-2", "greater than or equal to 0"),
    ],
)
async def test_bad_paging_params_are_422(
    http: httpx2.AsyncClient, session_id: str, query: str, fragment: str
) -> None:
    problem = assert_problem(await http.get(f"{items_url(session_id)}?{query}"), 422)
    assert fragment in str(problem["detail"])


async def test_huge_limit_is_fine(http: httpx2.AsyncClient, session_id: str) -> None:
    await post_items(http, session_id, [{"n": 1}])
    response = await http.get(f"{items_url(session_id)}?limit={2**63 - 1}")
    assert response.json()["items"] == [{"n": 1}]


async def test_keyset_pages_over_http(http: httpx2.AsyncClient, session_id: str) -> None:
    await post_items(http, session_id, [{"n": n} for n in range(1, 8)])
    tail = (await http.get(f"{items_url(session_id)}?limit=3")).json()
    assert [i["n"] for i in tail["items"]] == [5, 6, 7]
    assert (tail["first_seq"], tail["last_seq"], tail["has_more"]) == (5, 7, True)
    older = (await http.get(f"{items_url(session_id)}?limit=3&before={tail['first_seq']}")).json()
    assert [i["n"] for i in older["items"]] == [2, 3, 4]
    forward = (await http.get(f"{items_url(session_id)}?limit=4&after=2")).json()
    assert [i["n"] for i in forward["items"]] == [3, 4, 5, 6]
    assert forward["has_more"] is True
    between = (await http.get(f"{items_url(session_id)}?after=2&before=6&limit=10")).json()
    assert [i["n"] for i in between["items"]] == [3, 4, 5]
    rest = (await http.get(f"{items_url(session_id)}?after=6")).json()
    assert [i["n"] for i in rest["items"]] == [7]
    assert rest["has_more"] is False


async def test_unbounded_read_streams_every_item_in_order(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    for start in range(0, 1300, 100):
        await post_items(http, session_id, [{"n": n} for n in range(start, start + 100)])
    response = await http.get(items_url(session_id))
    body = ItemPageResponse.model_validate(response.json())
    assert [i["n"] for i in body.items] == list(range(1300))
    assert (body.first_seq, body.last_seq, body.has_more) == (1, 1300, False)
    after = (await http.get(f"{items_url(session_id)}?after=1000")).json()
    assert [i["n"] for i in after["items"]] == list(range(1000, 1300))


async def test_pop_over_http(http: httpx2.AsyncClient, session_id: str) -> None:
    await post_items(http, session_id, [{"n": 1}, {"b": 2, "a": 1}])
    popped = await http.delete(f"{items_url(session_id)}/last")
    assert popped.status_code == 200
    assert popped.content == b'{"item":{"b":2,"a":1}}'
    assert (await http.delete(f"{items_url(session_id)}/last")).json() == {"item": {"n": 1}}
    assert (await http.delete(f"{items_url(session_id)}/last")).json() == {"item": None}


async def test_session_record_and_clear(http: httpx2.AsyncClient, session_id: str) -> None:
    await post_items(http, session_id, [{"n": 1}, {"n": 2}])
    record = SessionRecord.model_validate((await http.get(f"/v1/sessions/{session_id}")).json())
    assert (record.id, record.item_count) == (session_id, 2)
    assert record.updated_at >= record.created_at
    assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
    assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
    problem = assert_problem(await http.get(f"/v1/sessions/{session_id}"), 404)
    assert session_id in str(problem["detail"])
    assert (await http.get(items_url(session_id))).json()["items"] == []


async def test_list_sessions_pages_most_recent_first(http: httpx2.AsyncClient) -> None:
    prefix = "list-" + items_url("x")[-12:].replace("/", "")
    names = [f"{prefix}-{n}" for n in range(5)]
    for name in names:
        await post_items(http, name, [{"n": 1}])
    seen: list[str] = []
    cursor: str | None = None
    while len(seen) < 5:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = SessionListResponse.model_validate(
            (await http.get("/v1/sessions", params=params)).json()
        )
        seen += [record.id for record in page.sessions]
        # The last page may end the listing: the server may hold only these five.
        assert page.next_cursor is not None or len(seen) >= 5
        cursor = page.next_cursor
    assert seen[:5] == names[::-1]


async def test_bad_list_cursor_is_422(http: httpx2.AsyncClient) -> None:
    assert_problem(await http.get("/v1/sessions?cursor=abc"), 422)
    assert_problem(await http.get("/v1/sessions?limit=0"), 422)


@pytest.mark.parametrize("bad", ["\x00", "a\nb", "tab\there", "\u2028", "\x9f", "x" * 257])
async def test_session_id_outside_alphabet_is_422(http: httpx2.AsyncClient, bad: str) -> None:
    problem = assert_problem(await http.get(items_url(bad)), 422)
    assert problem["errors"]


async def test_unknown_route_is_problem_404(http: httpx2.AsyncClient) -> None:
    assert_problem(await http.get("/v2/nothing"), 404)


async def test_405_lists_every_allowed_method(http: httpx2.AsyncClient) -> None:
    response = await http.put("/v1/sessions/abc")
    assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    response = await http.patch(items_url("abc"))
    assert response.headers["allow"] == "GET, POST, PUT"


async def test_wrong_content_type_is_415(http: httpx2.AsyncClient, session_id: str) -> None:
    response = await http.post(items_url(session_id), content=b'{"items":[]}')
    assert_problem(response, 415)
    response = await http.post(
        items_url(session_id), content=b"items=1", headers={"content-type": "text/plain"}
    )
    assert_problem(response, 415)


@pytest.mark.parametrize(
    "body", [b"{", b"not json", b'{"items":[{"a":1},]}', b'{"items":[{"a":"\xff"}]}']
)
async def test_malformed_body_is_400(
    http: httpx2.AsyncClient, session_id: str, body: bytes
) -> None:
    response = await http.post(
        items_url(session_id), content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)
    assert (await http.get(items_url(session_id))).json()["items"] == []


async def test_deep_nesting_is_422_and_server_stays_up(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    deep = b'{"items":[{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}]}"
    response = await http.post(
        items_url(session_id), content=deep, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422)
    assert (await http.get("/healthz")).status_code == 200


async def test_health_probes(http: httpx2.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("small-body")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        env={"SESSION_MEMORY_MAX_BODY_BYTES": "4096"},
    ) as process:
        yield process


async def test_body_over_limit_is_413_even_when_chunked(
    small_body_server: ServerProcess, session_id: str
) -> None:
    big = json.dumps({"items": [{"text": "x" * 5000}]}).encode()
    async with httpx2.AsyncClient(base_url=small_body_server.base_url) as http:
        problem = assert_problem(
            await http.post(
                items_url(session_id), content=big, headers={"content-type": "application/json"}
            ),
            413,
        )
        assert (problem["limit"], problem["max"]) == ("max_body_bytes", 4096)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000]

        assert_problem(
            await http.post(
                items_url(session_id),
                content=chunks(),
                headers={"content-type": "application/json"},
            ),
            413,
        )
        assert (await http.get(items_url(session_id))).json()["items"] == []


async def test_readyz_is_503_when_store_is_closed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    app = create_app(Settings(), store=store)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
        await store.close()
        assert_problem(await http.get("/readyz"), 503)
        assert_problem(await http.get("/v1/sessions/x/items"), 503)


async def test_idempotent_post_replays_the_first_outcome(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    headers = {"Idempotency-Key": "3f1c2a9e-0000-4000-8000-000000000001"}
    body = {"items": [{"n": 1}, {"n": 2}]}
    first = await http.post(items_url(session_id), json=body, headers=headers)
    again = await http.post(items_url(session_id), json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert [i["n"] for i in (await http.get(items_url(session_id))).json()["items"]] == [1, 2]

    other = await http.post(items_url(session_id), json={"items": [{"n": 3}]}, headers=headers)
    problem = assert_problem(other, 422)
    assert str(problem["type"]).endswith("idempotency-key-reused")
    assert len((await http.get(items_url(session_id))).json()["items"]) == 2


async def test_idempotent_pop_replays_the_same_item(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    await post_items(http, session_id, [{"n": 1}, {"n": 2}])
    headers = {"Idempotency-Key": "pop-once-1"}
    first = await http.delete(f"{items_url(session_id)}/last", headers=headers)
    again = await http.delete(f"{items_url(session_id)}/last", headers=headers)
    assert first.json() == again.json() == {"item": {"n": 2}}
    assert (await http.get(items_url(session_id))).json()["items"] == [{"n": 1}]


@pytest.mark.parametrize("bad", ["", "has space", "x" * 256, "é"])
async def test_bad_idempotency_key_is_422_and_stores_nothing(
    http: httpx2.AsyncClient, session_id: str, bad: str
) -> None:
    response = await http.post(
        items_url(session_id),
        content=b'{"items":[{"n":1}]}',
        headers={"content-type": "application/json", "Idempotency-Key": bad.encode()},  # type: ignore[dict-item]
    )
    assert_problem(response, 422)
    assert (await http.get(items_url(session_id))).json()["items"] == []


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("limited")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        extra_args=[
            "--max-items-per-request",
            "5",
            "--max-item-bytes",
            "200",
            "--max-items-per-session",
            "8",
        ],
    ) as process:
        yield process


@pytest.mark.parametrize(
    ("items", "limit"),
    [
        ([{"n": n} for n in range(6)], "max_items_per_request"),
        ([{"n": 1}, {"text": "x" * 300}], "max_item_bytes"),
        ([{"text": "é" * 120}], "max_item_bytes"),
    ],
)
async def test_limits_are_422_naming_the_limit(
    limited_server: ServerProcess, session_id: str, items: list[object], limit: str
) -> None:
    async with httpx2.AsyncClient(base_url=limited_server.base_url) as http:
        problem = assert_problem(await post_items(http, session_id, items), 422)
        assert problem["limit"] == limit
        assert (await http.get(items_url(session_id))).json()["items"] == []


async def test_session_item_limit_over_http(limited_server: ServerProcess, session_id: str) -> None:
    async with httpx2.AsyncClient(base_url=limited_server.base_url) as http:
        assert (await post_items(http, session_id, [{"n": n} for n in range(5)])).status_code == 201
        problem = assert_problem(await post_items(http, session_id, [{"n": 5}] * 4), 422)
        assert (problem["limit"], problem["max"]) == ("max_items_per_session", 8)
        assert len((await http.get(items_url(session_id))).json()["items"]) == 5


async def test_etag_and_if_match(http: httpx2.AsyncClient, session_id: str) -> None:
    empty = await http.get(items_url(session_id) + "?limit=5")
    assert empty.headers["etag"] == '"0"'
    created = await http.post(
        items_url(session_id), json={"items": [{"n": 1}]}, headers={"If-Match": '"0"'}
    )
    assert created.status_code == 201
    tag = created.headers["etag"]
    assert (await http.get(items_url(session_id) + "?limit=5")).headers["etag"] == tag
    assert (await http.get(items_url(session_id))).headers["etag"] == tag

    moved = await http.post(
        items_url(session_id), json={"items": [{"n": 2}]}, headers={"If-Match": tag}
    )
    assert moved.status_code == 201
    stale = await http.post(
        items_url(session_id), json={"items": [{"n": 3}]}, headers={"If-Match": tag}
    )
    assert_problem(stale, 412)
    assert stale.headers["etag"] == moved.headers["etag"]
    assert_problem(
        await http.delete(items_url(session_id) + "/last", headers={"If-Match": tag}), 412
    )
    assert_problem(await http.delete(f"/v1/sessions/{session_id}", headers={"If-Match": tag}), 412)
    assert [i["n"] for i in (await http.get(items_url(session_id))).json()["items"]] == [1, 2]
    assert_problem(
        await http.post(items_url(session_id), json={"items": []}, headers={"If-Match": "42"}), 422
    )
    current = moved.headers["etag"]
    assert (
        await http.delete(f"/v1/sessions/{session_id}", headers={"If-Match": current})
    ).status_code == 204


@pytest.fixture(scope="module")
def expiring_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("ttl")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        env={"SESSION_MEMORY_SESSION_TTL_SECONDS": "1"},
    ) as process:
        yield process


async def test_sessions_expire_after_the_default_ttl(
    expiring_server: ServerProcess, session_id: str
) -> None:
    async with httpx2.AsyncClient(base_url=expiring_server.base_url) as http:
        await post_items(http, session_id, [{"n": 1}])
        keep = await http.post(
            items_url(session_id + "-kept"),
            json={"items": [{"n": 1}]},
            headers={"Session-TTL": "0"},
        )
        assert keep.status_code == 201
        record = (await http.get(f"/v1/sessions/{session_id}")).json()
        assert record["expires_at"] is not None
        assert (await http.get(f"/v1/sessions/{session_id}-kept")).json()["expires_at"] is None
        await asyncio.sleep(1.3)
        assert (await http.get(items_url(session_id))).json()["items"] == []
        assert_problem(await http.get(f"/v1/sessions/{session_id}"), 404)
        assert (await http.get(items_url(session_id + "-kept"))).json()["items"] == [{"n": 1}]
        bad = await http.post(
            items_url(session_id), json={"items": [{"n": 1}]}, headers={"Session-TTL": "soon"}
        )
        assert_problem(bad, 422)


async def test_the_root_sends_a_browser_to_the_ui_and_lists_links_for_others(
    http: httpx2.AsyncClient,
) -> None:
    browser = await http.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert browser.status_code == 307
    assert browser.headers["location"] == "/ui"
    index = await http.get("/", headers={"Accept": "application/json"})
    assert index.status_code == 200
    links = index.json()
    for name in ("ui", "docs", "openapi", "sessions"):
        assert (await http.get(links[name])).status_code == 200, name
