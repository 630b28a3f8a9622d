"""Input that once gave a 500, a silent corruption or a different answer on PUT than on
POST: each is a clear 4xx (or stored exactly) now, on every backend."""

from __future__ import annotations

import base64
import json

import httpx2
import pytest
from session_memory_client.protocol import session_path

JSON = {"content-type": "application/json"}


def items_url(session_id: str) -> str:
    return session_path(session_id) + "/items"


async def _seed(http: httpx2.AsyncClient, session_id: str) -> None:
    response = await http.post(items_url(session_id), json={"items": [{"n": 1}]})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "metadata",
    [b'{"k\\u0000":"v"}', b'{"k":"v\\u0000"}', b'{"k":"\\ud800"}', b'{"\\udfff":1}', b'{"x":NaN}'],
)
async def test_unstorable_metadata_is_a_422(
    http: httpx2.AsyncClient, session_id: str, metadata: bytes
) -> None:
    await _seed(http, session_id)
    patch = await http.patch(
        session_path(session_id), content=b'{"metadata":' + metadata + b"}", headers=JSON
    )
    assert patch.status_code == 422, patch.text
    created = await http.post(
        items_url(session_id + "-new"),
        json={"items": [{"n": 1}]},
        headers={"Session-Metadata": metadata.decode()},
    )
    assert created.status_code == 422, created.text
    assert (await http.get(session_path(session_id + "-new"))).status_code == 404


async def test_session_metadata_header_is_read_as_utf8(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    text = json.dumps({"name": "José"}, ensure_ascii=False).encode()
    response = await http.post(
        items_url(session_id),
        json={"items": [{"n": 1}]},
        headers=[("Session-Metadata", text)],
    )
    assert response.status_code == 201, response.text
    assert (await http.get(session_path(session_id))).json()["metadata"] == {"name": "José"}
    found = await http.get("/v1/sessions", params={"metadata.name": "José", "prefix": session_id})
    assert [s["id"] for s in found.json()["sessions"]] == [session_id]


@pytest.mark.parametrize(
    "params",
    [{"prefix": "a\x00b"}, {"metadata.k": "v\x00"}, {"metadata.k\x00": "v"}],
)
async def test_nul_in_listing_filters_is_a_422(
    http: httpx2.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get("/v1/sessions", params=params)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "cursor_text", ['[1,"\\ud800"]', '[1,"a\\u0000"]', "[" * 1000 + "]" * 1000]
)
async def test_crafted_listing_cursors_are_a_422(
    http: httpx2.AsyncClient, cursor_text: str
) -> None:
    cursor = base64.urlsafe_b64encode(cursor_text.encode()).decode().rstrip("=")
    response = await http.get("/v1/sessions", params={"cursor": cursor})
    assert response.status_code == 422, response.text


async def test_put_parses_items_exactly_as_post(http: httpx2.AsyncClient, session_id: str) -> None:
    big = "7" * 5000
    body = f'{{"items":[{{"n":{big}}}]}}'.encode()
    assert (await http.post(items_url(session_id), content=body, headers=JSON)).status_code == 201
    replaced = await http.put(items_url(session_id), content=body, headers=JSON)
    assert replaced.status_code == 200, replaced.text
    page = await http.get(items_url(session_id))
    assert page.content.startswith(b'{"items":[{"n":' + big.encode() + b"}]")
    for bad, status in [
        (b'{"items":[{"n":1}],"items":[{"n":2}]}', 422),
        (b'\xef\xbb\xbf{"items":[]}', 400),
        (b'{"items":[{"n":1}],"from_seq":"1"}', 422),
        (b'{"items":[{"n":1}],"from_seq":' + b"9" * 40 + b"}", 422),
        (b'{"items":[],"other":1}', 422),
    ]:
        for method in ("POST", "PUT"):
            if method == "POST" and b"from_seq" in bad:
                continue
            answer = await http.request(method, items_url(session_id), content=bad, headers=JSON)
            assert answer.status_code == status, (method, bad, answer.text)
    # Nothing refused changed the session.
    assert (await http.get(items_url(session_id))).content == page.content


async def test_if_match_lists_and_weak_tags_compare_strongly(
    http: httpx2.AsyncClient, session_id: str
) -> None:
    # RFC 9110 13.1.1: a list matches when any member does; a weak tag never matches.
    created = await http.post(items_url(session_id), json={"items": [{"n": 1}]})
    etag = created.headers["etag"]
    for method, url, body in [
        ("PUT", items_url(session_id), {"items": [{"n": 2}]}),
        ("PATCH", session_path(session_id), {"metadata": {"k": 1}}),
        ("POST", items_url(session_id), {"items": [{"n": 3}]}),
    ]:
        weak = await http.request(method, url, json=body, headers={"If-Match": f"W/{etag}"})
        assert weak.status_code == 412, (method, weak.text)
        assert weak.headers["etag"] == etag
        stale = await http.request(method, url, json=body, headers={"If-Match": '"1", "x"'})
        assert stale.status_code == 412, (method, stale.text)
        listed = await http.request(
            method, url, json=body, headers={"If-Match": f'"1", W/{etag}, {etag}'}
        )
        assert listed.status_code in (200, 201), (method, listed.text)
        assert listed.headers["etag"] != etag
        etag = listed.headers["etag"]
    assert (await http.get(items_url(session_id))).json()["items"] == [{"n": 2}, {"n": 3}]
