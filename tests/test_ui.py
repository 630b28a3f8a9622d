"""The session browser at /ui, in a real headless Chromium driven by Playwright.

Screenshots go to test-artifacts/ (kept by CI as artifacts)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.utils.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "ui-key-0123456789"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium); .ci/run installs it",
)

CONVERSATION = [
    {"role": "user", "content": "What's the weather in Oslo?"},
    {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Need the weather tool."}],
    },
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Oslo"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "It is sunny in Oslo.", "annotations": []}],
    },
    {"role": "user", "content": "<script>alert('x')</script> stays text"},
]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("ui")
    with ServerProcess(
        f"sqlite:///{folder}/u.db",
        log_path=folder / "server.log",
        env={"SESSION_MEMORY_API_KEYS": f"viewers:{KEY}"},
    ) as server:
        auth = {"Authorization": f"Bearer {KEY}"}
        for name, items in (
            ("weather chat", CONVERSATION),
            ("other", [{"role": "user", "content": "hi"}]),
        ):
            response = httpx2.post(
                f"{server.base_url}/v1/sessions/{name}/items",
                json={"items": items},
                headers={**auth, "Session-Metadata": f'{{"topic": "{name}"}}'},
            )
            assert response.status_code == 201
        yield server


def test_browse_a_conversation(ui_server: ServerProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
            page.goto(ui_server.base_url + "/ui")
            expect(page.locator("#status")).to_contain_text("401")
            page.fill("#key", KEY)
            page.press("#key", "Enter")
            page.dispatch_event("#key", "change")
            expect(page.locator("#sessions li")).to_have_count(2)

            page.fill("#search", "topic=other")  # searched on the server, by metadata
            expect(page.locator("#sessions li")).to_have_count(1)
            expect(page.locator("#sessions li")).to_contain_text("other")
            page.fill("#search", "weather")
            expect(page.locator("#sessions li")).to_have_count(1)
            page.click("#sessions li")
            items = page.locator("#items")
            expect(items.locator(".msg.user").first).to_contain_text("What's the weather in Oslo?")
            expect(items.locator(".msg.assistant")).to_contain_text("It is sunny in Oslo.")
            tool = items.locator(".msg.tool")
            expect(tool).to_have_count(1)  # the output sits with its call
            expect(tool).to_contain_text('get_weather({"city": "Oslo"})')
            expect(tool).to_contain_text("sunny, 21 C")
            reasoning = items.locator("details.reasoning")
            expect(reasoning).to_contain_text("Need the weather tool.")
            assert reasoning.get_attribute("open") is None  # folded
            expect(items.locator(".msg.user").last).to_contain_text("<script>alert('x')</script>")
            page.screenshot(path=str(ARTIFACTS / "ui-conversation.png"), full_page=True)

            # Live refresh: an item written elsewhere shows up by itself.
            httpx2.post(
                f"{ui_server.base_url}/v1/sessions/weather chat/items",
                json={"items": [{"role": "assistant", "content": "Anything else?"}]},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            expect(items.locator(".msg.assistant").last).to_contain_text(
                "Anything else?", timeout=5000
            )

            page.check("#raw")
            expect(items.locator("pre.raw")).to_contain_text('"call_id": "call_1"')
            page.screenshot(path=str(ARTIFACTS / "ui-raw.png"), full_page=True)
        finally:
            browser.close()

    # Read-only, and nothing fetched from anywhere but the service itself.
    assert all(line.startswith("GET ") for line in requests)
    assert all(ui_server.base_url in line for line in requests)
