"""Per-tenant limits over HTTP, on a server started with them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from tests.utils.server import ServerProcess


@pytest.fixture(scope="module")
def two_session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("two-sessions")
    with ServerProcess(
        f"sqlite:///{folder}/s.db",
        log_path=folder / "server.log",
        extra_args=["--max-sessions-per-tenant", "2"],
    ) as process:
        yield process


async def test_a_session_past_the_tenant_limit_is_422_naming_it(
    two_session_server: ServerProcess,
) -> None:
    async with httpx2.AsyncClient(base_url=two_session_server.base_url) as http:
        for name in ("one", "two"):
            created = await http.post(f"/v1/sessions/{name}/items", json={"items": [{"n": 1}]})
            assert created.status_code == 201
        refused = await http.post("/v1/sessions/three/items", json={"items": [{"n": 1}]})
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert (problem["limit"], problem["max"]) == ("max_sessions_per_tenant", 2)
        assert (await http.get("/v1/sessions/three")).status_code == 404
        more = await http.post("/v1/sessions/one/items", json={"items": [{"n": 2}]})
        assert more.status_code == 201
