"""RemoteSession where the Agents SDK's stores define the behaviour (issue 21).

Compaction hooks that serve only RemoteSession itself, ``prune_prefix``, a pop that
checks the newest item before removing it, a negative ``limit``, and a ``close()``
that closes at once without an ``await``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from agents.extensions.memory import EncryptedSession
from agents.memory import OpenAIResponsesCompactionSession, SQLiteSession
from cryptography.fernet import Fernet, InvalidToken
from session_memory_client import RemoteSession, SessionMemoryClient

from tests.utils.scripted import Answer, Seen, scripted_server


def _item(n: int) -> Any:
    return {"role": "user", "content": f"item {n}"}


def _old(n: int) -> Any:
    return {"role": "user", "content": f"old {n}", "expired": True}


def _is_expired(item: Any) -> bool:
    return bool(item.get("expired"))


class _Audited(RemoteSession):
    """An application's subclass that logs every write it makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def add_items(self, items: list[Any], *, wrapper: Any = None) -> None:
        self.calls.append("add_items")
        await super().add_items(items, wrapper=wrapper)

    async def clear_session(self, *, wrapper: Any = None) -> None:
        self.calls.append("clear_session")
        await super().clear_session(wrapper=wrapper)


_SUMMARY: Any = {
    "type": "message",
    "role": "user",
    "content": [{"type": "input_text", "text": "summary"}],
}


class _CompactAPI:
    """Stands in for OpenAI's ``responses.compact``: the history becomes one summary."""

    def __init__(self) -> None:
        self.responses = self

    async def compact(self, **request: Any) -> Any:
        return SimpleNamespace(output=[_SUMMARY], usage=None)


# -- 1. the compaction hooks serve RemoteSession itself only --------------------------


async def test_hooks_decline_for_a_subclass(base_url: str, session_id: str) -> None:
    async with _Audited(session_id, base_url=base_url) as audited:
        await audited.add_items([_item(1)])
        assert await type(audited)._atomic_replace_items(audited, [_item(2)]) is False
        assert await audited._get_compaction_snapshot(5) is None
        assert await audited._get_compaction_snapshot(5, prune_prefix=_is_expired) is None
        assert await audited.get_items() == [_item(1)]  # nothing was replaced


async def test_compaction_goes_through_a_subclass_s_overrides(
    base_url: str, session_id: str
) -> None:
    async with _Audited(session_id, base_url=base_url) as audited:
        await audited.add_items([_item(n) for n in range(3)])
        audited.calls.clear()
        compacting = OpenAIResponsesCompactionSession(
            session_id,
            audited,
            client=_CompactAPI(),  # type: ignore[arg-type]
            compaction_mode="input",
        )
        await compacting.run_compaction({"force": True})
        # The atomic hook declined, so the SDK replaced through the overridden methods.
        assert audited.calls == ["clear_session", "add_items"]
        assert await audited.get_items() == [_SUMMARY]


# -- 2. prune_prefix ------------------------------------------------------------------


async def test_replace_suffix_prunes_the_leading_expired_items(remote: RemoteSession) -> None:
    # More expired items than the snapshot's limit: all go, page after page.
    await remote.add_items([_old(n) for n in range(5)] + [_item(1), _old(9), _item(2)])
    await remote.add_items([_item(3), _item(4)])
    snapshot = await remote._get_compaction_snapshot(2, prune_prefix=_is_expired)
    assert snapshot is not None
    assert snapshot.items == [_item(3), _item(4)]
    assert await snapshot.replace_suffix(0, [{"summary": "3 and 4"}]) is True
    # An expired item after a kept one stays, as in SQLiteSession: only a prefix goes.
    assert await remote.get_items() == [_item(1), _old(9), _item(2), {"summary": "3 and 4"}]


async def test_a_wholly_expired_prefix_goes_whole(remote: RemoteSession) -> None:
    await remote.add_items([_old(1), _old(2), _item(3), _item(4)])
    snapshot = await remote._get_compaction_snapshot(10, prune_prefix=_is_expired)
    assert snapshot is not None
    assert snapshot.complete
    assert await snapshot.replace_suffix(2, [{"summary": "3 and 4"}]) is True
    assert await remote.get_items() == [{"summary": "3 and 4"}]


async def test_nothing_expired_replaces_the_suffix_alone(remote: RemoteSession) -> None:
    await remote.add_items([_item(1), _item(2), _old(3), _item(4)])
    snapshot = await remote._get_compaction_snapshot(1, prune_prefix=_is_expired)
    assert snapshot is not None
    assert await snapshot.replace_suffix(0, [{"summary": "4"}]) is True
    page = await remote.read_items()
    assert page.items == [_item(1), _item(2), _old(3), {"summary": "4"}]
    assert page.first_seq == 1  # the kept items were not rewritten


async def test_a_stale_snapshot_neither_prunes_nor_replaces(remote: RemoteSession) -> None:
    await remote.add_items([_old(1), _item(2)])
    snapshot = await remote._get_compaction_snapshot(1, prune_prefix=_is_expired)
    assert snapshot is not None
    await remote.add_items([_item(3)])  # written after the snapshot
    assert await snapshot.replace_suffix(0, [{"summary": "2"}]) is False
    assert await remote.get_items() == [_old(1), _item(2), _item(3)]


