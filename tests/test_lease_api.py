"""Run leases over HTTP: the lease routes, Run-Lease on every write, their problems, the
wait, and the lease events of a follow stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime

import httpx2
import pytest
from session_memory import Settings, create_app
from session_memory.services.events import SharedReads, event_stream
from session_memory.services.hub import Hub
from session_memory.storage import store_from_url
from session_memory_client.protocol import IDEMPOTENCY_KEY, RUN_LEASE, ProblemType, session_path

S = "a-run"
LEASE = session_path(S) + "/lease"
ITEMS = session_path(S) + "/items"
MERGE_PATCH = {"content-type": "application/merge-patch+json"}
JSON = {"content-type": "application/json"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(Settings(database_url=database_url, max_lease_wait_seconds=5))
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


def token_of(response: httpx2.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {RUN_LEASE: str(response.json()["token"])}


def problem(response: httpx2.Response, status: int, kind: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    assert body["type"] == kind, body
    return body


async def test_acquire_answers_the_token_its_expiry_and_ttl(api: httpx2.AsyncClient) -> None:
    response = await api.post(LEASE, json={"ttl": 12})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_at", "ttl"}
    assert isinstance(body["token"], int)
    assert body["token"] > 0
    assert body["ttl"] == 12
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 5 < expires - time.time() <= 13
    # Held: a second acquisition without a wait is refused at once, with Retry-After.
    refused = await api.post(LEASE, json={})
    problem(refused, 409, ProblemType.SESSION_LEASED)
    assert 1 <= int(refused.headers["retry-after"]) <= 12


async def test_writes_carry_the_token(api: httpx2.AsyncClient) -> None:
    lease = token_of(await api.post(LEASE, json={"ttl": 30}))
    stale = {RUN_LEASE: str(int(lease[RUN_LEASE]) - 1)}
    one = {"items": [{"n": 1}]}
    assert (await api.post(ITEMS, json=one, headers=lease)).status_code == 201
    problem(await api.post(ITEMS, json=one), 409, ProblemType.SESSION_LEASED)
    problem(await api.post(ITEMS, json=one, headers=stale), 409, ProblemType.LEASE_LOST)
    for method, url, kwargs in [
        ("DELETE", ITEMS + "/last", {}),
        ("PUT", ITEMS, {"json": {"items": [{"n": 2}], "from_seq": 5}}),
        ("POST", session_path(S) + "/fork", {"json": {"session_id": "copy"}}),
        ("PATCH", session_path(S), {"content": b'{"metadata":{"k":"v"}}', "headers": MERGE_PATCH}),
        ("DELETE", session_path(S), {}),
    ]:
        headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        refused = await api.request(method, url, headers={**headers, **stale}, **kwargs)
        problem(refused, 409, ProblemType.LEASE_LOST)
        refused = await api.request(method, url, headers=headers, **kwargs)
        problem(refused, 409, ProblemType.SESSION_LEASED)
    items = (await api.get(ITEMS)).json()["items"]
    assert items == [{"n": 1}]
    for method, url, kwargs in [
        ("PUT", ITEMS, {"json": {"items": [{"n": 2}], "from_seq": 5}}),
        ("POST", session_path(S) + "/fork", {"json": {"session_id": "copy"}}),
        ("PATCH", session_path(S), {"content": b'{"metadata":{"k":"v"}}', "headers": MERGE_PATCH}),
        ("DELETE", ITEMS + "/last", {}),
        ("DELETE", session_path(S), {}),
    ]:
        headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
        done = await api.request(method, url, headers={**headers, **lease}, **kwargs)
        assert done.status_code < 300, (method, url, done.text)


async def test_unleased_writes_allowed(api: httpx2.AsyncClient) -> None:
    token_of(await api.post(LEASE, json={"unleased_writes": "allow"}))
    assert (await api.post(ITEMS, json={"items": [{"n": 1}]})).status_code == 201


async def test_renew_and_release(api: httpx2.AsyncClient) -> None:
    lease = token_of(await api.post(LEASE, json={"ttl": 5}))
    renewed = await api.put(LEASE, json={"ttl": 60}, headers=lease)
    assert renewed.status_code == 200
    assert renewed.json()["ttl"] == 60
    assert str(renewed.json()["token"]) == lease[RUN_LEASE]
    assert (await api.put(LEASE, json={}, headers=lease)).json()["ttl"] == 60
    assert (await api.delete(LEASE, headers=lease)).status_code == 204
    problem(await api.delete(LEASE, headers=lease), 409, ProblemType.LEASE_LOST)
    problem(await api.put(LEASE, json={}, headers=lease), 409, ProblemType.LEASE_LOST)
    problem(
        await api.post(ITEMS, json={"items": [{"n": 1}]}, headers=lease),
        409,
        ProblemType.LEASE_LOST,
    )
    # Released: anyone may write, and the next lease has a higher token.
    assert (await api.post(ITEMS, json={"items": [{"n": 1}]})).status_code == 201
    again = token_of(await api.post(LEASE, json={}))
    assert int(again[RUN_LEASE]) > int(lease[RUN_LEASE])


async def test_a_waiting_acquisition_gets_the_lease_when_released(
    api: httpx2.AsyncClient,
) -> None:
    first = token_of(await api.post(LEASE, json={"ttl": 30}))
    waiting = asyncio.ensure_future(api.post(LEASE, json={"ttl": 30, "wait": 5}))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    assert (await api.delete(LEASE, headers=first)).status_code == 204
    # The first lease had 25 s to go past the wait: a 200 here is the release's doing.
    second = token_of(await waiting)
    assert int(second[RUN_LEASE]) > int(first[RUN_LEASE])


async def test_a_waiting_acquisition_gets_the_lease_when_it_expires(
    api: httpx2.AsyncClient,
) -> None:
    first = token_of(await api.post(LEASE, json={"ttl": 0.5}))
    second = token_of(await api.post(LEASE, json={"wait": 3}))
    assert int(second[RUN_LEASE]) > int(first[RUN_LEASE])
    # And one that waits less than the lease lasts is refused at the end of its wait.
    started = time.monotonic()
    problem(await api.post(LEASE, json={"wait": 0.3}), 409, ProblemType.SESSION_LEASED)
    assert 0.25 < time.monotonic() - started < 10  # it waited, and then it ended


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"ttl": 0}, {}),
        ({"ttl": -1}, {}),
        ({"ttl": "30"}, {}),
        ({"ttl": True}, {}),
        ({"wait": -1}, {}),
        ({"unleased_writes": "maybe"}, {}),
        ({"other": 1}, {}),
        ([], {}),
        ({}, {IDEMPOTENCY_KEY: "two words"}),
        ({}, {IDEMPOTENCY_KEY: "k" * 256}),
        ({}, {IDEMPOTENCY_KEY: ""}),
    ],
)
async def test_a_bad_acquisition_is_a_422(
    api: httpx2.AsyncClient, body: object, headers: dict[str, str]
) -> None:
    problem(await api.post(LEASE, json=body, headers=headers), 422, ProblemType.INVALID_INPUT)
    assert (await api.post(LEASE, json={})).status_code == 200


async def test_a_retried_acquisition_gets_its_lease_back(api: httpx2.AsyncClient) -> None:
    key = {IDEMPOTENCY_KEY: "acquisition-1"}
    first = await api.post(LEASE, json={"ttl": 30, "wait": 3}, headers=key)
    lease = token_of(first)
    # The same acquisition again (its answer lost): the lease held, at once, not a
    # wait ending in a 409.
    again = await api.post(LEASE, json={"ttl": 30, "wait": 3}, headers=key)
    assert token_of(again) == lease
    assert again.json()["ttl"] == 30
    assert again.json()["expires_at"] >= first.json()["expires_at"]
    other = await api.post(LEASE, json={}, headers={IDEMPOTENCY_KEY: "acquisition-2"})
    problem(other, 409, ProblemType.SESSION_LEASED)
    assert (await api.post(ITEMS, json={"items": [{"n": 1}]}, headers=lease)).status_code == 201
    assert (await api.delete(LEASE, headers=lease)).status_code == 204
    # Released, the key acquires a new lease.
    anew = token_of(await api.post(LEASE, json={}, headers=key))
    assert int(anew[RUN_LEASE]) > int(lease[RUN_LEASE])


async def test_a_ttl_or_wait_past_the_server_s_bound_is_cut_to_it(
    api: httpx2.AsyncClient,
) -> None:
    # The fixture's server waits at most 5 s; its longest TTL is the default, 3600 s.
    granted = await api.post(LEASE, json={"ttl": 1e300, "wait": 1e300})
    assert granted.status_code == 200
    assert granted.json()["ttl"] == 3600
    started = time.monotonic()
    problem(await api.post(LEASE, json={"wait": 1e300}), 409, ProblemType.SESSION_LEASED)
    assert 4.5 < time.monotonic() - started < 30  # the bound's wait, not 1e300 s
    renewed = await api.put(LEASE, json={"ttl": 7200}, headers=token_of(granted))
    assert renewed.json()["ttl"] == 3600
    # An integer too big for a float is a number all the same; a null TTL is none.
    huge = b'{"ttl": 1' + b"0" * 400 + b"}"
    again = await api.put(LEASE, content=huge, headers={**token_of(granted), **JSON})
    assert again.json()["ttl"] == 3600
    kept = await api.put(LEASE, json={"ttl": None}, headers=token_of(granted))
    assert kept.json()["ttl"] == 3600


async def test_renew_and_release_need_a_token(api: httpx2.AsyncClient) -> None:
    problem(await api.delete(LEASE), 422, ProblemType.INVALID_INPUT)
    problem(await api.put(LEASE, json={}), 422, ProblemType.INVALID_INPUT)
    problem(await api.delete(LEASE, headers={RUN_LEASE: "x1"}), 422, ProblemType.INVALID_INPUT)
    bad = await api.post(ITEMS, json={"items": []}, headers={RUN_LEASE: "-5"})
    problem(bad, 422, ProblemType.INVALID_INPUT)


async def _next_event(stream: AsyncIterator[bytes]) -> tuple[str, dict[str, object]]:
    while True:
        chunk = await asyncio.wait_for(anext(stream), 10)
        if chunk.startswith(b":"):
            continue
        lines = dict(line.split(": ", 1) for line in chunk.decode().strip().split("\n"))
        return lines["event"], json.loads(lines["data"])


async def test_a_follow_stream_tells_of_leases(tmp_path: object) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/events.db")
    await store.open()
    hub = Hub(max_streams=10, max_per_tenant=10, local=True)
    lease = await store.leases.acquire("t", S, ttl=30, refuse_unleased=True)
    stream = event_stream(SharedReads(store, None), hub, "t", S, after=0, heartbeat=30)
    try:
        assert await anext(stream) == b": following\n\n"
        # A run holds the lease as the stream starts: it says so at once.
        kind, data = await _next_event(stream)
        assert (kind, data["token"]) == ("lease", lease.token)
        await store.leases.release("t", S, lease.token)
        hub.publish("lease-end", "t", S, lease.token)
        assert await _next_event(stream) == ("lease-end", {"token": lease.token})
        short = await store.leases.acquire("t", S, ttl=0.5, refuse_unleased=True)
        hub.publish("lease", "t", S, short.token)
        kind, data = await _next_event(stream)
        assert (kind, data["token"], data["ttl"]) == ("lease", short.token, 0.5)
        # Not renewed: the stream notices the expiry by itself.
        assert await _next_event(stream) == ("lease-end", {"token": short.token})
    finally:
        await stream.aclose()
        await store.close()


async def test_get_shows_the_lease_held(api: httpx2.AsyncClient) -> None:
    problem(await api.get(LEASE), 404, ProblemType.LEASE_NOT_HELD)
    acquired = await api.post(LEASE, json={"ttl": 30})
    shown = await api.get(LEASE)
    assert shown.status_code == 200, shown.text
    # The same body the acquisition answered: token, expiry and TTL.
    assert shown.json() == acquired.json()
    renewed = await api.put(LEASE, json={"ttl": 60}, headers=token_of(acquired))
    assert (await api.get(LEASE)).json() == renewed.json()
    # Its token frees it; then none is held.
    assert (await api.delete(LEASE, headers=token_of(shown))).status_code == 204
    problem(await api.get(LEASE), 404, ProblemType.LEASE_NOT_HELD)
    # Another session's lease is not this one's.
    token_of(await api.post(session_path("other") + "/lease", json={}))
    problem(await api.get(LEASE), 404, ProblemType.LEASE_NOT_HELD)


async def test_get_says_an_expired_lease_is_not_held(api: httpx2.AsyncClient) -> None:
    token = token_of(await api.post(LEASE, json={"ttl": 0.2}))
    for _ in range(200):
        shown = await api.get(LEASE)
        if shown.status_code == 404:
            break
        assert str(shown.json()["token"]) == token[RUN_LEASE]
        await asyncio.sleep(0.05)
    problem(shown, 404, ProblemType.LEASE_NOT_HELD)
    # Gone for good: its token frees nothing.
    problem(await api.delete(LEASE, headers=token), 409, ProblemType.LEASE_LOST)


async def test_another_tenant_s_lease_is_invisible(database_url: str) -> None:
    keys = "alpha:lease-key-alpha-0123456789,beta:lease-key-beta-0123456789"
    app = create_app(Settings(database_url=database_url, api_keys=keys))
    alpha = {"Authorization": "Bearer lease-key-alpha-0123456789"}
    beta = {"Authorization": "Bearer lease-key-beta-0123456789"}
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t") as http,
    ):
        held = await http.post(LEASE, json={}, headers=alpha)
        assert held.status_code == 200, held.text
        assert (await http.get(LEASE, headers=alpha)).json() == held.json()
        problem(await http.get(LEASE, headers=beta), 404, ProblemType.LEASE_NOT_HELD)
        problem(await http.get(LEASE), 401, ProblemType.UNAUTHORIZED)
        # Nor can the other tenant free it with its token.
        refused = await http.delete(LEASE, headers={**beta, **token_of(held)})
        problem(refused, 409, ProblemType.LEASE_LOST)
        assert (await http.get(LEASE, headers=alpha)).status_code == 200


async def test_head_answers_as_get_does(http: httpx2.AsyncClient, session_id: str) -> None:
    lease = session_path(session_id) + "/lease"
    missing = await http.head(lease)
    assert missing.status_code == 404
    assert missing.content == b""
    token_of(await http.post(lease, json={"ttl": 30}))
    get, head = await http.get(lease), await http.head(lease)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
