"""A backup restores exactly: export then import gives back every session as it was
(items byte for byte, seqs, metadata, time-to-live, expiry and times), on every
backend; the command writes its output atomically and fails clearly."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx2
import pytest
from session_memory import transfer
from session_memory.cli import main as cli_main
from session_memory.storage import HistoryStore, SessionBackup, store_from_url
from session_memory.transfer import export_lines, import_lines

from tests.utils.postgres import schema_url
from tests.utils.server import ServerProcess

T = "team-a"
SPREAD = '{"b":1,  "a":[1.50,1e2],\n "c": "é"}'


def item(n: int) -> str:
    return json.dumps({"n": n})


@pytest.fixture
def target_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same backend."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/target.db"
    else:
        with schema_url() as url:
            yield url


@pytest.fixture
async def target(target_url: str) -> AsyncIterator[HistoryStore]:
    store = cast(HistoryStore, store_from_url(target_url))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def history(store: Any) -> HistoryStore:
    return cast(HistoryStore, store)


async def populate(store: HistoryStore) -> None:
    """Sessions with what the history features add: metadata, an own time-to-live,
    seqs with gaps (a replace) and a popped tail, an emptied session."""
    await store.append(T, "a", [item(1), item(2), item(3)], ttl=3600, metadata='{"user":"ada"}')
    await store.replace(T, "a", [item(4)], from_seq=2)  # seqs 1 and 4
    await store.append(T, "a", [SPREAD, item(6)])  # 5 and 6
    await store.pop(T, "a")  # seq 6 popped: the next append gets 7
    await store.append(T, "b", ['{"b":1,  "a":[1.50,1e2]}'])
    await store.patch_metadata(T, "b", '{"k":"v","x":1.5}', max_bytes=100)
    await store.append("team-b", "c", [item(1)], ttl=60)
    await store.replace("team-b", "c", [])  # emptied, numbering kept


async def export_bytes(store: HistoryStore) -> bytes:
    return b"".join([line async for line in export_lines(store)])


async def snapshot(store: HistoryStore) -> dict[tuple[str, str], Any]:
    """Everything a backup should keep, session by session, in listing order."""
    state: dict[tuple[str, str], Any] = {}
    for tenant, session_id in await store.all_sessions():
        rows = (await store.read_seqs(tenant, session_id, after=0, limit=100)).rows
        state[(tenant, session_id)] = (await store.backup(tenant, session_id), rows)
    for tenant in ("team-a", "team-b"):
        page = await store.list_sessions(tenant, limit=10)
        state[(tenant, "order")] = [info.session_id for info in page.sessions]
    return state


async def test_a_backup_restores_every_session_exactly(
    history: HistoryStore, target: HistoryStore
) -> None:
    await populate(history)
    exported = await export_bytes(history)
    report = await import_lines(target, exported.splitlines(keepends=True))
    assert (report.added, report.skipped, report.errors) == (4, 0, [])
    assert await snapshot(target) == await snapshot(history)
    backup = await target.backup(T, "a")
    assert backup is not None
    assert (backup.last_seq, backup.ttl, backup.metadata) == (6, 3600, '{"user":"ada"}')
    assert backup.expires_at == pytest.approx(time.time() + 3600, abs=60)
    rows = (await target.read_seqs(T, "a", after=0, limit=10)).rows
    assert rows == [(1, item(1)), (4, item(4)), (5, SPREAD)]
    # Cursors saved against the source line up: the next item follows the popped one.
    assert (await target.append(T, "a", [item(7)])).first_seq == 7
    # The metadata is found by a filter, and the emptied session is there, empty.
    found = await target.find_sessions(T, limit=10, metadata={"user": "ada"})
    assert [info.session_id for info in found.sessions] == ["a"]
    emptied = await target.backup("team-b", "c")
    assert emptied is not None
    assert (emptied.last_seq, emptied.ttl) == (1, 60)


async def test_export_import_export_gives_the_same_file(
    history: HistoryStore, target: HistoryStore
) -> None:
    await populate(history)
    exported = await export_bytes(history)
    await import_lines(target, exported.splitlines())
    assert await export_bytes(target) == exported


async def test_an_import_resumed_adds_nothing_twice(
    history: HistoryStore, target: HistoryStore
) -> None:
    await history.append(T, "long", [item(n) for n in range(2500)], metadata='{"k":"v"}')
    await populate(history)
    lines = (await export_bytes(history)).splitlines()
    first = await import_lines(target, lines[:1700])  # stopped in the middle of "long"
    assert (first.added, first.errors) == (1700 - 3, [])  # less three sessions' lines
    again = await import_lines(target, lines)
    assert (again.added, again.skipped, again.errors) == (2504 - first.added, first.added, [])
    assert await snapshot(target) == await snapshot(history)
    once_more = await import_lines(target, lines)
    assert (once_more.added, once_more.skipped) == (0, 2504)
    assert await export_bytes(target) == b"".join(line + b"\n" for line in lines)


async def test_a_session_expired_by_import_time_is_left_out(target: HistoryStore) -> None:
    record = {"created_at": 1.0, "updated_at": 2.0, "last_seq": 1, "ttl": 5, "expires_at": 7.0}
    lines = [
        b'{"tenant":"t","session_id":"old","session":%b}' % json.dumps(record).encode(),
        b'{"tenant":"t","session_id":"old","seq":1,"item":{"n":1}}',
        b'{"tenant":"t","session_id":"new","item":{"n":1}}',  # the first format
    ]
    report = await import_lines(target, lines)
    assert (report.added, report.expired, report.errors) == (1, 1, [])
    assert await target.get_session("t", "old") is None
    assert (await target.read("t", "new")).items == ['{"n":1}']


async def test_seqs_out_of_order_are_a_bad_line(target: HistoryStore) -> None:
    record = {"created_at": 1.0, "updated_at": 2.0, "last_seq": 3, "ttl": None}
    head = b'{"tenant":"t","session_id":"s"'
    lines = [
        head + b',"session":%b}' % json.dumps(record).encode(),
        head + b',"seq":2,"item":{"n":2}}',
        head + b',"seq":2,"item":{"n":3}}',
        head + b',"seq":3,"item":{"n":4}}',
        head + b',"item":{"n":5}}',
    ]
    report = await import_lines(target, lines)
    assert report.added == 1
    assert report.errors[0].startswith("line 3:")
    assert "2 lines after line 3 not imported" in report.errors[1]
    rows = (await target.read_seqs("t", "s", after=0, limit=10)).rows
    assert rows == [(2, '{"n":2}')]


async def test_a_ttl_no_record_can_show_is_a_bad_line(target: HistoryStore) -> None:
    # json.loads reads NaN and Infinity; a TTL is what a Session-TTL header can set.
    ttls = [b"NaN", b"Infinity", b"-1", b"1e12", b"1" + b"0" * 400]
    lines = [
        b'{"tenant":"t","session_id":"s%d","session":{"created_at":1.0,"updated_at":2.0,'
        b'"last_seq":0,"ttl":%b}}' % (n, ttl)
        for n, ttl in enumerate(ttls)
    ]
    report = await import_lines(target, lines)
    assert report.added == 0
    assert [error.split(":")[0] for error in report.errors] == [
        f"line {n}" for n in range(1, len(ttls) + 1)
    ]
    assert all("'ttl'" in error for error in report.errors)
    assert await target.all_sessions() == []


async def test_a_restore_keeps_the_record_of_a_session_already_there(
    target: HistoryStore,
) -> None:
    await target.append("t", "s", [item(1)], metadata='{"mine":true}')
    backup = SessionBackup(created_at=1.0, updated_at=2.0, last_seq=9, metadata='{"k":"v"}')
    added = await target.restore("t", "s", [(1, item(10)), (5, item(5))], backup)
    assert added == 1
    rows = (await target.read_seqs("t", "s", after=0, limit=10)).rows
    assert rows == [(1, item(1)), (5, item(5))]
    info = await target.backup("t", "s")
    assert info is not None
    assert (info.last_seq, info.metadata) == (9, '{"mine":true}')
    revision = (await target.get_session("t", "s")).revision  # type: ignore[union-attr]
    assert await target.restore("t", "s", [(5, item(5))], backup) == 0
    assert (await target.get_session("t", "s")).revision == revision  # type: ignore[union-attr]


# -- the command ---------------------------------------------------------------------


def _make_database(path: Path, sessions: int = 1, items: int = 1) -> str:
    url = f"sqlite:///{path}"

    async def fill() -> None:
        store = store_from_url(url)
        await store.open()
        try:
            for number in range(sessions):
                await store.append("t", f"s{number}", [item(n) for n in range(items)])
        finally:
            await store.close()

    asyncio.run(fill())
    return url


def test_export_without_a_database_is_an_error_and_makes_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SESSION_MEMORY_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as caught:
        cli_main(["export"])
    assert "no database at" in str(caught.value)
    assert not (tmp_path / "data").exists()
    assert capsys.readouterr().out == ""
    with pytest.raises(SystemExit):
        cli_main(["export", "--database-url", f"sqlite:///{tmp_path}/elsewhere/s.db"])
    assert not (tmp_path / "elsewhere").exists()


def test_export_to_a_file_replaces_it_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _make_database(tmp_path / "s.db")
    output = tmp_path / "backup.jsonl"
    output.write_bytes(b"the previous backup\n")

    async def broken(base_url: str, api_key: str | None) -> AsyncIterator[bytes]:
        yield b'{"tenant":null,"session_id":"s","item":{"n":1}}\n'
        raise ConnectionRefusedError("the server went away")

    monkeypatch.setattr(transfer, "export_from_server", broken)
    assert cli_main(["export", "--base-url", "http://127.0.0.1:9", "-o", str(output)]) == 1
    assert output.read_bytes() == b"the previous backup\n"
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]  # none left
    assert cli_main(["export", "--database-url", url, "-o", str(output)]) == 0
    assert output.read_bytes().count(b"\n") == 2  # the session's line and its item's


@pytest.mark.slow
def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url = _make_database(tmp_path / "s.db", sessions=40, items=1000)  # ~2 MB of lines
    export = subprocess.Popen(
        [sys.executable, "-m", "session_memory", "export", "--database-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None
    assert export.stderr is not None
    assert export.stdout.readline().startswith(b'{"tenant":"t"')
    export.stdout.close()  # as `head -1` does
    with export.stderr:
        assert export.stderr.read() == b""
    assert export.wait(timeout=60) == 141


@pytest.mark.slow
def test_a_backup_through_a_server_restores_every_record_exactly(
    database_url: str, target_url: str, tmp_path: Path
) -> None:
    """Exported over HTTP, imported, and served again: every session's record reads back
    as it was, its own TTL and numbering included, and the listing keeps its order."""
    key = "backup-key-0123456789"
    auth = {"Authorization": f"Bearer {key}"}
    env = {"SESSION_MEMORY_API_KEYS": f"blue:{key}"}
    with (
        ServerProcess(database_url, log_path=tmp_path / "log", env=env) as server,
        httpx2.Client(base_url=server.base_url, headers=auth) as http,
    ):
        url = "/v1/sessions/s/items"
        headers = {"Session-TTL": "3600", "Session-Metadata": '{"user": "ada"}'}
        http.post(url, json={"items": [{"n": n} for n in range(1, 6)]}, headers=headers)
        http.put(url, json={"from_seq": 3, "items": [{"n": 6}]})  # seqs 1, 2 and 6
        http.post(url, content=b'{"items":[{"b":1,  "a":1.50}]}', headers=JSON)  # 7
        http.post(url, json={"items": [{"n": 8}]})
        http.delete(url + "/last")  # seq 8 popped: the session has given 8, holds up to 7
        http.post("/v1/sessions/plain/items", json={"items": [{"n": 1}]})  # the default TTL
        never = {"Session-TTL": "0"}
        http.post("/v1/sessions/never/items", json={"items": [{"n": 1}]}, headers=never)
        listed = http.get("/v1/sessions").json()["sessions"]
        done = subprocess.run(
            [sys.executable, "-m", "session_memory", "export", "--base-url", server.base_url],
            capture_output=True,
            env={**os.environ, "SESSION_MEMORY_API_KEY": key},
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    record = {shown["id"]: shown for shown in listed}["s"]
    assert (record["ttl"], record["last_seq"], record["item_count"]) == (3600, 8, 4)
    restored = subprocess.run(
        [sys.executable, "-m", "session_memory", "import", "--tenant", "blue"],
        input=done.stdout,
        capture_output=True,
        env={**os.environ, "SESSION_MEMORY_DATABASE_URL": target_url},
        timeout=60,
    )
    assert restored.returncode == 0, restored.stderr

    async def check() -> None:
        store = cast(HistoryStore, store_from_url(target_url))
        await store.open()
        try:
            rows = (await store.read_seqs("blue", "s", after=0, limit=10)).rows
            assert [seq for seq, _ in rows] == [1, 2, 6, 7]
            assert rows[-1][1] == '{"b":1,  "a":1.50}'
            backup = await store.backup("blue", "s")
            assert backup is not None
            assert (backup.metadata, backup.last_seq, backup.ttl) == ('{"user":"ada"}', 8, 3600)
            found = await store.find_sessions("blue", limit=5, metadata={"user": "ada"})
            assert [info.session_id for info in found.sessions] == ["s"]
        finally:
            await store.close()

    asyncio.run(check())
    with (
        ServerProcess(target_url, log_path=tmp_path / "copy-log", env=env) as copy,
        httpx2.Client(base_url=copy.base_url, headers=auth) as http,
    ):
        assert http.get("/v1/sessions").json()["sessions"] == listed
        # Numbering goes on from the popped item, as it would have on the source.
        assert http.post(url, json={"items": [{"n": 9}]}).json()["first_seq"] == 9


JSON = {"content-type": "application/json"}


def _iso(seconds: float | None) -> str | None:
    from datetime import UTC, datetime

    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