async def test_a_failing_prune_prefix_changes_nothing(remote: RemoteSession) -> None:
    await remote.add_items([_old(1), _item(2)])

    def broken(item: Any) -> bool:
        raise LookupError("no key")

    snapshot = await remote._get_compaction_snapshot(1, prune_prefix=broken)
    assert snapshot is not None
    with pytest.raises(LookupError):
        await snapshot.replace_suffix(0, [{"summary": "2"}])
    assert await remote.get_items() == [_old(1), _item(2)]


async def test_prefix_pruning_across_seq_gaps(remote: RemoteSession) -> None:
    await remote.add_items([_old(1), _old(2), _item(3), _item(4), _item(5)])
    await remote.replace_items([_item(6)], from_seq=5)  # seq 5 gone, 6 in its place
    await remote.add_items([_item(7)])
    snapshot = await remote._get_compaction_snapshot(2, prune_prefix=_is_expired)
    assert snapshot is not None
    assert snapshot.items == [_item(6), _item(7)]
    assert await snapshot.replace_suffix(1, [{"summary": "7"}]) is True
    assert await remote.get_items() == [_item(3), _item(4), _item(6), {"summary": "7"}]


async def test_encrypted_session_compaction_purges_expired_envelopes(
    remote: RemoteSession,
) -> None:
    encrypted = EncryptedSession(remote.session_id, remote, Fernet.generate_key().decode(), ttl=60)  # type: ignore[arg-type]
    an_hour_ago = int(time.time()) - 3600
    expired = [
        {
            "__enc__": 1,
            "v": 1,
            "kid": "hkdf-v1",
            "payload": encrypted.cipher.encrypt_at_time(
                json.dumps(_item(n)).encode(), an_hour_ago
            ).decode(),
        }
        for n in range(3)
    ]
    await remote.add_items(expired)  # type: ignore[arg-type]
    await encrypted.add_items([_item(10), _item(11)])
    assert await encrypted.get_items() == [_item(10), _item(11)]
    snapshot = await encrypted._get_compaction_snapshot(2)
    assert snapshot is not None
    assert await snapshot.replace_suffix(0, [{"summary": "10 and 11"}]) is True  # type: ignore[list-item]
    assert await encrypted.get_items() == [{"summary": "10 and 11"}]
    assert len(await remote.get_items()) == 1  # the expired envelopes are gone


async def test_pruning_falls_back_to_the_suffix_when_the_rewrite_is_too_large() -> None:
    # What the service answers for a session [old, 1, 2, 3] and a snapshot of [3].
    def page(items: list[Any], first: int, has_more: bool) -> Answer:
        last = first + len(items) - 1
        return Answer(
            200, {"items": items, "first_seq": first, "last_seq": last, "has_more": has_more}
        )

    puts: list[Any] = []

    def answer(request: Seen) -> Answer:
        if request.method == "GET" and "after=0" in request.path:
            return page([_old(0), _item(1)], 1, True)
        if request.method == "GET" and "after=2" in request.path:
            return page([_item(2)], 3, False)
        if request.method == "GET":
            return page([_item(3)], 4, True)
        puts.append(json.loads(request.body))
        if len(puts) == 1:
            return Answer.problem(413)
        return Answer(200, {"count": 1, "first_seq": 5, "last_seq": 5})

    async with (
        scripted_server(answer, []) as url,
        RemoteSession("s", base_url=url, retries=0) as remote,
    ):
        snapshot = await remote._get_compaction_snapshot(2, prune_prefix=_is_expired)
        assert snapshot is not None
        assert await snapshot.replace_suffix(0, [{"summary": "3"}]) is True
    assert puts == [
        {"items": [_item(1), _item(2), {"summary": "3"}]},  # the whole history, pruned
        {"items": [{"summary": "3"}], "from_seq": 4},  # then the suffix alone
    ]


# -- 3. a pop that checks the newest item first ---------------------------------------


async def test_pop_with_validation_keeps_an_item_that_fails(remote: RemoteSession) -> None:
    await remote.add_items([_item(1), _item(2)])

    def refuse(item: Any) -> None:
        raise ValueError(f"cannot read {item['content']}")

    with pytest.raises(ValueError, match="cannot read item 2"):
        await remote._pop_item_with_validation(refuse)
    assert await remote.get_items() == [_item(1), _item(2)]
    checked: list[Any] = []
    assert await remote._pop_item_with_validation(checked.append) == _item(2)
    assert checked == [_item(2)]
    assert await remote._pop_item_with_validation() == _item(1)
    assert await remote._pop_item_with_validation(checked.append) is None


