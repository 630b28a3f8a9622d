/** The real JS Agents SDK Runner keeping its history in a RemoteSession on a real server. */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Agent, Runner, setTracingDisabled, tool, type AgentOutputItem } from '@openai/agents-core';
import { z } from 'zod';

import { RemoteSession } from '../src/index.js';
import { assistantMessage, functionCall, ScriptedModel } from './fixtures/scriptedModel.js';
import { API_KEY, ServerProcess } from './server.js';

setTracingDisabled(true);

let server: ServerProcess;
before(async () => {
  server = await ServerProcess.fresh('sqlite');
});
after(async () => {
  await server?.close();
});

function texts(items: readonly unknown[]): string[] {
  const out: string[] = [];
  for (const item of items as { content?: unknown }[]) {
    if (typeof item.content === 'string') out.push(item.content);
    else if (Array.isArray(item.content)) {
      for (const part of item.content as { text?: string }[]) if (part.text) out.push(part.text);
    }
  }
  return out;
}

test('two Runner turns: the second sees the first, tool call and output included', async () => {
  const getWeather = tool({
    name: 'get_weather',
    description: 'Weather for a city.',
    parameters: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}`,
  });
  const model = new ScriptedModel([
    [functionCall('get_weather', { city: 'Oslo' }, 'call_1')],
    [assistantMessage('It is sunny in Oslo.')],
    [assistantMessage('I said sunny.')],
  ]);
  const agent = new Agent({ name: 'assistant', model, tools: [getWeather] });
  const session = new RemoteSession(`runner-${Date.now()}`, { baseUrl: server.baseUrl, apiKey: API_KEY });
  const runner = new Runner();

  const first = await runner.run(agent, 'Weather in Oslo?', { session });
  assert.equal(first.finalOutput, 'It is sunny in Oslo.');
  const second = await runner.run(agent, 'What did you say?', { session });
  assert.equal(second.finalOutput, 'I said sunny.');

  const seen = model.calls.at(-1)!.input as Record<string, unknown>[];
  assert.deepEqual(
    seen.map((item) => item.type ?? 'message'),
    ['message', 'function_call', 'function_call_result', 'message', 'message'],
  );
  assert.deepEqual(texts(seen), ['Weather in Oslo?', 'It is sunny in Oslo.', 'What did you say?']);
  assert.equal(seen[1]!.callId, 'call_1');
  assert.equal(seen[2]!.callId, 'call_1');
  assert.equal(seen[2]!.name, 'get_weather');
  assert.deepEqual(seen[2]!.output, { type: 'text', text: 'sunny in Oslo' });

  // On the server: the Responses shape, as the Python SDK would have written it.
  const stored = await session.getStoredItems();
  assert.deepEqual(
    stored.map((item) => item.type ?? 'message'),
    ['message', 'function_call', 'function_call_output', 'message', 'message', 'message'],
  );
  assert.deepEqual(stored[2], { type: 'function_call_output', call_id: 'call_1', output: 'sunny in Oslo' });
  assert.equal(stored[1]!.call_id, 'call_1');
});

test('a model turn that returns a compaction item replaces the history in one PUT', async () => {
  const compaction = { type: 'compaction', id: 'cmp_1', encrypted_content: 'summary-of-turn-1' } as AgentOutputItem;
  const model = new ScriptedModel([
    [assistantMessage('First answer.')],
    [compaction, assistantMessage('Second answer.')],
    [assistantMessage('Third answer.')],
  ]);
  const agent = new Agent({ name: 'assistant', model });
  const methods: string[] = [];
  const session = new RemoteSession(`compaction-${Date.now()}`, {
    baseUrl: server.baseUrl,
    apiKey: API_KEY,
    fetch: (input, init) => (methods.push(init?.method ?? 'GET'), fetch(input, init)),
  });
  const runner = new Runner();
  await runner.run(agent, 'one', { session });
  await runner.run(agent, 'two', { session });

  // The compaction item and what follows it, swapped in atomically: no clear, no re-add.
  assert.ok(methods.includes('PUT'), `methods: ${methods}`);
  assert.ok(!methods.includes('DELETE'), `methods: ${methods}`);
  const stored = await session.getStoredItems();
  assert.deepEqual(stored.map((item) => item.type ?? 'message'), ['compaction', 'message']);
  assert.equal(stored[0]!.encrypted_content, 'summary-of-turn-1');

  // The next turn's model input starts at the compaction item.
  await runner.run(agent, 'three', { session });
  const seen = model.calls.at(-1)!.input as Record<string, unknown>[];
  assert.deepEqual(seen.map((item) => item.type ?? 'message'), ['compaction', 'message', 'message']);
  assert.deepEqual(texts(seen), ['Second answer.', 'three']);
});
