"""One history, two SDKs: Python and JavaScript Runner turns with tool calls on one session.

The JavaScript turn runs the real JS Agents SDK Runner with client-js's RemoteSession
(client-js/test/fixtures/jsTurn.ts, compiled by ``make test-js`` or, when missing, here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, TResponseInputItem, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call
from pydantic import TypeAdapter
from session_memory_client import RemoteSession

from tests.utils.server import ServerProcess

set_tracing_disabled(True)

CLIENT_JS = Path(__file__).resolve().parent.parent / "client-js"
JS_TURN = CLIENT_JS / "dist" / "test" / "fixtures" / "jsTurn.js"


@pytest.fixture(scope="session")
def js_turn() -> Path:
    """The compiled JS turn script, built from the lock file if it is not there yet."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the cross-language test")
    if not JS_TURN.exists():
        if not (CLIENT_JS / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT_JS, check=True)
        subprocess.run(["npx", "tsc", "-p", "tsconfig.json"], cwd=CLIENT_JS, check=True)
    return JS_TURN


def _run_js_turn(script: Path, server: ServerProcess, session_id: str, text: str) -> Any:
    done = subprocess.run(
        ["node", str(script), server.base_url, session_id, "", text],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_python_and_js_turns_share_tool_calls(
    js_turn: Path, server: ServerProcess, remote: RemoteSession
) -> None:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    python_model = ScriptedModel(
        [
            [function_call("get_weather", {"city": "Oslo"}, call_id="call_py_1")],
            [assistant_message("Python: sunny in Oslo.")],
            [assistant_message("Python: JS added 2 and 3.")],
        ]
    )
    agent = Agent(name="py-assistant", model=python_model, tools=[get_weather])
    first = await Runner.run(agent, "Weather in Oslo?", session=remote)
    assert first.final_output == "Python: sunny in Oslo."

    # The JS turn: its model sees the Python turn's items in the JS SDK's own form.
    js = _run_js_turn(js_turn, server, remote.session_id, "And 2 + 3?")
    assert js["finalOutput"] == "JS says 2 + 3 = 5."
    seen = js["modelInput"]
    assert [item.get("type", "message") for item in seen] == [
        "message",
        "function_call",
        "function_call_result",
        "message",
        "message",
    ]
    call, result = seen[1], seen[2]
    assert call["callId"] == "call_py_1"
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Oslo"}
    assert "call_id" not in call
    assert result["callId"] == "call_py_1"
    assert result["name"] == "get_weather"
    assert result["status"] == "completed"
    assert result["output"] == {"type": "text", "text": "sunny in Oslo"}
    assert seen[3]["role"] == "assistant"
    assert seen[3]["content"][0]["text"] == "Python: sunny in Oslo."
    assert seen[4]["content"] == "And 2 + 3?"

    # The next Python turn sees the JS turn's tool call and output, in Python's shape.
    third = await Runner.run(agent, "What did the other agent compute?", session=remote)
    assert third.final_output == "Python: JS added 2 and 3."
    assert python_model.last_call is not None
    replayed = python_model.last_call.input
    assert isinstance(replayed, list)
    js_items = [item for item in replayed if item.get("call_id") == "call_js_1"]
    assert [item.get("type") for item in js_items] == ["function_call", "function_call_output"]
    js_call, js_output = js_items
    assert js_call["name"] == "add"  # type: ignore[typeddict-item]
    assert json.loads(js_call["arguments"]) == {"a": 2, "b": 3}  # type: ignore[typeddict-item]
    assert js_output == {"type": "function_call_output", "call_id": "call_js_1", "output": "5"}

    # The stored history reads the same from both clients, in one order.
    history = await remote.get_items()
    assert [item.get("type", "message") for item in history] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
    ]


COPY_ITEMS = CLIENT_JS / "dist" / "test" / "fixtures" / "copyItems.js"
_ADAPTER: TypeAdapter[Any] = TypeAdapter(list[TResponseInputItem])

# Python-written items, as the Python SDK and openai-python's types spell them,
# with the forms a JS read once lost (status and name on an output, numbers, file data).
PYTHON_ITEMS: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather?"},
    {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "see"},
            {"type": "input_image", "file_id": "file_1", "detail": "auto"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            {"type": "input_file", "file_data": "aGVsbG8g\nd29ybGQ=", "filename": "a.txt"},
            {"type": "input_file", "file_url": "https://example.com/a.pdf"},
        ],
    },
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hi.", "annotations": [], "logprobs": []}],
    },
    {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "x", "status": "completed"},
    {"type": "function_call_output", "call_id": "c1", "output": "y", "name": "f"},
    {
        "type": "file_search_call",
        "id": "fs_1",
        "queries": ["q"],
        "status": "completed",
        "results": [{"score": 1.0, "attributes": {"big": 2**64 + 1, "neg": -0.0}, "file_id": "f"}],
    },
    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}]},
    {"type": "compaction", "id": "cmp_1", "encrypted_content": "enc"},
    {"type": "item_reference", "id": "msg_0"},
]

# JS-written items in the spellings the JS SDK and its users write.
JS_ITEMS: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "input_image", "image": {"id": "file_9"}}]},
    {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": "by hand"}],
    },
    {"type": "function_call", "callId": "c9", "name": "g", "arguments": "{}"},
    {
        "type": "function_call_result",
        "callId": "c9",
        "name": "g",
        "status": "completed",
        "output": "s",
    },
    {"role": "user", "content": [{"type": "input_file", "file": "https://example.com/x.pdf"}]},
]


def _node(*args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["node", str(COPY_ITEMS), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_python_items_survive_a_typescript_read_and_write(
    js_turn: Path, server: ServerProcess, remote: RemoteSession
) -> None:
    await remote.add_items(PYTHON_ITEMS)  # type: ignore[arg-type]
    target = f"{remote.session_id}-copy"
    _node(server.base_url, "copy", remote.session_id, target)
    async with RemoteSession(target, base_url=server.base_url) as copy:
        back = await copy.get_items()
    # json.dumps tells 1.0 from 1 and -0.0 from 0, which == does not.
    assert json.dumps(back, sort_keys=True) == json.dumps(PYTHON_ITEMS, sort_keys=True)


async def test_typescript_items_are_python_sdk_items_and_read_back_exactly(
    js_turn: Path, server: ServerProcess, remote: RemoteSession
) -> None:
    _node(server.base_url, "write", remote.session_id, stdin=json.dumps(JS_ITEMS))
    stored = await remote.get_items()
    _ADAPTER.validate_python(stored)
    assert stored[0]["content"][0] == {  # type: ignore[typeddict-item,index]
        "type": "input_image",
        "file_id": "file_9",
        "detail": "auto",
    }
    assert json.loads(_node(server.base_url, "read", remote.session_id)) == JS_ITEMS
