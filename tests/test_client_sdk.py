"""RemoteSession behaves like the Agents SDK's own 0.24 sessions (agents/memory/*).

Settings as dicts, closed-session errors, ``wrapper=``, cancellation that waits for a
write's outcome, several event loops and threads, and surviving a server restart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.memory import SessionSettings
from agents.memory.session import _session_method_accepts_wrapper
from agents.testing import ScriptedModel, assistant_message
from session_memory_client import RemoteSession, SessionMemoryClient

from tests.utils.server import ServerProcess, free_port
from tests.utils.tcpproxy import TCPProxy

set_tracing_disabled(True)


def _item(n: int) -> Any:
    return {"role": "user", "content": f"item {n}"}


# -- settings, closing, wrapper= ------------------------------------------------------


def test_dict_settings_are_normalised() -> None:
    remote = RemoteSession("s", session_settings={"limit": 3})
    assert remote.session_settings == SessionSettings(limit=3)
    assert remote.session_settings.resolve({"limit": 5}).limit == 5
    assert RemoteSession("s").session_settings == SessionSettings()


def test_unknown_setting_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Unknown session settings: limt"):
        RemoteSession("s", session_settings={"limt": 3})


async def test_dict_limit_applies_to_reads(remote: RemoteSession, base_url: str) -> None:
    await remote.add_items([_item(n) for n in range(5)])
    async with RemoteSession(
        remote.session_id, base_url=base_url, session_settings={"limit": 2}
    ) as limited:
        assert await limited.get_items() == [_item(3), _item(4)]


async def test_every_method_raises_after_close(base_url: str) -> None:
    remote = RemoteSession("closing", base_url=base_url)
    await remote.get_items()
    await remote.close()
    calls = [
        remote.get_items(),
        remote.add_items([]),
        remote.add_items([_item(1)]),
        remote.pop_item(),
        remote.clear_session(),
        remote.read_items(),
        remote.get_record(),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"^RemoteSession is closed$"):
            await call


async def test_client_sessions_close_with_their_client(base_url: str) -> None:
    client = SessionMemoryClient(base_url=base_url)
    remote = client.session("shared-pools")
    await remote.get_items()
    await client.close()
    with pytest.raises(RuntimeError, match="RemoteSession is closed"):
        await remote.get_items()
    with pytest.raises(RuntimeError, match="SessionMemoryClient is closed"):
        await client.list_sessions()


async def test_wrapper_keyword_is_accepted_as_the_sdk_detects_it(remote: RemoteSession) -> None:
    for name in ("get_items", "add_items", "pop_item", "clear_session"):
        assert _session_method_accepts_wrapper(getattr(remote, name)), name
    await remote.add_items([_item(1)], wrapper=None)
    assert await remote.get_items(wrapper=None) == [_item(1)]
    assert await remote.pop_item(wrapper=None) == _item(1)
    await remote.clear_session(wrapper=None)


async def test_base_url_and_key_come_from_the_environment(
    base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_MEMORY_BASE_URL", base_url + "/")
    monkeypatch.setenv("SESSION_MEMORY_API_KEY", "")
    async with RemoteSession("from-env") as remote:
        assert remote.base_url == base_url
        await remote.get_items()


# -- several event loops and threads --------------------------------------------------


def test_run_sync_on_a_fresh_event_loop_each_turn(base_url: str, session_id: str) -> None:
    model = ScriptedModel([[assistant_message(f"answer {turn}")] for turn in range(3)])
    agent = Agent(name="assistant", model=model)
    remote = RemoteSession(session_id, base_url=base_url)
    for turn in range(3):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            result = Runner.run_sync(agent, f"question {turn}", session=remote)
            assert result.final_output == f"answer {turn}"
        finally:
            # What asyncio.run() does on the way out: the loop's pool closes with it.
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)
    assert model.last_call is not None
    assert len(model.last_call.input) == 5  # three questions and two earlier answers
    history = asyncio.run(remote.get_items())
    assert len(history) == 6


def test_add_items_from_ten_threads(base_url: str, session_id: str) -> None:
    remote = RemoteSession(session_id, base_url=base_url)
    start = threading.Barrier(10)
    outcomes: dict[int, BaseException | None] = {}

    def worker(n: int) -> None:
        start.wait()
        try:
            asyncio.run(remote.add_items([_item(n), _item(n + 100)]))
        except Exception as exc:
            outcomes[n] = exc
        else:
            outcomes[n] = None

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = asyncio.run(remote.get_items())
    for n, error in outcomes.items():
        assert (_item(n) in stored) == (error is None), (n, error)
    assert outcomes == dict.fromkeys(range(10))
    # Each call's two items landed next to each other.
    for first, second in zip(stored[::2], stored[1::2], strict=True):
        assert second["content"] == f"item {int(first['content'].split()[1]) + 100}"


# -- cancellation ---------------------------------------------------------------------


@pytest.fixture
def proxy(server: ServerProcess) -> Any:
    forwarder = TCPProxy("127.0.0.1", server.port).start()
    yield forwarder
    forwarder.close()


async def _cancel_in_flight(proxy: TCPProxy, call: Any) -> asyncio.Task[Any]:
    """Start ``call`` with its request held in the proxy, cancel it, then let it through."""
    proxy.hold()
    task = asyncio.ensure_future(call)
    await asyncio.to_thread(proxy.request_held.wait, 10)
    task.cancel()
    # The call must not end while its write is undecided. (Correct code never ends
    # here, whatever the wait; a call that gives up on cancellation ends at once.)
    done, _ = await asyncio.wait({task}, timeout=0.5)
    proxy.release()
    assert not done, "the call returned while its request was still on its way"
    return task


async def test_cancelled_add_items_lands_before_the_cancellation(
    proxy: TCPProxy, remote: RemoteSession
) -> None:
    async with RemoteSession(remote.session_id, base_url=f"http://127.0.0.1:{proxy.port}") as via:
        await via.get_items()  # a pooled connection through the proxy
        task = await _cancel_in_flight(proxy, via.add_items([_item(1)]))
        with pytest.raises(asyncio.CancelledError):
            await task
        # When the caller hears of the cancellation the write has its outcome: it is
        # stored now, so nothing can land afterwards.
        assert await remote.get_items() == [_item(1)]


async def test_cancelled_pop_puts_the_item_back(proxy: TCPProxy, remote: RemoteSession) -> None:
    await remote.add_items([_item(1), _item(2)])
    async with RemoteSession(remote.session_id, base_url=f"http://127.0.0.1:{proxy.port}") as via:
        await via.get_items()
        task = await _cancel_in_flight(proxy, via.pop_item())
        with pytest.raises(asyncio.CancelledError):
            await task
        # Nobody received the popped item, so it is back where it was.
        assert await remote.get_items() == [_item(1), _item(2)]


async def test_cancelled_clear_settles_first(proxy: TCPProxy, remote: RemoteSession) -> None:
    await remote.add_items([_item(1)])
    async with RemoteSession(remote.session_id, base_url=f"http://127.0.0.1:{proxy.port}") as via:
        await via.get_items()
        task = await _cancel_in_flight(proxy, via.clear_session())
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await remote.get_items() == []


# -- compaction hooks -----------------------------------------------------------------


async def test_compaction_hooks_replace_atomically_across_seq_gaps(remote: RemoteSession) -> None:
    await remote.add_items([_item(1), _item(2)])
    assert await type(remote)._atomic_replace_items(remote, [_item(3), _item(4)]) is True
    assert await remote.get_items() == [_item(3), _item(4)]
    # A suffix replace leaves a gap: seqs 3, then 5, 6, 7 (4 was replaced).
    await remote.replace_items([_item(9)], from_seq=4)
    await remote.add_items([_item(10), _item(11)])
    page = await remote.read_items()
    assert (page.first_seq, page.last_seq, len(page.items)) == (3, 7, 4)
    snapshot = await remote._get_compaction_snapshot(10)
    assert snapshot is not None
    assert snapshot.items == [_item(3), _item(9), _item(10), _item(11)]
    assert snapshot.complete
    # items[2:] are seqs 6 and 7 whatever the gap: the client asks for their number.
    assert await snapshot.replace_suffix(2, [_item(99)]) is True
    assert await remote.get_items() == [_item(3), _item(9), _item(99)]
    # The snapshot's revision has passed: a second replace changes nothing.
    assert await snapshot.replace_suffix(0, [_item(0)]) is False
    assert await remote.get_items() == [_item(3), _item(9), _item(99)]


class _CompactAPI:
    """Stands in for OpenAI's ``responses.compact`` (an outside service, like the model)."""

    def __init__(self) -> None:
        self.inputs: list[Any] = []
        self.responses = self

    async def compact(self, **request: Any) -> Any:
        self.inputs.append(request["input"])
        summary = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "summary"}],
        }
        return SimpleNamespace(output=[summary], usage=None)