async def test_pop_with_validation_checks_the_item_it_removes(
    remote: RemoteSession, base_url: str
) -> None:
    await remote.add_items([_item(1)])
    checked: list[Any] = []

    def validate(item: Any) -> None:
        checked.append(item)
        if len(checked) == 1:
            # Another writer appends between the check and the removal.
            other = RemoteSession(remote.session_id, base_url=base_url)
            writer = threading.Thread(target=asyncio.run, args=(other.add_items([_item(2)]),))
            writer.start()
            writer.join()

    # The removal saw the session change and started over with the new newest item.
    assert await remote._pop_item_with_validation(validate) == _item(2)
    assert checked == [_item(1), _item(2)]
    assert await remote.get_items() == [_item(1)]


async def test_encrypted_pop_over_remote_drops_an_unreadable_item(
    remote: RemoteSession,
) -> None:
    """Pins today's behaviour: EncryptedSession checks an item before removing it only
    when the store is a SQLiteSession (see the README), so over RemoteSession a pop with
    the wrong key removes the items it cannot read. When the SDK looks for
    ``_pop_item_with_validation`` instead, this test fails and the README note goes."""
    key = Fernet.generate_key().decode()
    writer = EncryptedSession(remote.session_id, remote, key)  # type: ignore[arg-type]
    await writer.add_items([_item(1)])
    wrong_key = EncryptedSession(remote.session_id, remote, Fernet.generate_key().decode())  # type: ignore[arg-type]
    assert await wrong_key.pop_item() is None
    assert await remote.get_items() == []  # the item is gone
    # SQLiteSession, the one store the SDK checks with, keeps it.
    sqlite = SQLiteSession(remote.session_id)
    try:
        await EncryptedSession(remote.session_id, sqlite, key).add_items([_item(1)])
        wrong = EncryptedSession(remote.session_id, sqlite, Fernet.generate_key().decode())
        with pytest.raises(InvalidToken):
            await wrong.pop_item()
        assert len(await sqlite.get_items()) == 1
    finally:
        sqlite.close()


# -- 4. a negative limit --------------------------------------------------------------


async def test_negative_limit_gives_every_item_as_sqlite_session(
    base_url: str, session_id: str
) -> None:
    sqlite = SQLiteSession(session_id)
    try:
        items = [_item(n) for n in range(3)]
        await sqlite.add_items(items)
        async with RemoteSession(session_id, base_url=base_url) as remote:
            await remote.add_items(items)
            for limit in (-1, -5, 0, 2):
                assert await remote.get_items(limit=limit) == await sqlite.get_items(limit)
        async with RemoteSession(
            session_id, base_url=base_url, session_settings={"limit": -1}
        ) as limited:
            assert await limited.get_items() == items
    finally:
        sqlite.close()


# -- 5. close() -----------------------------------------------------------------------


async def test_close_without_await_closes_at_once(remote: RemoteSession) -> None:
    await remote.add_items([_item(1)])
    pool = await remote._transport._client()
    snapshot = await remote._get_compaction_snapshot(1)
    assert snapshot is not None
    remote.close()  # as SQLiteSession's: no await
    with pytest.raises(RuntimeError, match=r"^RemoteSession is closed$"):
        await snapshot.replace_suffix(0, [_item(2)])
    with pytest.raises(RuntimeError, match=r"^RemoteSession is closed$"):
        await remote.get_items()
    with pytest.raises(RuntimeError, match=r"^RemoteSession is closed$"):
        await remote.add_items([_item(2)])
    for _ in range(10):  # the pool closes on this loop's next turns
        if pool.closed:
            break
        await asyncio.sleep(0.01)
    assert pool.closed


async def test_close_can_still_be_awaited_and_repeated(base_url: str, session_id: str) -> None:
    remote = RemoteSession(session_id, base_url=base_url)
    await remote.get_items()
    pool = await remote._transport._client()
    await remote.close()
    assert pool.closed  # awaited: released by the time it returns
    await remote.close()
    remote.close()
    async with RemoteSession(session_id, base_url=base_url) as session:
        await session.get_items()
    with pytest.raises(RuntimeError, match="RemoteSession is closed"):
        await session.get_items()


def test_close_outside_any_event_loop(base_url: str, session_id: str) -> None:
    remote = RemoteSession(session_id, base_url=base_url)
    asyncio.run(remote.add_items([_item(1)]))

    async def close_unawaited() -> None:
        await remote.get_items()
        remote.close()

    asyncio.run(close_unawaited())  # the pool is closed before the loop is
    gc.collect()  # an unclosed aiohttp session would warn here (warnings are errors)
    with pytest.raises(RuntimeError, match="RemoteSession is closed"):
        asyncio.run(remote.get_items())
    never_used = RemoteSession(session_id, base_url=base_url)
    never_used.close()  # no loop at all
    with pytest.raises(RuntimeError, match="RemoteSession is closed"):
        asyncio.run(never_used.pop_item())


async def test_client_close_without_await_closes_its_sessions(base_url: str) -> None:
    client = SessionMemoryClient(base_url=base_url)
    remote = client.session("shared-pools")
    await remote.get_items()
    client.close()
    with pytest.raises(RuntimeError, match="RemoteSession is closed"):
        await remote.get_items()
    with pytest.raises(RuntimeError, match="SessionMemoryClient is closed"):
        await client.list_sessions()
