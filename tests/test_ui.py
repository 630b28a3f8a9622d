"""The session browser at /ui, in a real headless Chromium driven by Playwright.

Screenshots go to test-artifacts/ (kept by CI as artifacts)."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.utils.server import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEY = "ui-key-0123456789"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Chromium is not installed (apt-get install chromium); .ci/run installs it",
    ),
]
# One tenant per test below, so what one test writes never shows in another's list.
TENANTS = ["live", "folds", "scroll", "narrow", "odd", "races"]
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def key_of(tenant: str) -> str:
    return f"ui-{tenant}-key-0123456789"


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
        env={
            "SESSION_MEMORY_API_KEYS": ",".join(
                [f"viewers:{KEY}", *(f"{name}:{key_of(name)}" for name in TENANTS)]
            )
        },
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
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
            page.goto(ui_server.base_url + "/ui")
            expect(page.locator("#status")).to_contain_text("401")
            expect(page.locator("#status")).to_contain_text("API key box")
            page.fill("#key", KEY)
            page.press("#key", "Enter")
            page.dispatch_event("#key", "change")
            expect(page.locator("#sessions li")).to_have_count(2)
            expect(page.locator("#sessions li", has_text="other")).to_contain_text("1 item,")

            page.fill("#search", "topic=other")  # searched on the server, by metadata
            expect(page.locator("#sessions li")).to_have_count(1)
            expect(page.locator("#sessions li")).to_contain_text("other")
            page.fill("#search", "weather")
            expect(page.locator("#sessions li")).to_have_count(1)
            page.click("#sessions li")
            items = page.locator("#items")
            expect(page.locator("#count")).to_have_text("6 items")
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


# The tests below share one browser; each has a page of its own and a tenant of its own.


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def write(server: ServerProcess, tenant: str, session: str, items: list[Any]) -> None:
    response = httpx2.post(
        f"{server.base_url}/v1/sessions/{session}/items",
        json={"items": items},
        headers={"Authorization": f"Bearer {key_of(tenant)}"},
    )
    assert response.status_code == 201, response.text


def open_ui(browser: Any, server: ServerProcess, tenant: str, width: int = 1280) -> Any:
    """A page on /ui with the tenant's key already in the key box; page errors fail the test."""
    page = browser.new_page(viewport={"width": width, "height": 700})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    page.add_init_script(
        f"sessionStorage.setItem('session-memory-key', {json.dumps(key_of(tenant))})"
    )
    page.goto(server.base_url + "/ui")
    return page


def test_overlapping_list_loads_do_not_double_the_list(
    ui_server: ServerProcess, browser: Any
) -> None:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    for n in range(3):
        write(ui_server, "races", f"race-{n}", [{"role": "user", "content": "x"}])
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    held: list[Any] = []
    page.route("**/v1/sessions?*", lambda route: held.append(route))
    try:
        page.goto(ui_server.base_url + "/ui")  # the first load, without a key
        page.fill("#key", key_of("races"))
        page.dispatch_event("#key", "change")
        page.dispatch_event("#key", "change")
        while len(held) < 3:
            page.wait_for_timeout(20)
        # The answers arrive newest first, then the older ones: only the newest counts.
        page.unroute("**/v1/sessions?*")
        for route in reversed(held):
            # A load the page has cancelled already counts as handled.
            with contextlib.suppress(PlaywrightError):
                route.continue_()
        expect(page.locator("#sessions li")).to_have_count(3)
        page.wait_for_load_state("networkidle")
        expect(page.locator("#sessions li")).to_have_count(3)
        expect(page.locator("#status")).to_have_text("")
    finally:
        page.close()


def test_the_session_list_is_live(ui_server: ServerProcess, browser: Any) -> None:
    from playwright.sync_api import expect

    write(ui_server, "live", "first", [{"role": "user", "content": "x"}])
    page = open_ui(browser, ui_server, "live")
    try:
        expect(page.locator("#sessions li")).to_have_count(1)
        write(ui_server, "live", "second", [{"role": "user", "content": "y"}] * 2)
        expect(page.locator("#sessions li")).to_have_count(2, timeout=10_000)
        expect(page.locator("#sessions li", has_text="second")).to_contain_text("2 items")
        assert page.errors == []
    finally:
        page.close()


