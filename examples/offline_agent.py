# offline: a scripted model stands in for OpenAI; no key needed
import asyncio
import os

from agents import Agent, Runner, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message
from session_memory_client import RemoteSession

set_tracing_disabled(True)  # nothing is sent to OpenAI, not even traces


async def main() -> None:
    model = ScriptedModel([[assistant_message("Hello, Ada.")], [assistant_message("Ada.")]])
    agent = Agent(name="assistant", model=model)
    base_url = os.environ.get("SESSION_MEMORY_BASE_URL", "http://127.0.0.1:8000")
    async with RemoteSession("offline-demo", base_url=base_url) as session:
        await session.clear_session()
        await Runner.run(agent, "My name is Ada.", session=session)
        result = await Runner.run(agent, "What is my name?", session=session)
        print(result.final_output)  # Ada.
        # The second turn was sent the first turn's history, kept by the service:
        print(len(await session.get_items()), "items stored")  # 4 items stored


asyncio.run(main())
