"""The real Agents SDK Runner keeping its history in a RemoteSession."""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call
from session_memory_client import RemoteSession

set_tracing_disabled(True)


def _texts(items: list[Any]) -> list[str]:
    """The plain text of each user or assistant message in a model input or history."""
    out: list[str] = []
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [part["text"] for part in content if isinstance(part, dict) and "text" in part]
    return out


async def test_second_turn_sees_first_turn_history(remote: RemoteSession) -> None:
    model = ScriptedModel(
        [[assistant_message("Nice to meet you, Ada.")], [assistant_message("You are Ada.")]]
    )
    agent = Agent(name="assistant", model=model)

    first = await Runner.run(agent, "My name is Ada.", session=remote)
    assert first.final_output == "Nice to meet you, Ada."
    second = await Runner.run(agent, "What is my name?", session=remote)
    assert second.final_output == "You are Ada."

    assert model.last_call is not None
    seen = _texts(model.last_call.input)
    assert seen == ["My name is Ada.", "Nice to meet you, Ada.", "What is my name?"]
    history = await remote.get_items()
    assert _texts(history) == [*seen, "You are Ada."]


async def test_function_call_and_output_are_stored_together(remote: RemoteSession) -> None:
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    model = ScriptedModel(
        [
            [function_call("get_weather", {"city": "Oslo"}, call_id="call_1")],
            [assistant_message("It is sunny in Oslo.")],
            [assistant_message("I said sunny.")],
        ]
    )
    agent = Agent(name="assistant", model=model, tools=[get_weather])
    result = await Runner.run(agent, "Weather in Oslo?", session=remote)
    assert result.final_output == "It is sunny in Oslo."

    history = await remote.get_items()
    types = [item.get("type", "message") for item in history]
    assert types == ["message", "function_call", "function_call_output", "message"]
    call, output = history[1], history[2]
    assert call["call_id"] == output["call_id"] == "call_1"  # type: ignore[typeddict-item]
    assert output["output"] == "sunny in Oslo"  # type: ignore[typeddict-item]

    await Runner.run(agent, "What did you say?", session=remote)
    assert model.last_call is not None
    replayed = [item.get("type", "message") for item in model.last_call.input]
    assert replayed == [*types, "message"]
