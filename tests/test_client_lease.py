"""RemoteSession.run_lease against a real server: acquire, renew in the background,
send the token with the block's writes, release at the end whatever happens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2
import pytest
from session_memory_client import ProblemError, RemoteSession, RunLease, SessionMemoryClient
from session_memory_client.protocol import IDEMPOTENCY_KEY, RUN_LEASE, ProblemType, session_path

from tests.utils.scripted import Answer, Seen, in_turn, scripted_server
from tests.utils.server import ServerProcess
from tests.utils.tcpproxy import TCPProxy


def _lease_url(base_url: str, session_id: str) -> str:
    return base_url + session_path(session_id) + "/lease"


async def _free(base_url: str, session_id: str) -> bool:
    """Whether the lease is free: an acquisition without a wait gets it (and releases it)."""
    async with httpx2.AsyncClient() as http:
        response = await http.post(_lease_url(base_url, session_id), json={"ttl": 5})
        if response.status_code != 200:
            return False
        token = {RUN_LEASE: str(response.json()["token"])}
        assert (await http.delete(_lease_url(base_url, session_id), headers=token)).is_success
        return True


async def test_the_block_s_writes_carry_the_token(base_url: str, session_id: str) -> None:
    async with (
        RemoteSession(session_id, base_url=base_url) as run,
        RemoteSession(session_id, base_url=base_url) as other,
    ):
        async with run.run_lease(ttl=30) as lease:
            assert isinstance(lease, RunLease)
            assert lease.token > 0
            await run.add_items([{"n": 1}, {"n": 2}])
            assert await run.pop_item() == {"n": 2}
            await run.replace_items([{"n": 3}], from_seq=2)
            with pytest.raises(ProblemError) as refused:
                await other.add_items([{"n": 99}])
            assert refused.value.type == ProblemType.SESSION_LEASED
            # Outside the block (another session object): no token.
            assert [item["n"] for item in await other.get_items()] == [1, 3]
            await run.clear_session()
        await other.add_items([{"n": 4}])  # released: anyone writes again
        assert await run.get_items() == [{"n": 4}]
    assert await _free(base_url, session_id)


async def test_it_renews_in_the_background(base_url: str, session_id: str) -> None:
    async with RemoteSession(session_id, base_url=base_url) as run:
        async with run.run_lease(ttl=1) as lease:
            first = lease.expires_at
            await asyncio.sleep(2.5)  # well past the TTL
            await run.add_items([{"n": 1}])
            assert not lease.lost
            assert lease.expires_at > first
        assert await _free(base_url, session_id)


async def _failing_run(run: RemoteSession) -> None:
    async with run.run_lease(ttl=30):
        await run.add_items([{"n": 1}])
        raise KeyError("the run failed")


async def test_it_is_released_when_the_block_raises(base_url: str, session_id: str) -> None:
    async with RemoteSession(session_id, base_url=base_url) as run:
        with pytest.raises(KeyError):
            await _failing_run(run)
        assert await _free(base_url, session_id)
        # And the session's writes carry no token any more.
        await run.add_items([{"n": 2}])


async def test_it_is_released_when_the_block_is_cancelled(base_url: str, session_id: str) -> None:
    held = asyncio.Event()

    async def long_run(run: RemoteSession) -> None:
        async with run.run_lease(ttl=30):
            held.set()
            await asyncio.sleep(60)

    async with RemoteSession(session_id, base_url=base_url) as run:
        task = asyncio.ensure_future(long_run(run))
        await held.wait()
        assert not await _free(base_url, session_id)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _free(base_url, session_id)


async def test_a_second_run_waits_or_is_rejected(base_url: str, session_id: str) -> None:
    """Two tasks share one RemoteSession, each in its own block: each sends its own token."""
    order: list[str] = []

    async def turn(run: RemoteSession, name: str, wait: float) -> None:
        async with run.run_lease(ttl=30, wait=wait):
            order.append(f"{name} in")
            await run.add_items([{"turn": name, "part": 1}])
            await asyncio.sleep(0.5)
            await run.add_items([{"turn": name, "part": 2}])
            order.append(f"{name} out")

    async with RemoteSession(session_id, base_url=base_url) as run:
        await asyncio.gather(turn(run, "a", 10), turn(run, "b", 10))
        assert order in (
            ["a in", "a out", "b in", "b out"],
            ["b in", "b out", "a in", "a out"],
        )
        turns = [item["turn"] for item in await run.get_items()]
        assert turns in (["a", "a", "b", "b"], ["b", "b", "a", "a"])

        first = asyncio.ensure_future(turn(run, "c", 0))
        await asyncio.sleep(0.2)
        with pytest.raises(ProblemError) as rejected:
            await turn(run, "d", 0)
        assert not first.done()  # refused while "c" still held the session: no wait
        assert rejected.value.status == 409
        assert rejected.value.type == ProblemType.SESSION_LEASED
        await first


async def _run_that_loses_its_lease(run: RemoteSession, base_url: str) -> None:
    async with run.run_lease(ttl=30) as lease:
        # Another caller releases it (as if it had expired and been taken).
        async with httpx2.AsyncClient() as http:
            url = _lease_url(base_url, run.session_id)
            released = await http.delete(url, headers={RUN_LEASE: str(lease.token)})
            assert released.status_code == 204
        await run.add_items([{"n": 1}])


async def test_a_lost_lease_refuses_the_block_s_writes(base_url: str, session_id: str) -> None:
    async with RemoteSession(session_id, base_url=base_url) as run:
        with pytest.raises(ProblemError) as lost:
            await _run_that_loses_its_lease(run, base_url)
        assert lost.value.type == ProblemType.LEASE_LOST
        assert await run.get_items() == []


async def test_bad_arguments_raise_before_any_request(base_url: str, session_id: str) -> None:
    async with RemoteSession(session_id, base_url=base_url) as run:
        with pytest.raises(ValueError, match="ttl"):
            run.run_lease(ttl=0)
        with pytest.raises(ValueError, match="wait"):
            run.run_lease(wait=-1)
        with pytest.raises(ValueError, match="unleased_writes"):
            run.run_lease(unleased_writes="sometimes")
        async with run.run_lease():
            with pytest.raises(RuntimeError, match="already holds"):
                async with run.run_lease():
                    pass


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[TCPProxy]:
    forwarder = TCPProxy("127.0.0.1", server.port).start()
    yield forwarder
    forwarder.close()


async def test_an_acquisition_whose_answer_was_lost_gets_its_lease(
    proxy: TCPProxy, base_url: str, session_id: str
) -> None:
    via = f"http://127.0.0.1:{proxy.port}"
    async with RemoteSession(session_id, base_url=via, backoff=0.01) as run:
        # The server grants the lease; its answer never reaches the client, whose
        # retry of the acquisition then meets the lease held.
        proxy.lose_answers(1)
        async with run.run_lease(ttl=30, wait=0) as lease:
            assert proxy.answers_lost == 1
            assert not await _free(base_url, session_id)
            await run.add_items([{"n": 1}])  # the token is the lease's
        assert await _free(base_url, session_id)  # and the block released it
        assert await run.get_items() == [{"n": 1}]
        assert lease.token > 0


async def test_one_key_for_every_request_of_an_acquisition() -> None:
    leased = Answer(
        409,
        {"type": ProblemType.SESSION_LEASED, "title": "x", "status": 409, "detail": "x"},
    )
    granted = Answer(200, {"token": 7, "expires_at": "2030-01-01T00:00:00Z", "ttl": 30})
    released = Answer(204, None)
    seen: list[Seen] = []
    script = [Answer.problem(503), leased, leased, granted, released]
    script += [Answer.problem(502), granted, released]
    async with (
        scripted_server(in_turn(script), seen) as url,
        RemoteSession("s", base_url=url, backoff=0.001, timeout=0.5) as run,
    ):
        # A wait longer than one request may ask: several requests, one acquisition.
        async with run.run_lease(ttl=30, wait=60):
            pass
        async with run.run_lease(ttl=30, wait=0):
            pass
    posts = [request.headers.get(IDEMPOTENCY_KEY.lower()) for request in seen]
    assert [request.method for request in seen] == ["POST"] * 4 + ["DELETE"] + ["POST"] * 2 + [
        "DELETE"
    ]
    first, second = posts[:4], posts[5:7]
    assert None not in first + second
    assert len(set(first)) == 1
    assert len(set(second)) == 1
    assert first[0] != second[0]


async def test_an_acquisition_cancelled_while_waiting_leaves_nothing_held(
    base_url: str, session_id: str
) -> None:
    """Cancelled mid-wait: the service stops waiting for it, and whatever the request
    was given is released; the session is free as soon as its holder releases it."""
    async with httpx2.AsyncClient() as http:
        held = await http.post(_lease_url(base_url, session_id), json={"ttl": 60})
        assert held.status_code == 200, held.text
        async with RemoteSession(session_id, base_url=base_url) as run:
            entered = asyncio.Event()

            async def second_run() -> None:
                async with run.run_lease(ttl=60, wait=20):
                    entered.set()

            waiting = asyncio.ensure_future(second_run())
            await asyncio.sleep(0.5)  # its acquisition is waiting on the service
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not entered.is_set()
        token = {RUN_LEASE: str(held.json()["token"])}
        assert (await http.delete(_lease_url(base_url, session_id), headers=token)).is_success
    await asyncio.sleep(0.6)  # past the service's longest pause between tries
    assert await _free(base_url, session_id)


async def test_an_acquisition_cancelled_after_it_was_granted_releases_the_lease(
    proxy: TCPProxy, base_url: str, session_id: str
) -> None:
    """The service granted the lease, but the answer is stuck on the way when the
    caller is cancelled: the client asks again under the same key and releases it."""
    via = f"http://127.0.0.1:{proxy.port}"
    async with RemoteSession(session_id, base_url=via) as run:
        proxy.lose_answers(1, stall=True)

        async def acquire() -> None:
            async with run.run_lease(ttl=60, wait=0):
                pass

        task = asyncio.ensure_future(acquire())
        while proxy.answers_lost == 0:  # noqa: ASYNC110 (a count kept on another thread)
            await asyncio.sleep(0.01)
        assert not await _free(base_url, session_id)  # granted; the client does not know
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await _free(base_url, session_id)


async def test_follow_tells_of_the_run_holding_the_session(base_url: str, session_id: str) -> None:
    async with (
        RemoteSession(session_id, base_url=base_url) as run,
        RemoteSession(session_id, base_url=base_url) as watcher,
    ):
        events = watcher.follow(after=0)
        try:
            async with run.run_lease(ttl=30) as lease:
                held = await asyncio.wait_for(anext(events), 10)
                assert (held.kind, held.token, held.ttl) == ("lease", lease.token, 30)
                assert held.expires_at is not None
                await run.add_items([{"n": 1}])
                appended = await asyncio.wait_for(anext(events), 10)
                assert (appended.kind, appended.item) == ("append", {"n": 1})
            ended = await asyncio.wait_for(anext(events), 10)
            assert (ended.kind, ended.token, ended.expires_at) == ("lease-end", lease.token, None)
        finally:
            await events.aclose()  # type: ignore[attr-defined]


async def test_an_operator_sees_and_frees_the_lease(base_url: str, session_id: str) -> None:
    async with (
        SessionMemoryClient(base_url=base_url) as operator,
        RemoteSession(session_id, base_url=base_url) as run,
    ):
        assert await operator.get_lease(session_id) is None
        async with run.run_lease(ttl=60) as lease:
            seen = await operator.get_lease(session_id)
            assert seen == RunLease(session_id, lease.token, lease.expires_at, lease.ttl)
            await operator.release_lease(session_id, lease.token)
            assert await operator.get_lease(session_id) is None
            # Freed: the run's writes are refused, and others' go through.
            with pytest.raises(ProblemError) as refused:
                await run.add_items([{"n": 1}])
            assert refused.value.type == ProblemType.LEASE_LOST
            with pytest.raises(ProblemError) as again:
                await operator.release_lease(session_id, lease.token)
            assert (again.value.status, again.value.type) == (409, ProblemType.LEASE_LOST)
        assert await _free(base_url, session_id)


async def test_get_lease_checks_the_id_before_any_request(base_url: str) -> None:
    async with SessionMemoryClient(base_url=base_url) as operator:
        with pytest.raises(ValueError, match="refused character"):
            await operator.get_lease("a/b")
        with pytest.raises(ValueError, match="must not be empty"):
            await operator.release_lease("", 1)
