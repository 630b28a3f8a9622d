"""A fresh PostgreSQL schema per test, on the server named by SESSION_MEMORY_TEST_POSTGRES_URL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["POSTGRES_URL", "postgres_available", "require_postgres", "schema_url"]

POSTGRES_URL = os.environ.get(
    "SESSION_MEMORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets this: there a missing PostgreSQL is a failure, never a skip.
REQUIRED = os.environ.get("SESSION_MEMORY_REQUIRE_POSTGRES") == "1"

_available: bool | None = None


async def _execute(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_available() -> bool:
    global _available
    if _available is None:
        try:
            asyncio.run(_execute("SELECT 1"))
            _available = True
        except (OSError, ImportError, Exception):
            _available = False
    return _available


def require_postgres() -> None:
    """Skip (or, in CI, fail) when the PostgreSQL test server is not reachable."""
    if postgres_available():
        return
    message = f"PostgreSQL not reachable at {POSTGRES_URL} (set SESSION_MEMORY_TEST_POSTGRES_URL)"
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def schema_url() -> Iterator[str]:
    """Create a uniquely named schema; yield a URL whose search_path selects it."""
    require_postgres()
    schema = f"sm_test_{uuid.uuid4().hex[:16]}"
    asyncio.run(_execute(f"CREATE SCHEMA {schema}"))
    parts = urlsplit(POSTGRES_URL)
    query = f"{parts.query}&" if parts.query else ""
    try:
        yield urlunsplit(parts._replace(query=f"{query}search_path={schema}"))
    finally:
        asyncio.run(_execute(f"DROP SCHEMA {schema} CASCADE"))
