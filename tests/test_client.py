"""RemoteSession against a real server process: the Agents SDK Session contract."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
import session_memory_client
from agents.memory import Session, SessionSettings
from session_memory_client import (
    ConnectError,
    ProblemError,
    RemoteSession,
    RequestTimeout,
    TransportError,
)

from tests.utils.scripted import Answer, Seen, scripted_server
from tests.utils.server import free_port


async def test_remote_session_is_an_sdk_session(remote: RemoteSession) -> None:
    assert isinstance(remote, Session)
    assert remote.session_settings == SessionSettings()


async def test_items_come_back_in_order(remote: RemoteSession) -> None:
    await remote.add_items([{"role": "user", "content": "one"}])
    await remote.add_items(
        [{"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]
    )
    assert [item["content"] for item in await remote.get_items()] == ["one", "two", "three"]  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("limit", "expected"), [(0, []), (1, [4]), (3, [2, 3, 4]), (99, [0, 1, 2, 3, 4])]
)
async def test_limit_gives_latest_items(
    remote: RemoteSession, limit: int, expected: list[int]
) -> None:
    await remote.add_items([{"n": n} for n in range(5)])  # type: ignore[misc]
    assert [item["n"] for item in await remote.get_items(limit=limit)] == expected  # type: ignore[typeddict-item]


async def test_session_settings_limit_applies_when_limit_is_none(
    base_url: str, session_id: str
) -> None:
    async with RemoteSession(
        session_id, base_url=base_url, session_settings=SessionSettings(limit=2)
    ) as remote:
        await remote.add_items([{"n": n} for n in range(5)])  # type: ignore[misc]
        assert [item["n"] for item in await remote.get_items()] == [3, 4]  # type: ignore[typeddict-item]
        assert len(await remote.get_items(limit=4)) == 4


async def test_negative_limit_gives_every_item(remote: RemoteSession) -> None:
    # As SQLiteSession: SQLite reads a negative LIMIT as no limit.
    await remote.add_items([{"n": n} for n in range(3)])  # type: ignore[misc]
    assert [item["n"] for item in await remote.get_items(limit=-1)] == [0, 1, 2]  # type: ignore[typeddict-item]


async def test_pop_and_pop_on_empty(remote: RemoteSession) -> None:
    assert await remote.pop_item() is None
    await remote.add_items([{"n": 1}, {"n": 2}])  # type: ignore[list-item]
    assert await remote.pop_item() == {"n": 2}
    assert await remote.get_items() == [{"n": 1}]
    assert await remote.pop_item() == {"n": 1}
    assert await remote.pop_item() is None


async def test_clear_session(remote: RemoteSession) -> None:
    await remote.add_items([{"n": 1}])  # type: ignore[list-item]
    await remote.clear_session()
    assert await remote.get_items() == []
    await remote.clear_session()


async def test_add_empty_list_is_a_noop(remote: RemoteSession) -> None:
    await remote.add_items([])
    assert await remote.get_items() == []


async def test_sessions_are_isolated(base_url: str, session_id: str) -> None:
    async with aiohttp.ClientSession() as shared:
        a = RemoteSession(session_id + "-a", base_url=base_url, http_client=shared)
        b = RemoteSession(session_id + "-b", base_url=base_url, http_client=shared)
        await a.add_items([{"who": "a"}])  # type: ignore[list-item]
        await b.add_items([{"who": "b"}])  # type: ignore[list-item]
        await b.clear_session()
        assert await a.get_items() == [{"who": "a"}]
        assert await b.get_items() == []
        await a.close()  # a borrowed client stays open for its other users
        with pytest.raises(RuntimeError, match="RemoteSession is closed"):
            await a.get_items()
        assert await b.get_items() == []
        async with shared.get(base_url + "/healthz") as health:
            assert health.status == 200  # the borrowed client still works


ODD_IDS = [
    "with space",
    " leading and trailing ",
    "100%",
    "%2F",
    "a?b=c",
    "#fragment",
    "c:\\dir",
    "urn:x:y",
    ".",
    "..",
    "...",
    "%2E%2E",
    "Ünïcödé 会话 جلسة 🙂",
    "+&=;,$@!*'()[]{}|^`~\"<>",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467 nbsp\u00a0",
    "x" * 256,
]


async def test_odd_session_ids_round_trip_and_stay_isolated(base_url: str) -> None:
    async with aiohttp.ClientSession() as shared:
        sessions = [RemoteSession(sid, base_url=base_url, http_client=shared) for sid in ODD_IDS]
        for remote in sessions:
            await remote.clear_session()
        for remote in sessions:
            await remote.add_items([{"id": remote.session_id}])  # type: ignore[list-item]
        for remote in sessions:
            assert await remote.get_items() == [{"id": remote.session_id}]
        async with shared.get(base_url + "/v1/sessions", params={"limit": 1000}) as listed:
            ids = {record["id"] for record in (await listed.json())["sessions"]}
        assert set(ODD_IDS) <= ids


@pytest.mark.parametrize(
    "bad", ["", "a/b", "/", "x" * 257, "nul\x00", "new\nline", "\u2028", "c1\x85"]
)
def test_bad_session_id_raises_value_error_before_any_request(bad: str) -> None:
    with pytest.raises(ValueError, match="session id"):
        RemoteSession(bad, base_url=f"http://127.0.0.1:{free_port()}")


SDK_ITEMS: list[dict[str, object]] = [
    {"role": "user", "content": "Hello 🙂 你好 שלום مرحبا"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}],
    },
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "lookup",
        "arguments": '{"q": "weather"}',
        "_agents_tool_description": "Look things up",
        "_agents_tool_title": "Lookup",
        "created_by": "agent",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    {"z": 1, "a": 2, "m": {"y": 1, "b": 2}},
    {
        "big": 12345678901234567890123456789,
        "neg": -(2**70),
        "f": 0.1,
        "e": 1e-300,
        "g": 1.7976931348623157e308,
    },
    {"empty": {}, "list": [], "null": None, "t": True, "f": False, "s": ""},
    {"escapes": 'quote " backslash \\ tab \t newline \n nul \u0000 \U0001f600'},
    {"lone surrogate": "\ud800 survives as an escape"},
]


async def test_items_round_trip_equal_with_key_order(remote: RemoteSession) -> None:
    sent = copy.deepcopy(SDK_ITEMS)
    await remote.add_items(sent)  # type: ignore[arg-type]
    got = await remote.get_items()
    assert got == SDK_ITEMS
    assert [list(item) for item in got] == [list(item) for item in SDK_ITEMS]
    assert list(got[4]["m"]) == ["y", "b"]  # type: ignore[typeddict-item]
    assert sent == SDK_ITEMS  # the client does not touch what it was given


async def test_deep_nesting_round_trips(remote: RemoteSession) -> None:
    value: object = "leaf"
    for depth in range(300):
        value = {"d": depth, "v": [value]}
    await remote.add_items([{"nested": value}])  # type: ignore[list-item]
    assert await remote.get_items() == [{"nested": value}]


async def test_one_megabyte_item_round_trips(remote: RemoteSession) -> None:
    big = {"role": "user", "content": "é" * (512 * 1024)}  # 1 MiB of UTF-8
    await remote.add_items([big, {"after": True}])  # type: ignore[list-item]
    assert await remote.get_items() == [big, {"after": True}]
    assert await remote.pop_item() == {"after": True}
    assert await remote.pop_item() == big


async def test_server_error_raises_problem_error(remote: RemoteSession) -> None:
    with pytest.raises(ProblemError) as caught:
        await remote.add_items([{"ok": 1}, "not an object"])  # type: ignore[list-item]
    assert caught.value.status == 422
    assert "items[1]" in caught.value.detail
    assert caught.value.problem["type"] == caught.value.type
    assert await remote.get_items() == []


async def test_nan_is_refused_before_sending(remote: RemoteSession) -> None:
    with pytest.raises(ValueError, match="JSON"):
        await remote.add_items([{"x": float("nan")}])  # type: ignore[list-item]


async def test_refused_connection_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RemoteSession("s", base_url=url, retries=0) as remote:
        with pytest.raises(ConnectError, match=url) as caught:
            await remote.get_items()
    assert caught.value.url.startswith(url)


@asynccontextmanager
async def raw_server(
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server on loopback that misbehaves as ``serve`` says; yields its URL."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def test_no_answer_within_the_timeout_is_request_timeout() -> None:
    release = asyncio.Event()
    connections: list[int] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        await release.wait()  # holds the request until the test is over
        writer.close()

    async with raw_server(never_answer) as url:
        try:
            async with RemoteSession("s", base_url=url, timeout=0.2, retries=1) as remote:
                with pytest.raises(RequestTimeout, match=r"did not answer within 0\.2s") as caught:
                    await remote.get_items()
        finally:
            release.set()
    assert isinstance(caught.value, TransportError)
    # get_items() always sends a limit (the service's fast path) and what it knows.
    assert caught.value.url == url + "/v1/sessions/s/items?limit=10000&known="
    assert len(connections) == 2  # a timeout is transient: retried once, then raised


async def test_a_dropped_connection_is_a_transport_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # no answer at all

    async with (
        raw_server(hang_up) as url,
        RemoteSession("s", base_url=url, retries=0) as remote,
    ):
        with pytest.raises(TransportError, match=url) as caught:
            await remote.add_items([{"n": 1}])  # type: ignore[list-item]
    assert type(caught.value) is TransportError  # neither ConnectError nor RequestTimeout


async def test_an_error_without_problem_json_keeps_the_body_as_detail() -> None:
    async def plain_502(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 11\r\nConnection: close\r\n\r\nupstream \xff!"
        )
        await writer.drain()
        writer.close()

    async with (
        raw_server(plain_502) as url,
        RemoteSession("s", base_url=url, retries=0) as remote,
    ):
        with pytest.raises(ProblemError) as caught:
            await remote.get_items()
    assert (caught.value.status, caught.value.title) == (502, "Bad Gateway")
    assert caught.value.detail == "upstream \ufffd!"
    assert caught.value.problem == {}


async def test_api_key_is_sent_as_bearer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Seen] = []
    empty = Answer(200, {"items": []})
    # Both paths: the session's own pool (the key a default header) and a borrowed
    # client (the key on each request); reads and writes alike.
    async with scripted_server(lambda _request: empty, seen) as url:
        monkeypatch.setenv("SESSION_MEMORY_BASE_URL", url)
        async with RemoteSession("s", api_key="k1") as own:
            await own.get_items()
            await own.clear_session()
        async with aiohttp.ClientSession() as http:
            await RemoteSession("s", api_key="k1", http_client=http).get_items()
            monkeypatch.setenv("SESSION_MEMORY_API_KEY", "k2")
            await RemoteSession("s", http_client=http).clear_session()
            async with RemoteSession("s") as own:
                await own.get_items()
            monkeypatch.delenv("SESSION_MEMORY_API_KEY")
            await RemoteSession("s", http_client=http).get_items()
            async with RemoteSession("s") as own:
                await own.get_items()
    assert [request.headers.get("authorization") for request in seen] == [
        *["Bearer k1"] * 3,
        *["Bearer k2"] * 2,
        None,
        None,
    ]


def test_public_surface_is_complete() -> None:
    public = {name for name in vars(session_memory_client) if not name.startswith("_")}
    modules = {"annotations"}
    assert set(session_memory_client.__all__) == public - modules
