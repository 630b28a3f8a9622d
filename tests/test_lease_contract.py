"""The run lease contract (``RunLeases`` and ``run_lease`` on every write), written once
and run on every backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from session_memory.storage import (
    Idempotency,
    LeaseLostError,
    SessionLeasedError,
    SessionStore,
    store_from_url,
)
from session_memory.storage.contract import HistoryStore

T = "tenant-a"
S = "run-session"


def item(n: int) -> str:
    return json.dumps({"n": n})


@pytest.fixture
def history(store: SessionStore) -> HistoryStore:
    return cast(HistoryStore, store)


async def numbers(history: HistoryStore, session_id: str = S) -> list[int]:
    page = await history.read(T, session_id)
    return [json.loads(text)["n"] for text in page.items]


def writes(history: HistoryStore) -> dict[str, Callable[[int | None], Awaitable[Any]]]:
    """One write of each kind, each taking the token it carries."""
    return {
        "append": lambda token: history.append(T, S, [item(9)], run_lease=token),
        "pop": lambda token: history.pop(T, S, run_lease=token),
        "replace": lambda token: history.replace(T, S, [item(8)], from_seq=99, run_lease=token),
        "fork": lambda token: history.fork(T, S, f"fork-{token}", run_lease=token),
        "patch": lambda token: history.patch_metadata(
            T, S, '{"k":"v"}', max_bytes=1000, run_lease=token
        ),
        "clear": lambda token: history.clear(T, S, run_lease=token),
    }


async def test_one_lease_at_a_time_and_tokens_only_grow(history: HistoryStore) -> None:
    first = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    assert await history.leases.current(T, S) == first
    with pytest.raises(SessionLeasedError) as refused:
        await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    assert refused.value.retry_after is not None
    assert 0 < refused.value.retry_after <= 30
    await history.leases.release(T, S, first.token)
    assert await history.leases.current(T, S) is None
    second = await history.leases.acquire(T, S, ttl=0.2, refuse_unleased=True)
    assert second.token > first.token
    await asyncio.sleep(0.3)
    # Expired: it frees itself, and the next token is higher still.
    assert await history.leases.current(T, S) is None
    third = await history.leases.acquire(T, S, ttl=30, refuse_unleased=False)
    assert third.token > second.token
    assert not third.refuse_unleased
    # Another session's lease is its own.
    other = await history.leases.acquire(T, "other", ttl=30, refuse_unleased=True)
    assert other.token != third.token


@pytest.mark.parametrize("kind", ["append", "pop", "replace", "fork", "patch", "clear"])
async def test_every_write_is_fenced(history: HistoryStore, kind: str) -> None:
    await history.append(T, S, [item(1), item(2)])
    lease = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    write = writes(history)[kind]
    # No token, while the lease refuses those; a token that is not the lease's.
    with pytest.raises(SessionLeasedError):
        await write(None)
    with pytest.raises(LeaseLostError):
        await write(lease.token - 1)
    with pytest.raises(LeaseLostError):
        await write(lease.token + 1)
    assert await numbers(history) == [1, 2]
    assert (await history.get_session(T, S)).metadata is None  # type: ignore[union-attr]
    assert await history.get_session(T, "fork-None") is None
    # The lease's own token goes through.
    await write(lease.token)
    # Released: its token is refused from now on, and writes without one go through.
    await history.leases.release(T, S, lease.token)
    with pytest.raises(LeaseLostError):
        await write(lease.token)
    if kind != "fork":  # a second fork of the same target would exist already
        await write(None)


async def test_unleased_writes_may_be_allowed(history: HistoryStore) -> None:
    lease = await history.leases.acquire(T, S, ttl=30, refuse_unleased=False)
    await history.append(T, S, [item(1)])
    await history.append(T, S, [item(2)], run_lease=lease.token)
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(3)], run_lease=lease.token - 1)
    assert await numbers(history) == [1, 2]


async def test_a_token_without_a_lease_is_refused(history: HistoryStore) -> None:
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(1)], run_lease=12345)
    assert await history.get_session(T, S) is None


async def test_an_expired_holder_is_fenced_off(history: HistoryStore) -> None:
    stale = await history.leases.acquire(T, S, ttl=0.2, refuse_unleased=True)
    await history.append(T, S, [item(1)], run_lease=stale.token)
    await asyncio.sleep(0.3)
    # Expired, nobody else holds it: the token is lost all the same.
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(2)], run_lease=stale.token)
    with pytest.raises(LeaseLostError):
        await history.leases.renew(T, S, stale.token)
    with pytest.raises(LeaseLostError):
        await history.leases.release(T, S, stale.token)
    fresh = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    await history.append(T, S, [item(3)], run_lease=fresh.token)
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(4)], run_lease=stale.token)
    assert await numbers(history) == [1, 3]


async def test_renewal_holds_it_longer(history: HistoryStore) -> None:
    lease = await history.leases.acquire(T, S, ttl=0.5, refuse_unleased=True)
    renewed = await history.leases.renew(T, S, lease.token, ttl=30)
    assert renewed.token == lease.token
    assert renewed.ttl == 30
    assert renewed.expires_at > lease.expires_at + 20
    await asyncio.sleep(0.6)
    await history.append(T, S, [item(1)], run_lease=lease.token)
    # Without a TTL, the lease's own again.
    again = await history.leases.renew(T, S, lease.token)
    assert again.ttl == 30
    assert await history.leases.current(T, S) == again


async def test_a_clear_keeps_the_lease(history: HistoryStore) -> None:
    lease = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    await history.append(T, S, [item(1)], run_lease=lease.token)
    await history.clear(T, S, run_lease=lease.token)
    assert await history.leases.current(T, S) == lease
    with pytest.raises(SessionLeasedError):
        await history.append(T, S, [item(2)])
    await history.append(T, S, [item(3)], run_lease=lease.token)
    assert await numbers(history) == [3]


async def test_a_replay_with_a_lost_token_is_refused(history: HistoryStore) -> None:
    lease = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    key = Idempotency(key="k1", fingerprint="f1", ttl=60)
    first = await history.append(T, S, [item(1)], idempotency=key, run_lease=lease.token)
    again = await history.append(T, S, [item(1)], idempotency=key, run_lease=lease.token)
    assert again == first
    await history.leases.release(T, S, lease.token)
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(1)], idempotency=key, run_lease=lease.token)
    assert await numbers(history) == [1]


async def test_concurrent_acquirers_get_one_lease(history: HistoryStore) -> None:
    async def attempt() -> int | None:
        try:
            lease = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
        except SessionLeasedError:
            return None
        return lease.token

    tokens = await asyncio.gather(*(attempt() for _ in range(20)))
    assert len([token for token in tokens if token is not None]) == 1


async def test_the_last_token_outlives_a_restart(database_url: str) -> None:
    store = store_from_url(database_url)
    await store.open()
    try:
        first = await store.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    finally:
        await store.close()
    store = store_from_url(database_url)
    await store.open()
    try:
        assert await store.leases.current(T, S) == first
        await store.append(T, S, [item(1)], run_lease=first.token)
        await store.leases.release(T, S, first.token)
        second = await store.leases.acquire(T, S, ttl=30, refuse_unleased=True)
        assert second.token > first.token
    finally:
        await store.close()


async def test_the_sweep_keeps_recent_leases(history: HistoryStore) -> None:
    lease = await history.leases.acquire(T, S, ttl=0.1, refuse_unleased=True)
    await asyncio.sleep(0.2)
    await history.sweep()
    # Ended but recent: its token is still the floor of the next.
    again = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    assert again.token > lease.token


async def test_an_acquisition_s_key_gets_its_lease_back(history: HistoryStore) -> None:
    first = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")
    # A retry of it (its answer lost): the same lease, renewed; its terms are the
    # lease's own, whatever the retry asks.
    again = await history.leases.acquire(T, S, ttl=5, refuse_unleased=False, key="k-1")
    assert again.token == first.token
    assert (again.ttl, again.refuse_unleased) == (30, True)
    assert again.expires_at > first.expires_at
    assert await history.leases.current(T, S) == again
    # Anyone else, with another key or none, is refused as before.
    for key in ("k-2", None):
        with pytest.raises(SessionLeasedError):
            await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key=key)
    # A key is the tenant's and the session's: elsewhere it names nothing held.
    elsewhere = await history.leases.acquire(T, "other", ttl=30, refuse_unleased=True, key="k-1")
    tenant_b = await history.leases.acquire("tenant-b", S, ttl=30, refuse_unleased=True, key="k-1")
    assert first.token not in (elsewhere.token, tenant_b.token)
    await history.append(T, S, [item(1)], run_lease=first.token)
    # Ended, the key is nobody's: it acquires anew.
    await history.leases.release(T, S, first.token)
    renewed = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")
    assert renewed.token > first.token
    with pytest.raises(LeaseLostError):
        await history.append(T, S, [item(2)], run_lease=first.token)
    assert await numbers(history) == [1]


async def test_an_expired_lease_s_key_acquires_anew(history: HistoryStore) -> None:
    first = await history.leases.acquire(T, S, ttl=0.2, refuse_unleased=True, key="k-1")
    await asyncio.sleep(0.3)
    second = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")
    assert second.token > first.token
    # A lease granted without a key is not the earlier key's.
    await history.leases.release(T, S, second.token)
    third = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True)
    with pytest.raises(SessionLeasedError):
        await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")
    assert third.token > second.token


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_replica_not_yet_upgraded_grants_without_a_key(
    history: HistoryStore, database_url: str
) -> None:
    import asyncpg

    first = await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")
    await history.leases.release(T, S, first.token)
    # A replica of the previous release acquires through the function it knows.
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM session_memory_lease_acquire($1, $2, $3, $4)", T, S, 30.0, True
        )
    finally:
        await conn.close()
    assert row["r_status"] == "ok"
    assert row["r_token"] > first.token
    # That lease is not the earlier key's: a late retry of the first acquisition waits.
    with pytest.raises(SessionLeasedError):
        await history.leases.acquire(T, S, ttl=30, refuse_unleased=True, key="k-1")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("kind", ["append", "pop", "replace", "fork", "patch", "clear"])
async def test_a_write_meets_the_lease_acquired_while_it_waited(
    history: HistoryStore, database_url: str, kind: str
) -> None:
    import asyncpg

    await history.append(T, S, [item(1), item(2)])
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # An acquisition under way holds the session's lease lock until it commits.
            row = await conn.fetchrow(
                "SELECT * FROM session_memory_lease_acquire($1, $2, $3, $4, $5)",
                T,
                S,
                30.0,
                True,
                None,
            )
            assert row["r_status"] == "ok"
            write = asyncio.ensure_future(writes(history)[kind](None))
            await asyncio.sleep(0.3)
        # The write waited on the lock, then read the lease committed meanwhile.
        with pytest.raises(SessionLeasedError):
            await write
    finally:
        await conn.close()
    assert await numbers(history) == [1, 2]
    assert await history.get_session(T, "fork-None") is None


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_the_fenced_writes_check_in_their_own_body(
    history: HistoryStore, database_url: str
) -> None:
    import asyncpg

    # A nested PL/pgSQL call is what a fence around the write cost (migration 14).
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'session_memory_fenced_%' "
            "AND pronamespace = current_schema()::regnamespace"
        )
    finally:
        await conn.close()
    assert sorted(row["proname"] for row in rows) == [
        f"session_memory_fenced_{kind}" for kind in ("append", "clear", "fork", "pop", "replace")
    ]
    for row in rows:
        wrapped = row["proname"].replace("fenced_", "")
        assert f"{wrapped}(" not in row["prosrc"]
        assert "session_memory_lease_check(" not in row["prosrc"]
        assert "pg_advisory_xact_lock_shared(" in row["prosrc"]
