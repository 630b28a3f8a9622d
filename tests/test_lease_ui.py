"""The session browser shows a run in progress while a run holds the session's lease."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from session_memory_client.protocol import RUN_LEASE

from tests.utils.server import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "ui-leases-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium); .ci/run installs it",
    ),
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("ui-leases")
    with ServerProcess(
        f"sqlite:///{folder}/u.db",
        log_path=folder / "server.log",
        env={"SESSION_MEMORY_API_KEYS": f"runs:{KEY}"},
    ) as server:
        yield server


def test_a_run_in_progress_shows(ui_server: ServerProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = f"{ui_server.base_url}/v1/sessions/chat"
    first = httpx2.post(
        base + "/items", json={"items": [{"role": "user", "content": "hi"}]}, headers=AUTH
    )
    assert first.status_code == 201
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 700})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.add_init_script(f"sessionStorage.setItem('session-memory-key', {json.dumps(KEY)})")
            page.goto(ui_server.base_url + "/ui")
            page.click("#sessions li")
            expect(page.locator("#count")).to_have_text("1 item")
            run = page.locator("#run")
            expect(run).to_be_hidden()

            lease = httpx2.post(base + "/lease", json={"ttl": 30}, headers=AUTH)
            token = {RUN_LEASE: str(lease.json()["token"]), **AUTH}
            expect(run).to_be_visible(timeout=5000)
            expect(run).to_have_text("a run is in progress")
            reply = {"items": [{"role": "assistant", "content": "hello"}]}
            assert httpx2.post(base + "/items", json=reply, headers=token).status_code == 201
            expect(page.locator("#count")).to_have_text("2 items", timeout=5000)
            expect(run).to_be_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "ui-run-in-progress.png"))

            assert httpx2.delete(base + "/lease", headers=token).status_code == 204
            expect(run).to_be_hidden(timeout=5000)

            # A lease that expires unrenewed ends too, and one held when the page opens shows.
            httpx2.post(base + "/lease", json={"ttl": 1}, headers=AUTH)
            expect(run).to_be_visible(timeout=5000)
            expect(run).to_be_hidden(timeout=5000)
            httpx2.post(base + "/lease", json={"ttl": 30}, headers=AUTH)
            page.reload()
            page.click("#sessions li")
            expect(run).to_be_visible(timeout=5000)
            assert errors == []
        finally:
            browser.close()
