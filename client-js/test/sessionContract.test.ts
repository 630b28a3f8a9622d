/**
 * The SDK's Session contract as MemorySession keeps it, held against RemoteSession
 * on a real server: items read back deep-equal, history rewrites, and the
 * transaction argument checks (invalid data, unsupported values, redaction).
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemorySession, UserError, type AgentInputItem } from '@openai/agents-core';

import { RemoteSession } from '../src/index.js';
import { API_KEY, ServerProcess } from './server.js';

const ITEMS = [
  { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'hi' }] },
  { type: 'function_call', callId: 'c1', name: 'f', arguments: '{"a":1}' },
  { type: 'function_call_result', callId: 'c1', name: 'f', status: 'completed', output: 'plain' },
  { role: 'user', content: [{ type: 'input_file', file: 'https://example.com/a.pdf' }] },
] as AgentInputItem[];

const INVALID = 'Session history transaction items contain invalid or unsupported data.';

async function outcome(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => 'ok',
    (error: unknown) => `${(error as Error).constructor.name}: ${(error as Error).message}`,
  );
}

describe('RemoteSession behaves as MemorySession', () => {
  let server: ServerProcess;
  let counter = 0;
  const open = () =>
    new RemoteSession(`contract-${process.pid}-${++counter}`, { baseUrl: server.baseUrl, apiKey: API_KEY });

  before(async () => {
    server = await ServerProcess.fresh('sqlite');
  });
  after(async () => {
    await server?.close();
  });

  test('items read back deep-equal to what was written', async () => {
    const session = open();
    await session.addItems(ITEMS);
    assert.deepEqual(await session.getItems(), ITEMS);
    assert.deepEqual(await session.popItem(), ITEMS[3]);
  });

  test('applyHistoryMutations rewrites a function call as MemorySession does', async () => {
    const remote = open();
    const memory = new MemorySession();
    const args = {
      mutations: [
        {
          type: 'replace_function_call' as const,
          callId: 'c1',
          replacement: { type: 'function_call' as const, callId: 'c1', name: 'f', arguments: '{"a":2}' },
        },
      ],
    };
    for (const session of [remote, memory]) {
      await session.addItems(ITEMS);
      await session.applyHistoryMutations(args);
    }
    const rewritten = await remote.getItems();
    assert.equal((rewritten[1] as { arguments: string }).arguments, '{"a":2}');
    assert.deepEqual(rewritten, await memory.getItems());
  });

  test('transaction arguments are refused with the same errors', async () => {
    const cases: Record<string, unknown> = {
      'a non-object item': { operationId: 'a', transaction: { type: 'append_items', items: [42] } },
      'a Date': {
        operationId: 'b',
        transaction: { type: 'append_items', items: [{ role: 'user', content: 'x', providerData: { at: new Date(0) } }] },
      },
      'a non-enumerable property': {
        operationId: 'c',
        transaction: {
          type: 'append_items',
          items: [Object.defineProperty({ role: 'user', content: 'x' }, 'hidden', { value: 1, enumerable: false })],
        },
      },
      'a sparse array': { operationId: 'd', transaction: { type: 'append_items', items: [, { role: 'user', content: 'x' }] } },
      'a Proxy array': {
        operationId: 'e',
        transaction: { type: 'append_items', items: new Proxy([{ role: 'user', content: 'x' }], {}) },
      },
      'a throwing operationId getter': {
        get operationId(): string {
          throw new Error('secret token sk-123');
        },
        transaction: { type: 'append_items', items: [] },
      },
    };
    const remote = open();
    for (const [name, args] of Object.entries(cases)) {
      const memory = new MemorySession();
      const expected = await outcome(Promise.resolve().then(() => memory.applyHistoryTransaction(args as never)));
      const actual = await outcome(remote.applyHistoryTransaction(args as never));
      assert.equal(actual, expected, name);
      assert.match(actual, /^UserError/, name);
      assert.doesNotMatch(actual, /secret/, name);
    }
    assert.deepEqual(await remote.getItems(), []);
  });

  test('a non-object item gives the invalid-data error', async () => {
    const error = await open()
      .applyHistoryTransaction({ operationId: 'x', transaction: { type: 'append_items', items: ['no' as never] } })
      .catch((e: unknown) => e);
    assert.ok(error instanceof UserError);
    assert.equal(error.message, INVALID);
  });
});
