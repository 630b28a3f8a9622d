"""The hot path answers exactly as the FastAPI routes do, and really takes the hot requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from session_memory import Settings, create_app
from session_memory.api.fast_path import FastPath, parse_query
from session_memory.api.table import ROUTES
from session_memory.storage import MAX_SEQ
from session_memory.storage.sqlite import SQLiteStore
from starlette.types import Receive, Scope, Send

JSON = {"content-type": "application/json"}


class Pair:
    """The same requests sent to the plain app and to the hot path, on twin databases."""

    def __init__(self, plain: httpx2.AsyncClient, hot: httpx2.AsyncClient, fell: list[str]):
        self.plain, self.hot, self.fell_through = plain, hot, fell

    async def both(self, method: str, url: str, **kwargs: object) -> httpx2.Response:
        a = await self.plain.request(method, url, **kwargs)  # type: ignore[arg-type]
        b = await self.hot.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert (a.status_code, a.headers["content-type"], a.headers.get("etag"), a.content) == (
            b.status_code,
            b.headers["content-type"],
            b.headers.get("etag"),
            b.content,
        ), f"{method} {url}"
        return b


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    # One still clock for both: revisions (ETags) follow the clock, and must agree.
    stores = [
        SQLiteStore(tmp_path / "plain.db", clock=lambda: 1_800_000_000.0),
        SQLiteStore(tmp_path / "hot.db", clock=lambda: 1_800_000_000.0),
    ]
    plain_app = create_app(Settings(), store=stores[0])
    hot_app = create_app(Settings(), store=stores[1])
    fell: list[str] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        fell.append(f"{scope['method']} {scope['path']}?{scope['query_string'].decode()}")
        await hot_app(scope, receive, send)

    hot = FastPath(recording, hot_app)
    async with (
        plain_app.router.lifespan_context(plain_app),
        hot_app.router.lifespan_context(hot_app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=plain_app), base_url="http://t") as a,
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=hot), base_url="http://t") as b,
    ):
        yield Pair(a, b, fell)


@pytest.mark.parametrize("session_id", ["plain", "with space", "..", "100%", "会话 🙂", "a?b#c"])
async def test_hot_path_answers_like_the_routes(pair: Pair, session_id: str) -> None:
    url = f"/v1/sessions/{quote(session_id, safe='').replace('.', '%2E')}/items"
    await pair.both("POST", url, content=b'{"items":[{"n": 1}, {"b":2,  "a":1}]}', headers=JSON)
    await pair.both("POST", url, json={"items": [{"n": n} for n in range(3, 8)]})
    await pair.both("POST", url, json={"items": []})
    for query in [
        "limit=0",
        "limit=1",
        "limit=3",
        "limit=100",
        "after=2&limit=2",
        "limit=2&before=4",
        "after=1&before=5&limit=9",
    ]:
        await pair.both("GET", f"{url}?{query}")
    await pair.both("DELETE", url + "/last")
    await pair.both("GET", f"{url}?limit=50")
    assert pair.fell_through == []  # all of the above took the hot path


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"items":[{"n":1},2]}', JSON),
        (b'{"items":[', JSON),
        (b'{"items":[{"a":"\xff"}]}', JSON),
        (b'{"items":[]}', {"content-type": "text/plain"}),
        (b'{"items":[], "x": 1}', JSON),
        (b"[" * 50_000, JSON),
    ],
)
async def test_hot_path_errors_match(pair: Pair, body: bytes, headers: dict[str, str]) -> None:
    response = await pair.both("POST", "/v1/sessions/s/items", content=body, headers=headers)
    assert response.status_code >= 400
    assert response.headers["content-type"] == "application/problem+json"
    assert pair.fell_through == []


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": "42"},
        {"If-Match": '"1", "2"'},
        {"If-Match": '"99"'},
        {"If-Match": "*"},
        {"Session-TTL": "-1"},
        {"Session-TTL": "1e3"},
        {"Session-TTL": "9999999999"},
        {"Idempotency-Key": "has space"},
        {"Idempotency-Key": "k" * 256},
        {"Idempotency-Key": ""},
        {"If-Match": "bad", "Session-TTL": "bad", "Idempotency-Key": "bad key"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions/s/items", b'{"items":[{"n":1}]}'),
        ("POST", "/v1/sessions/s/items", b'{"items":['),
        ("DELETE", "/v1/sessions/s/items/last", None),
    ],
)
async def test_hot_path_header_refusals_match(
    pair: Pair, headers: dict[str, str], method: str, path: str, body: bytes | None
) -> None:
    await pair.both("POST", "/v1/sessions/s/items", json={"items": [{"n": 0}]})
    sent = {**JSON, **headers} if body is not None else headers
    await pair.both(method, path, content=body, headers=sent)
    assert pair.fell_through == []


@pytest.mark.parametrize("query", ["", "limit=-1", "limit=x", "limit=1&limit=2", "foo=1"])
async def test_unsure_requests_go_to_the_routes(pair: Pair, query: str) -> None:
    await pair.both("POST", "/v1/sessions/s/items", json={"items": [{"n": 1}]})
    await pair.both("GET", f"/v1/sessions/s/items?{query}")
    assert pair.fell_through == [f"GET /v1/sessions/s/items?{query}"]


async def test_bad_session_id_goes_to_the_routes(pair: Pair) -> None:
    response = await pair.both("GET", "/v1/sessions/%01/items?limit=1")
    assert response.status_code == 422
    assert len(pair.fell_through) == 1


def test_parse_query() -> None:
    read = next(r for r in ROUTES if r.operation_id == "items-get")
    append = next(r for r in ROUTES if r.operation_id == "items-add")
    assert parse_query(read, b"limit=20") == {"limit": 20}
    assert parse_query(read, b"limit=5&after=9") == {"limit": 5, "after": 9}
    assert parse_query(read, f"limit={MAX_SEQ}".encode()) == {"limit": MAX_SEQ}
    assert parse_query(append, b"") == {}
    for deferred in [
        b"",  # a read without a limit is not hot (it may stream)
        b"limit=",
        b"limit",
        b"limit=+1",
        b"limit=1e3",
        b"limit=1&limit=2",
        b"after=1",
        b"foo=1&limit=1",
        f"limit={MAX_SEQ + 1}".encode(),
    ]:
        assert parse_query(read, deferred) is None, deferred
    assert parse_query(append, b"limit=1") is None


async def test_incremental_reads_take_the_hot_path_and_answer_alike(pair: Pair) -> None:
    url = "/v1/sessions/s/items"
    await pair.both("POST", url, json={"items": [{"n": 1}, {"n": 2}]})
    first = await pair.both("GET", f"{url}?limit=5&known=")
    token = first.json()["read_token"]
    await pair.both("GET", f"{url}?limit=5&known={token}")
    await pair.both("POST", url, json={"items": [{"n": 3}]})
    await pair.both("GET", f"{url}?known={token}&limit=1")
    await pair.both("GET", f"{url}?limit=5&known=bm90LWEtdG9rZW4")
    etag = first.headers["etag"]
    for tag in [etag, '"1"', "*", f"W/{etag}, {etag}", "bad"]:
        await pair.both("GET", f"{url}?limit=5", headers={"If-None-Match": tag})
    await pair.both("GET", f"{url}?limit=5&known={token}&after=1")
    assert pair.fell_through == []
    # Without a limit, or with a token that needs decoding, the routes answer.
    await pair.both("GET", f"{url}?known={token}")
    await pair.both("GET", f"{url}?limit=5&known=a%2Fb")
    assert pair.fell_through == [f"GET {url}?known={token}", f"GET {url}?limit=5&known=a%2Fb"]


def test_parse_query_takes_a_read_token() -> None:
    read = next(r for r in ROUTES if r.operation_id == "items-get")
    assert parse_query(read, b"limit=20&known=") == {"limit": 20, "known": ""}
    assert parse_query(read, b"known=MS41&limit=2") == {"limit": 2, "known": "MS41"}
    for deferred in [b"known=", b"limit=1&known=a%2F", b"limit=1&known=a+b", b"limit=1&known"]:
        assert parse_query(read, deferred) is None, deferred
    assert parse_query(read, b"limit=1&known=" + b"a" * 129) is None
