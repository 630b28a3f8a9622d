"""Export and import: JSON Lines round trips, idempotent imports, and the admin CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import httpx2
import pytest
from session_memory.storage import SessionStore, store_from_url
from session_memory.storage.contract import HistoryStore
from session_memory.transfer import export_lines, import_lines

from tests.utils.server import ServerProcess

RAW = ['{"b":1,  "a":[1.50,1e2]}', '{"role":"user","content":"é 🙂 \\u00e9"}', '{"n":3}']


async def export_bytes(store: SessionStore) -> bytes:
    return b"".join([line async for line in export_lines(store)])


async def test_export_import_round_trip_is_identical(store: SessionStore, tmp_path: Path) -> None:
    await store.append("team-a", "s1", RAW)
    await store.append("team-a", 'odd "id", with ,"item": inside', [RAW[0]])
    await store.append("team-b", "s1", [RAW[2]])
    for n in range(1200):  # more than one page
        await store.append("team-b", "long", [json.dumps({"n": n})])
    await store.append("team-b", "popped", [RAW[0], RAW[1]])
    await store.pop("team-b", "popped")
    first = await export_bytes(store)
    # An item a line, and a line for each of the 5 sessions' records.
    assert first.count(b"\n") == 3 + 1 + 1 + 1200 + 1 + 5

    target = store_from_url(f"sqlite:///{tmp_path}/target.db")
    await target.open()
    try:
        report = await import_lines(target, first.splitlines(keepends=True))
        assert (report.added, report.skipped, report.errors) == (1206, 0, [])
        assert await export_bytes(target) == first
        assert (await target.read("team-a", "s1")).items == RAW
        # Idempotent: again adds nothing; a longer file adds only what is new.
        report = await import_lines(target, first.splitlines())
        assert (report.added, report.skipped) == (0, 1206)
        more = first + b'{"tenant":"team-z","session_id":"new","item":{"new":true}}\n'
        report = await import_lines(target, more.splitlines())
        assert (report.added, report.skipped) == (1, 1206)
    finally:
        await target.close()


async def test_import_reports_a_bad_line(store: SessionStore) -> None:
    report = await import_lines(
        store,
        [b'{"tenant":"t","session_id":"s","item":{"ok":1}}', b'{"tenant":"t","item":[1]}'],
    )
    assert report.added == 1
    assert len(report.errors) == 1
    assert report.errors[0].startswith("line 2:")


# Items with line breaks and other whitespace between their tokens, kept byte for byte.
SPREAD = [
    '{\n  "role": "user",\n  "content": "two\\nlines"\n}',
    '{"a":\r\n[1,\t2]\r}',
    '{ "tab":\t"x" ,"sep": "\u2028 \u2029" }',
    '{"quote": "\\"item\\":", "back": "\\\\"}',
]


async def test_items_with_line_breaks_export_on_one_line_each(
    store: SessionStore, tmp_path: Path
) -> None:
    await store.append("t", "spread", SPREAD)
    await store.append("t", "after", ['{"n":1}'])
    first = await export_bytes(store)
    lines = first.split(b"\n")
    assert lines[-1] == b""
    assert len(lines[:-1]) == len(SPREAD) + 1 + 2  # and the 2 sessions' records
    for line in lines[:-1]:
        assert b"\r" not in line
        json.loads(line)

    target = store_from_url(f"sqlite:///{tmp_path}/target.db")
    await target.open()
    try:
        # As a file reads: split on line ends only.
        report = await import_lines(target, first.splitlines(keepends=True))
        assert (report.added, report.errors) == (len(SPREAD) + 1, [])
        assert (await target.read("t", "spread")).items == SPREAD
        assert await export_bytes(target) == first
    finally:
        await target.close()


async def test_a_bad_line_loses_nothing_silently(store: SessionStore) -> None:
    def line(session: str, n: int) -> bytes:
        return b'{"tenant":"t","session_id":"%b","item":{"n":%d}}' % (session.encode(), n)

    lines = [
        line("a", 1),
        line("b", 1),
        line("b", 2),
        b'{"tenant":"t","session_id":"b","item":{"n":3',  # cut short
        line("b", 4),
        line("b", 5),
        line("c", 1),
        line("c", 2),
    ]
    report = await import_lines(store, lines)
    assert report.added == 5  # a1, b1, b2, c1, c2
    assert report.errors[0].startswith("line 4:")
    assert "2 lines after line 4 not imported" in report.errors[1]
    assert [json.loads(i)["n"] for i in (await store.read("t", "b")).items] == [1, 2]
    assert len((await store.read("t", "c")).items) == 2
    # Fixed and imported again: what landed is skipped, the rest follows in order.
    lines[3] = line("b", 3)
    again = await import_lines(store, lines)
    assert (again.added, again.skipped, again.errors) == (3, 5, [])
    assert [json.loads(i)["n"] for i in (await store.read("t", "b")).items] == [1, 2, 3, 4, 5]


@pytest.mark.slow
async def test_import_leaves_a_leased_session_alone(store: SessionStore, tmp_path: Path) -> None:
    source = store_from_url(f"sqlite:///{tmp_path}/source.db")
    await source.open()
    try:
        for session_id in ("before", "held", "after"):
            await source.append("t", session_id, RAW)
        backup = await export_bytes(source)
    finally:
        await source.close()
    history = cast(HistoryStore, store)
    lease = await history.leases.acquire("t", "held", ttl=60, refuse_unleased=True)
    await history.append("t", "held", ['{"run":1}'], run_lease=lease.token)

    report = await import_lines(store, backup.splitlines())
    # The run's history is left as the run wrote it; the other sessions are imported.
    assert report.added == 6
    assert len(report.errors) == 1
    assert "'held'" in report.errors[0]
    assert "lease" in report.errors[0]
    assert (await store.read("t", "held")).items == ['{"run":1}']
    assert (await store.read("t", "after")).items == RAW
    # Lines of the first format honour it too, reported rather than raised.
    old = [b'{"tenant":"t","session_id":"held","item":{"n":%d}}' % n for n in (1, 2)]
    report = await import_lines(store, old)
    assert (report.added, report.skipped, len(report.errors)) == (0, 1, 1)
    # A lease that lets writes without its token through lets the import through too.
    await history.leases.release("t", "held", lease.token)
    allowing = await history.leases.acquire("t", "held", ttl=60, refuse_unleased=False)
    report = await import_lines(store, backup.splitlines())
    # (Its first item's seq is the run's item's: taken as there already.)
    assert (report.added, report.errors) == (2, [])
    await history.leases.release("t", "held", allowing.token)


async def test_an_operator_import_may_ignore_leases(store: SessionStore, tmp_path: Path) -> None:
    source = store_from_url(f"sqlite:///{tmp_path}/source.db")
    await source.open()
    try:
        await source.append("t", "held", RAW)
        backup = await export_bytes(source)
    finally:
        await source.close()
    await cast(HistoryStore, store).leases.acquire("t", "held", ttl=60, refuse_unleased=True)
    report = await import_lines(store, backup.splitlines(), honour_leases=False)
    assert (report.added, report.errors) == (3, [])
    assert (await store.read("t", "held")).items == RAW


async def test_cli_import_reports_a_leased_session(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path}/target.db"
    store = store_from_url(target)
    await store.open()
    try:
        await store.leases.acquire("t", "held", ttl=600, refuse_unleased=True)
    finally:
        await store.close()
    source = b'{"tenant":"t","session_id":"held","session":{"created_at":1.0,"updated_at":2.0,'
    source += b'"last_seq":1,"ttl":null,"expires_at":null,"metadata":null}}\n'
    source += b'{"tenant":"t","session_id":"held","seq":1,"item":{"n":1}}\n'
    refused = run("import", "--database-url", target, stdin=source)
    assert refused.returncode == 1
    assert b"a run holds its lease" in refused.stderr
    assert b"imported 0 items" in refused.stderr
    forced = run("import", "--database-url", target, "--ignore-run-leases", stdin=source)
    assert forced.returncode == 0, forced.stderr
    assert b"imported 1 items" in forced.stderr


def test_cli_import_names_a_bad_line_and_fails(tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path}/target.db"
    source = (
        b'{"tenant":"t","session_id":"s","item":{"n":1}}\n'
        b"not json\n"
        b'{"tenant":"t","session_id":"u","item":{"n":1}}\n'
    )
    done = run("import", "--database-url", target, stdin=source)
    assert done.returncode == 1
    assert b"line 2:" in done.stderr
    assert b"imported 2 items" in done.stderr


def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "session_memory", *args],
        capture_output=True,
        input=stdin,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow
def test_cli_export_import_and_sessions(tmp_path: Path) -> None:
    key = "admin-key-0123456789"
    source = f"sqlite:///{tmp_path}/source.db"
    with ServerProcess(
        source, log_path=tmp_path / "log", env={"SESSION_MEMORY_API_KEYS": f"ops:{key}"}
    ) as server:
        auth = {"Authorization": f"Bearer {key}"}
        httpx2.post(
            f"{server.base_url}/v1/sessions/a b/items", json={"items": [{"n": 1}]}, headers=auth
        )
        httpx2.post(
            f"{server.base_url}/v1/sessions/c/items", json={"items": [{"n": 2}]}, headers=auth
        )
        admin = ["sessions", "--base-url", server.base_url, "--api-key", key]
        listed = json.loads(run(*admin, "list", "--json").stdout)
        assert {record["id"] for record in listed["sessions"]} == {"a b", "c"}
        shown = json.loads(run(*admin, "show", "a b", "--items", "--json").stdout)
        assert (shown["item_count"], shown["items"]) == (1, [{"n": 1}])
        # For people, by default: a table, and a record with its items one a line.
        table = run(*admin, "list").stdout.decode().splitlines()
        assert table[0].split() == ["ID", "ITEMS", "UPDATED", "EXPIRES"]
        assert sorted(line.split("  ")[0] for line in table[1:]) == ["a b", "c"]
        assert all(line.endswith("never") and " UTC" in line for line in table[1:])
        text = run(*admin, "show", "a b", "--items").stdout.decode().splitlines()
        assert text[:2] == ["id:       a b", "items:    1"]
        assert text[-1] == '   1  {"n": 1}'
        assert run(*admin, "delete", "c").returncode == 0
        missing = run(*admin, "show", "c")
        assert missing.returncode != 0
        assert b"404" in missing.stderr
        assert run("sessions", "--base-url", server.base_url, "list").returncode != 0  # no key

    exported = run("export", "--database-url", source)
    assert exported.returncode == 0, exported.stderr
    record, line = (json.loads(text) for text in exported.stdout.splitlines())
    assert record["session"]["last_seq"] == 1
    assert line == {"tenant": "ops", "session_id": "a b", "seq": 1, "item": {"n": 1}}
    target = f"sqlite:///{tmp_path}/target.db"
    assert run("import", "--database-url", target, stdin=exported.stdout).returncode == 0
    dump = tmp_path / "again.jsonl"
    assert run("export", "--database-url", target, "--output", str(dump)).returncode == 0
    assert dump.read_bytes() == exported.stdout
    again = run("import", "--database-url", target, "--input", str(dump))
    assert b"imported 0 items (1 already present)" in again.stderr


@pytest.mark.slow
def test_export_from_a_running_server_imports_into_a_tenant(tmp_path: Path) -> None:
    key = "exporter-key-0123456789"
    with ServerProcess(
        f"sqlite:///{tmp_path}/live.db",
        log_path=tmp_path / "log",
        env={"SESSION_MEMORY_API_KEYS": f"blue:{key},green:other-key-0123456789"},
    ) as server:
        auth = {"Authorization": f"Bearer {key}"}
        raw = '{"items":[{"b":1,  "a":1.50}, {"n":2}]}'
        httpx2.post(
            f"{server.base_url}/v1/sessions/s/items",
            content=raw,
            headers={**auth, "content-type": "application/json"},
        )
        httpx2.post(
            f"{server.base_url}/v1/sessions/hidden/items",
            json={"items": [{"n": 9}]},
            headers={"Authorization": "Bearer other-key-0123456789"},
        )
        exported = run("export", "--base-url", server.base_url, "--api-key", key)
    assert exported.returncode == 0, exported.stderr
    record, *items = exported.stdout.splitlines(keepends=True)
    assert record.startswith(b'{"tenant":null,"session_id":"s","session":{"created_at":')
    assert items == [
        b'{"tenant":null,"session_id":"s","seq":1,"item":{"b":1,  "a":1.50}}\n',
        b'{"tenant":null,"session_id":"s","seq":2,"item":{"n":2}}\n',
    ]
    target = f"sqlite:///{tmp_path}/copy.db"
    assert (
        run(
            "import", "--database-url", target, "--tenant", "blue", stdin=exported.stdout
        ).returncode
        == 0
    )
    again = run("export", "--database-url", target)
    assert (
        again.stdout.splitlines()[1]
        == b'{"tenant":"blue","session_id":"s","seq":1,"item":{"b":1,  "a":1.50}}'
    )
