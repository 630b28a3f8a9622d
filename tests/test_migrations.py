"""Schema migrations: a database made at the first version upgrades with its data intact."""

from __future__ import annotations

import aiosqlite
import asyncpg
from session_memory.storage import postgres, sqlite, store_from_url
from session_memory.storage.sqlite import sqlite_path_from_url

V1_ITEMS = ['{"role": "user", "content": "from v1"}', '{"b":1,  "a":2}']


async def _make_v1_sqlite(url: str) -> list[int]:
    async with aiosqlite.connect(sqlite_path_from_url(url), isolation_level=None) as conn:
        assert await sqlite.migrate(conn, target=1) == [1]
        await conn.execute(
            "INSERT INTO sessions (id, tenant, session_id, created_at, updated_at, item_count, "
            "last_seq, revision) VALUES (7, '', 'old', 1.0, 2.0, 2, 2, 1)"
        )
        await conn.executemany(
            "INSERT INTO items (session, seq, body) VALUES (7, ?, ?)",
            [(seq, body) for seq, body in enumerate(V1_ITEMS, start=1)],
        )
        async with conn.execute("SELECT version FROM schema_migrations") as cur:
            return [row[0] for row in await cur.fetchall()]


async def _make_v1_postgres(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        assert await postgres.migrate(conn, target=1) == [1]
        await conn.execute(
            "INSERT INTO sessions (id, tenant, session_id, created_at, updated_at, item_count, "
            "last_seq, revision) VALUES (7, '', 'old', now(), now(), 2, 2, "
            "nextval('session_revisions'))"
        )
        await conn.executemany(
            "INSERT INTO items (session, seq, body) VALUES (7, $1, $2)",
            list(enumerate(V1_ITEMS, start=1)),
        )
        return [row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def test_upgrade_from_first_version_keeps_data(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        migrations = sqlite.MIGRATIONS
        assert await _make_v1_sqlite(database_url) == [1]
    else:
        migrations = postgres.MIGRATIONS
        assert await _make_v1_postgres(database_url) == [1]

    store = store_from_url(database_url)
    await store.open()  # applies every later migration
    try:
        page = await store.read("", "old")
        assert page.items == V1_ITEMS
        assert (page.first_seq, page.last_seq) == (1, 2)
        appended = await store.append("", "old", ['{"n": 3}'])
        assert appended.first_seq == 3
        info = await store.get_session("", "old")
        assert info is not None
        assert info.item_count == 3
    finally:
        await store.close()

    # Opening again finds nothing left to do.
    store = store_from_url(database_url)
    await store.open()
    await store.close()
    latest = [version for version, _ in migrations]
    if database_url.startswith("sqlite"):
        async with (
            aiosqlite.connect(sqlite_path_from_url(database_url)) as conn,
            conn.execute("SELECT version FROM schema_migrations ORDER BY version") as cur,
        ):
            assert [row[0] for row in await cur.fetchall()] == latest
    else:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
            assert [row[0] for row in rows] == latest
        finally:
            await conn.close()
