"""SQLite connections belong to one thread each, and any other thread is refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from session_memory.storage.sqlite import SQLiteStore
from session_memory.storage.sqlite.connection import ReaderPool
from session_memory.storage.sqlite.writer import GroupCommitWriter


async def test_only_the_writers_thread_may_use_the_write_connection(tmp_path: Path) -> None:
    writer = GroupCommitWriter(tmp_path / "w.db", busy_timeout_ms=1000, max_group_ops=8)
    await writer.open()
    try:
        leaked = await writer.submit(lambda conn: conn)
        with pytest.raises(sqlite3.ProgrammingError):
            leaked.execute("SELECT 1")
        assert await writer.submit(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await writer.close()


async def test_only_a_readers_thread_may_use_its_connection(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "r.db").close()
    readers = ReaderPool(2)
    await readers.open(tmp_path / "r.db", 1000)
    try:
        leaked = await readers.run(lambda conn: conn)
        with pytest.raises(sqlite3.ProgrammingError):
            leaked.execute("SELECT 1")
        assert await readers.run(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    finally:
        await readers.close()


async def test_the_inline_reader_serves_only_the_loop_that_opened_the_store(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.append("t", "s", [json.dumps({"n": 1})])
        # A small read is inline; from another thread's loop it is refused.
        with pytest.raises(sqlite3.ProgrammingError):
            await asyncio.to_thread(asyncio.run, store.read("t", "s", limit=1))
        assert (await store.read("t", "s", limit=1)).items == [json.dumps({"n": 1})]
    finally:
        await store.close()
