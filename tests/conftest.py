"""Fixtures: a store per backend (the contract suite) and a real server over TCP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from session_memory.storage import SessionStore, store_from_url
from session_memory_client import RemoteSession

from tests.utils.postgres import schema_url
from tests.utils.processes import leftovers
from tests.utils.server import ServerProcess

BACKENDS = ["sqlite", "postgres"]


# Tests that use these fixtures talk to a real server process: `slow` (see `make test-fast`).
_SERVER_FIXTURES = {"server", "base_url", "http", "remote"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process a test started is still alive once every fixture is done."""
    left = leftovers()
    if left:
        session.config.get_terminal_writer().line(
            "processes left behind by the tests:\n  " + "\n  ".join(left), red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, as a URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    else:
        with schema_url() as url:
            yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SessionStore]:
    """An open, empty store of each backend."""
    backend = store_from_url(database_url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(scope="session", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One real server process per backend, shared by the tests of a run."""
    folder = tmp_path_factory.mktemp(f"server-{request.param}")
    if request.param == "sqlite":
        with ServerProcess(
            f"sqlite:///{folder}/sessions.db", log_path=folder / "server.log"
        ) as process:
            yield process
    else:
        with schema_url() as url, ServerProcess(url, log_path=folder / "server.log") as process:
            yield process


@pytest.fixture
def base_url(server: ServerProcess) -> str:
    return server.base_url


@pytest.fixture
def session_id() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def remote(base_url: str, session_id: str) -> AsyncIterator[RemoteSession]:
    async with RemoteSession(session_id, base_url=base_url) as session:
        yield session
