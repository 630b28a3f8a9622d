// offline: a scripted model stands in for OpenAI; no key needed
import { Agent, Usage, run, setTracingDisabled } from '@openai/agents';
import { RemoteSession } from 'session-memory-client';

setTracingDisabled(true); // nothing is sent to OpenAI, not even traces

// The SDK's Model interface, answering each call with the next of these texts.
function scriptedModel(answers) {
  return {
    async getResponse() {
      const content = [{ type: 'output_text', text: answers.shift() }];
      const message = { type: 'message', role: 'assistant', status: 'completed', content };
      return { usage: new Usage(), output: [message] };
    },
    async *getStreamedResponse() {
      throw new Error('this example does not stream');
    },
  };
}

const agent = new Agent({ name: 'assistant', model: scriptedModel(['Hello, Ada.', 'Ada.']) });
const baseUrl = process.env.SESSION_MEMORY_BASE_URL ?? 'http://127.0.0.1:8000';
const session = new RemoteSession('offline-demo-js', { baseUrl });
await session.clearSession();
await run(agent, 'My name is Ada.', { session });
const result = await run(agent, 'What is my name?', { session });
console.log(result.finalOutput); // Ada.
// The second turn was sent the first turn's history, kept by the service:
console.log((await session.getItems()).length, 'items stored'); // 4 items stored