async def test_compaction_session_replaces_the_history(remote: RemoteSession) -> None:
    from agents.memory import OpenAIResponsesCompactionSession

    await remote.add_items([_item(n) for n in range(4)])
    api = _CompactAPI()
    compacting = OpenAIResponsesCompactionSession(
        remote.session_id,
        remote,
        client=api,
        compaction_mode="input",  # type: ignore[arg-type]
    )
    await compacting.run_compaction({"force": True})
    assert api.inputs == [[_item(n) for n in range(4)]]
    assert await remote.get_items() == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "summary"}]}
    ]


# -- a restart ------------------------------------------------------------------------


async def test_add_items_survives_a_five_second_restart(tmp_path: Path) -> None:
    url, port = f"sqlite:///{tmp_path}/restart.db", free_port()
    server = ServerProcess(url, port=port, log_path=tmp_path / "server.log").start()
    restarted: list[ServerProcess] = []
    try:
        async with RemoteSession("deploy", base_url=server.base_url) as remote:  # defaults
            await remote.add_items([_item(0)])
            server.stop()

            def restart_later() -> None:
                time.sleep(5)  # the outage itself: what a deploy's restart looks like
                restarted.append(
                    ServerProcess(url, port=port, log_path=tmp_path / "server.log").start()
                )

            thread = threading.Thread(target=restart_later)
            thread.start()
            try:
                await remote.add_items([_item(1), _item(2)])
            finally:
                await asyncio.to_thread(thread.join)
            assert await remote.get_items() == [_item(0), _item(1), _item(2)]
    finally:
        server.kill()
        for process in restarted:
            process.kill()
