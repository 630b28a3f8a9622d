/**
 * `applyHistoryTransaction` step by step on RemoteSession (a real server) and on the
 * SDK's MemorySession side by side: each step must end the same way on both (the
 * same error or none) and leave the same items.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { MemorySession, type AgentInputItem } from '@openai/agents-core';

import { RemoteSession, type HistoryTransaction } from '../src/index.js';
import { API_KEY, ServerProcess } from './server.js';

function user(text: string): AgentInputItem {
  return { role: 'user', content: text };
}

type Step =
  | { add: string[] }
  | { pop: true }
  | { clear: true }
  | { operationId: string; append: string[] }
  | { operationId: string; expected: string[]; replacement: string[] };

function transaction(step: Step): HistoryTransaction | undefined {
  if ('append' in step) return { type: 'append_items', items: step.append.map(user) };
  if ('expected' in step) {
    return {
      type: 'replace_suffix',
      expectedSuffix: step.expected.map(user),
      replacement: step.replacement.map(user),
    };
  }
  return undefined;
}

async function run(session: RemoteSession | MemorySession, step: Step): Promise<string> {
  try {
    const txn = transaction(step);
    if (txn && 'operationId' in step) {
      await session.applyHistoryTransaction({ operationId: step.operationId, transaction: txn });
    } else if ('add' in step) {
      await session.addItems(step.add.map(user));
    } else if ('clear' in step) {
      await session.clearSession();
    } else {
      await session.popItem();
    }
    return 'ok';
  } catch (error) {
    return `${(error as Error).constructor.name}: ${(error as Error).message}`;
  }
}

const SCENARIOS: Record<string, Step[]> = {
  'a replace_suffix repeated after a later append is a no-op': [
    { add: ['a', 'b', 'c'] },
    { operationId: 'compact', expected: ['b', 'c'], replacement: ['summary'] },
    { add: ['d'] },
    { operationId: 'compact', expected: ['b', 'c'], replacement: ['summary'] },
    { add: ['e'] },
    { operationId: 'compact', expected: ['b', 'c'], replacement: ['summary'] },
  ],
  'a replace_suffix that emptied the tail, repeated after appends': [
    { add: ['a', 'b'] },
    { operationId: 'drop', expected: ['b'], replacement: [] },
    { add: ['c', 'd'] },
    { operationId: 'drop', expected: ['b'], replacement: [] },
  ],
  'a replace_suffix repeated when its suffix is back is still a no-op': [
    { add: ['a', 'b'] },
    { operationId: 'r', expected: ['b'], replacement: ['x'] },
    { add: ['b'] },
    { operationId: 'r', expected: ['b'], replacement: ['x'] },
  ],
  'a replace_suffix over the whole history, repeated after an append': [
    { add: ['a', 'b'] },
    { operationId: 'all', expected: ['a', 'b'], replacement: ['s'] },
    { add: ['c'] },
    { operationId: 'all', expected: ['a', 'b'], replacement: ['s'] },
  ],
  'an operation id taken by a replace_suffix refuses another transaction': [
    { add: ['a', 'b'] },
    { operationId: 'op', expected: ['b'], replacement: ['x'] },
    { add: ['c'] },
    { operationId: 'op', expected: ['c'], replacement: ['y'] },
    { operationId: 'op', append: ['z'] },
  ],
  'an empty append takes its operation id': [
    { add: ['a'] },
    { operationId: 'empty', append: [] },
    { operationId: 'empty', append: [] },
    { operationId: 'empty', append: ['b'] },
    { operationId: 'empty', expected: ['a'], replacement: [] },
  ],
  'an empty append on a session that does not exist yet': [
    { operationId: 'first', append: [] },
    { operationId: 'first', append: ['a'] },
    { add: ['b'] },
    { operationId: 'first', append: [] },
  ],
  'a suffix that does not match, with an unused operation id': [
    { add: ['a', 'b'] },
    { operationId: 'miss', expected: ['a'], replacement: ['x'] },
    { operationId: 'miss', expected: ['b'], replacement: ['x'] },
    { pop: true },
    { operationId: 'miss', expected: ['b'], replacement: ['x'] },
  ],
  'clearSession forgets operation ids': [
    { operationId: 'kept', append: ['a'] },
    { clear: true },
    { operationId: 'kept', append: ['a'] },
    { operationId: 'kept', append: ['a'] },
  ],
};

describe('applyHistoryTransaction as MemorySession applies it', () => {
  let server: ServerProcess;
  let counter = 0;

  before(async () => {
    server = await ServerProcess.fresh('sqlite');
  });
  after(async () => {
    await server?.close();
  });

  for (const [name, steps] of Object.entries(SCENARIOS)) {
    test(name, async () => {
      const remote = new RemoteSession(`parity-${process.pid}-${++counter}`, {
        baseUrl: server.baseUrl,
        apiKey: API_KEY,
      });
      const memory = new MemorySession();
      for (const [index, step] of steps.entries()) {
        const expected = await run(memory, step);
        assert.equal(await run(remote, step), expected, `step ${index}: ${JSON.stringify(step)}`);
        assert.deepEqual(await remote.getItems(), await memory.getItems(), `items after step ${index}`);
      }
    });
  }
});
