"""A fresh PostgreSQL schema per test, on the server named by SESSION_MEMORY_TEST_POSTGRES_URL."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__ = ["POSTGRES_URL", "postgres_available", "require_postgres", "schema_url"]

POSTGRES_URL = os.environ.get(
    "SESSION_MEMORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# CI sets this: there a missing PostgreSQL is a failure, never a skip.
REQUIRED = os.environ.get("SESSION_MEMORY_REQUIRE_POSTGRES") == "1"

_problem: list[str] = []  # empty until checked; then [""] or [the error]


async def _execute_async(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _execute(sql: str) -> None:
    # In a thread of its own, so it works from async tests too.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _execute_async(sql)).result()


def postgres_available() -> bool:
    if not _problem:
        try:
            _execute("SELECT 1")
            _problem.append("")
        except Exception as exc:
            _problem.append(f"{type(exc).__name__}: {exc}")
    return not _problem[0]


def require_postgres() -> None:
    """Skip (or, in CI, fail) when the PostgreSQL test server is not reachable."""
    if postgres_available():
        return
    message = (
        f"PostgreSQL not reachable at {POSTGRES_URL} ({_problem[0]}); "
        "set SESSION_MEMORY_TEST_POSTGRES_URL"
    )
    if REQUIRED:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def schema_url() -> Iterator[str]:
    """Create a uniquely named schema; yield a URL whose search_path selects it."""
    require_postgres()
    schema = f"sm_test_{uuid.uuid4().hex[:16]}"
    _execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(POSTGRES_URL)
    query = f"{parts.query}&" if parts.query else ""
    try:
        yield urlunsplit(parts._replace(query=f"{query}search_path={schema}"))
    finally:
        _execute(f"DROP SCHEMA {schema} CASCADE")