def test_an_opened_fold_stays_open_across_refreshes(ui_server: ServerProcess, browser: Any) -> None:
    from playwright.sync_api import expect

    write(ui_server, "folds", "thinking", CONVERSATION[:2])
    page = open_ui(browser, ui_server, "folds")
    try:
        page.click("#sessions li")
        fold = page.locator("#items details.reasoning")
        fold.locator("summary").click()
        expect(fold).to_have_attribute("open", "")
        write(ui_server, "folds", "thinking", [{"role": "assistant", "content": "later"}])
        expect(page.locator("#items .msg.assistant")).to_contain_text("later", timeout=5000)
        expect(fold).to_have_attribute("open", "")
        fold.locator("summary").click()  # closed by the reader: stays closed too
        write(ui_server, "folds", "thinking", [{"role": "assistant", "content": "and more"}])
        expect(page.locator("#items .msg.assistant").last).to_contain_text("and more")
        assert fold.get_attribute("open") is None
    finally:
        page.close()


def test_new_items_scroll_into_view_only_for_a_reader_at_the_bottom(
    ui_server: ServerProcess, browser: Any
) -> None:
    from playwright.sync_api import expect

    write(
        ui_server, "scroll", "long", [{"role": "user", "content": f"line {n}"} for n in range(60)]
    )
    page = open_ui(browser, ui_server, "scroll")
    try:
        page.click("#sessions li")
        expect(page.locator("#count")).to_have_text("60 items")
        pane = page.locator("section")
        pane.evaluate("node => { node.scrollTop = node.scrollHeight; }")
        write(ui_server, "scroll", "long", [{"role": "user", "content": "newest at the end"}])
        newest = page.locator("#items .msg", has_text="newest at the end")
        expect(newest).to_be_in_viewport(timeout=5000)
        gap = "node => node.scrollHeight - node.scrollTop - node.clientHeight"
        assert pane.evaluate(gap) < 5  # still following: at the very bottom

        pane.evaluate("node => { node.scrollTop = 0; }")
        write(ui_server, "scroll", "long", [{"role": "user", "content": "while reading above"}])
        expect(page.locator("#count")).to_have_text("62 items", timeout=5000)
        assert pane.evaluate("node => node.scrollTop") == 0
        expect(page.locator("#items .msg").first).to_be_in_viewport()
    finally:
        page.close()


def test_the_layout_works_at_360_pixels(ui_server: ServerProcess, browser: Any) -> None:
    from playwright.sync_api import expect

    name = "a rather long session name that has to wrap on a phone"
    write(ui_server, "narrow", name, CONVERSATION)
    page = open_ui(browser, ui_server, "narrow", width=360)
    try:
        page.click("#sessions li")
        expect(page.locator("#items .msg.assistant")).to_contain_text("It is sunny in Oslo.")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        title = page.locator("#title").bounding_box()
        assert title is not None
        assert title["width"] > 200  # words on a line, not one letter per line
        assert page.locator("#key").bounding_box()["width"] <= 360  # type: ignore[index]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-360px.png"), full_page=True)
    finally:
        page.close()


def test_odd_items_do_not_hide_the_ones_after_them(ui_server: ServerProcess, browser: Any) -> None:
    from playwright.sync_api import expect

    write(
        ui_server,
        "odd",
        "odd",
        [
            {"role": "user", "content": [None]},
            {"type": "reasoning", "summary": [None]},
            {"role": "assistant", "content": [None, {"type": "output_text", "text": "kept"}]},
            {"role": "user", "content": "after the odd ones"},
        ],
    )
    page = open_ui(browser, ui_server, "odd")
    try:
        page.click("#sessions li")
        expect(page.locator("#items .msg.user").last).to_contain_text("after the odd ones")
        expect(page.locator("#items .msg.assistant")).to_contain_text("kept")
        expect(page.locator("#items details.reasoning")).to_have_count(1)
        assert page.errors == []
    finally:
        page.close()
