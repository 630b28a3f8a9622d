"""Incremental reads over plain HTTP, as any client would use them (no client library).

``GET .../items?limit=N&known=<token>`` answers what changed since the token's read,
and ``If-None-Match`` answers 304 while the session is at the named ETag.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest
from session_memory.main import openapi_spec

from tests.test_any_language import run_block
from tests.utils.docs import code_blocks
from tests.utils.server import ServerProcess

JSON = {"content-type": "application/json"}


def items_url(session_id: str) -> str:
    return f"/v1/sessions/{quote(session_id, safe='')}/items"


async def append(http: httpx2.AsyncClient, session_id: str, *numbers: int) -> None:
    response = await http.post(items_url(session_id), json={"items": [{"n": n} for n in numbers]})
    assert response.status_code == 201


def ns(body: dict[str, object]) -> list[int]:
    return [item["n"] for item in body["items"]]  # type: ignore[attr-defined, index]


async def test_a_client_follows_a_session_by_read_tokens(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = items_url(session_id)
    await append(http, session_id, 1, 2, 3)
    first = await http.get(url, params={"limit": 10, "known": ""})
    body = first.json()
    assert (first.status_code, ns(body), body["since"], body["unchanged"]) == (
        200,
        [1, 2, 3],
        None,
        False,
    )
    assert (body["first_seq"], body["last_seq"], body["has_more"]) == (1, 3, False)
    token = body["read_token"]
    assert first.headers["etag"]

    same = await http.get(url, params={"limit": 10, "known": token})
    assert same.json() == {
        "items": [],
        "first_seq": None,
        "last_seq": None,
        "has_more": False,
        "since": 3,
        "unchanged": True,
        "read_token": token,
    }
    assert same.headers["etag"] == first.headers["etag"]

    await append(http, session_id, 4, 5)
    added = (await http.get(url, params={"limit": 10, "known": token})).json()
    assert (ns(added), added["since"], added["unchanged"], added["first_seq"]) == (
        [4, 5],
        3,
        False,
        4,
    )
    token = added["read_token"]

    await http.delete(url + "/last")  # anything but an append: the page in full
    full = (await http.get(url, params={"limit": 10, "known": token})).json()
    assert (ns(full), full["since"]) == ([1, 2, 3, 4], None)
    plain = (await http.get(url, params={"limit": 10})).json()
    assert {key: full[key] for key in plain} == plain
    assert "read_token" not in plain  # only asked-for tokens are sent


async def test_a_limit_sends_the_latest_new_items(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = items_url(session_id)
    await append(http, session_id, 1)
    token = (await http.get(url, params={"limit": 5, "known": ""})).json()["read_token"]
    await append(http, session_id, 2, 3, 4, 5)
    body = (await http.get(url, params={"limit": 2, "known": token})).json()
    assert (ns(body), body["since"], body["has_more"]) == ([4, 5], 1, True)


async def test_a_session_made_again_is_sent_in_full(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = items_url(session_id)
    await append(http, session_id, 1, 2)
    token = (await http.get(url, params={"limit": 5, "known": ""})).json()["read_token"]
    await http.delete(f"/v1/sessions/{quote(session_id, safe='')}")
    await append(http, session_id, 7, 8, 9)
    body = (await http.get(url, params={"limit": 5, "known": token})).json()
    assert (ns(body), body["since"]) == ([7, 8, 9], None)


async def test_tokens_it_did_not_give_read_as_nothing_known(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = items_url(session_id)
    await append(http, session_id, 1)
    forged = base64.urlsafe_b64encode(b"1.99.99.99").decode().rstrip("=")
    for token in ["", "bm90LWEtdG9rZW4", "x", forged]:
        body = (await http.get(url, params={"limit": 5, "known": token})).json()
        assert (ns(body), body["since"]) == ([1], None), token


async def test_refusals(http: httpx2.AsyncClient, session_id: str) -> None:
    url = items_url(session_id)
    for params in [{"known": "", "after": 1}, {"known": "", "before": 3}, {"known": "a/b"}]:
        response = await http.get(url, params=params)  # type: ignore[arg-type]
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
    response = await http.get(url, headers={"if-none-match": "no quotes"})
    assert response.status_code == 422


async def test_if_none_match_answers_304_while_unchanged(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    url = items_url(session_id)
    await append(http, session_id, 1, 2)
    etag = (await http.get(url, params={"limit": 5})).headers["etag"]
    for params in [{"limit": 5}, {"limit": 1}, {}, {"limit": 1, "before": 2}]:
        for tag in [etag, f"W/{etag}", f'"1", {etag}', "*"]:
            response = await http.get(url, params=params, headers={"if-none-match": tag})
            assert (response.status_code, response.content) == (304, b""), (params, tag)
            assert response.headers["etag"] == etag
    await append(http, session_id, 3)
    response = await http.get(url, params={"limit": 5}, headers={"if-none-match": etag})
    assert (response.status_code, ns(response.json())) == (200, [1, 2, 3])
    assert response.headers["etag"] != etag
    missing = await http.get(items_url(session_id + "-none"), headers={"if-none-match": '"0"'})
    assert missing.status_code == 304


def test_the_api_document_describes_incremental_reads() -> None:
    operation = openapi_spec()["paths"]["/v1/sessions/{session_id}/items"]["get"]
    names = {param["name"]: param for param in operation["parameters"]}
    assert "read_token" in names["known"]["description"]
    assert names["If-None-Match"]["in"] == "header"
    assert "304" in operation["responses"]
    schema = openapi_spec()["components"]["schemas"]["ItemPageResponse"]
    assert {"since", "unchanged", "read_token"} <= set(schema["properties"])


@pytest.mark.slow  # a real server process
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    block = next(b.text for b in code_blocks("sh") if "known=$TOKEN" in b.text)
    with ServerProcess(f"sqlite:///{tmp_path}/r.db", log_path=tmp_path / "log") as server:
        codes = run_block(
            block.replace("${B:-http://127.0.0.1:8000}", server.base_url), server.base_url, tmp_path
        )
    assert codes == [201, 200, 200, 201, 200, 200, 304]
