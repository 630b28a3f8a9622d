"""A two-turn agent run against a live session-memory service, from the project's folder.

The service's address comes from SESSION_MEMORY_BASE_URL, as in a deployed agent.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from importlib.metadata import version

from agents import Agent, Runner, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message
from session_memory_client import RemoteSession

import app
import client


def texts(items: list[object]) -> list[str]:
    out: list[str] = []
    for item in items:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [part["text"] for part in content if isinstance(part, dict) and "text" in part]
    return out


async def main() -> None:
    set_tracing_disabled(True)
    model = ScriptedModel(
        [[assistant_message("Nice to meet you, Ada.")], [assistant_message("You are Ada.")]]
    )
    agent = Agent(name="assistant", model=model)
    async with RemoteSession(f"wheel-{uuid.uuid4()}") as session:
        await Runner.run(agent, "My name is Ada.", session=session)
        second = await Runner.run(agent, "What is my name?", session=session)
    assert second.final_output == "You are Ada.", second.final_output
    assert model.last_call is not None
    print(f"openai-agents {version('openai-agents')}")
    # The project's own app/ and client.py, not anything the wheel installed.
    modules = (("app", app), ("client", client))
    owners = [name for name, module in modules if module.OWNER == "project"]
    print("project modules: " + ", ".join(owners))
    print("second turn saw: " + " | ".join(texts(list(model.last_call.input))))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
