/**
 * History transactions against real servers on SQLite and PostgreSQL: the SDK's
 * `applyHistoryTransaction` (append, replace_suffix) and `replaceHistoryWithCompaction`
 * on the service's atomic replace, If-Match and Idempotency-Key replay.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { UserError, type AgentInputItem } from '@openai/agents-core';

import {
  ALREADY_APPLIED,
  canonicalItems,
  canonicalJson,
  operationKey,
  RemoteSession,
  SUFFIX_MISMATCH,
  type RemoteSessionOptions,
} from '../src/index.js';
import { API_KEY, postgresUnavailable, ServerProcess, type Backend } from './server.js';

function user(text: string): AgentInputItem {
  return { role: 'user', content: text };
}

function texts(items: AgentInputItem[]): unknown[] {
  return items.map((item) => ('content' in item ? item.content : item.type));
}

function isUserError(message: string) {
  return (error: unknown) => error instanceof UserError && error.message === message;
}

test('operation keys: visible ASCII, stable, distinct per session and per operation id', async () => {
  const key = await operationKey('s', 'op 1 ✓');
  assert.match(key, /^op-[A-Za-z0-9_-]{43}$/);
  assert.equal(await operationKey('s', 'op 1 ✓'), key);
  assert.notEqual(await operationKey('t', 'op 1 ✓'), key);
  assert.notEqual(await operationKey('s', 'op 2'), key);
  // Not fooled by a separator inside an id.
  assert.notEqual(await operationKey('a","b', 'c'), await operationKey('a', 'b","c'));
});

test('canonical JSON sorts keys at every depth and drops undefined members', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: 2, c: undefined, a: 1 }] }), '{"a":[{"a":1,"d":2}],"b":1}');
  assert.throws(() => canonicalJson({ a: Number.NaN }), TypeError);
});

for (const backend of ['sqlite', 'postgres'] as Backend[]) {
  describe(`history transactions on ${backend}`, { skip: backend === 'postgres' && postgresUnavailable() }, () => {
    let server: ServerProcess;
    let counter = 0;
    const open = (options: RemoteSessionOptions = {}, id?: string) =>
      new RemoteSession(id ?? `txn-${process.pid}-${++counter}-${Date.now()}`, {
        baseUrl: server.baseUrl,
        apiKey: API_KEY,
        ...options,
      });

    before(async () => {
      server = await ServerProcess.fresh(backend);
    });
    after(async () => {
      await server?.close();
    });

    test('append_items appends once; the same operation id again is a no-op', async () => {
      const session = open();
      await session.addItems([user('a')]);
      const args = { operationId: 'turn-1', transaction: { type: 'append_items' as const, items: [user('b'), user('c')] } };
      await session.applyHistoryTransaction(args);
      assert.deepEqual(texts(await session.getItems()), ['a', 'b', 'c']);
      // The same transaction, built with its keys in another order: still the same one.
      await session.applyHistoryTransaction({
        transaction: { items: [{ content: 'b', role: 'user' }, user('c')], type: 'append_items' },
        operationId: 'turn-1',
      });
      assert.deepEqual(texts(await session.getItems()), ['a', 'b', 'c']);
    });

    test('an operation id reused for another transaction is refused and changes nothing', async () => {
      const session = open();
      await session.applyHistoryTransaction({
        operationId: 'op',
        transaction: { type: 'append_items', items: [user('a')] },
      });
      await assert.rejects(
        session.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'append_items', items: [user('b')] } }),
        isUserError(ALREADY_APPLIED),
      );
      await assert.rejects(
        session.applyHistoryTransaction({
          operationId: 'op',
          transaction: { type: 'replace_suffix', expectedSuffix: [user('a')], replacement: [user('z')] },
        }),
        isUserError(ALREADY_APPLIED),
      );
      assert.deepEqual(texts(await session.getItems()), ['a']);
      // The same operation id on another session is another operation.
      const other = open();
      await other.applyHistoryTransaction({ operationId: 'op', transaction: { type: 'append_items', items: [user('b')] } });
      assert.deepEqual(texts(await other.getItems()), ['b']);
    });

    test('replace_suffix replaces exactly the expected suffix, keeping the prefix', async () => {
      const session = open();
      await session.addItems(['a', 'b', 'c'].map(user));
      await session.applyHistoryTransaction({
        operationId: 'r1',
        transaction: { type: 'replace_suffix', expectedSuffix: [user('b'), user('c')], replacement: [user('x'), user('y')] },
      });
      assert.deepEqual(texts(await session.getItems()), ['a', 'x', 'y']);
      // An empty expected suffix appends; an empty replacement removes the suffix.
      await session.applyHistoryTransaction({
        operationId: 'r2',
        transaction: { type: 'replace_suffix', expectedSuffix: [], replacement: [user('z')] },
      });
      await session.applyHistoryTransaction({
        operationId: 'r3',
        transaction: { type: 'replace_suffix', expectedSuffix: [user('y'), user('z')], replacement: [] },
      });
      assert.deepEqual(texts(await session.getItems()), ['a', 'x']);
      // The whole history as the suffix.
      await session.applyHistoryTransaction({
        operationId: 'r4',
        transaction: { type: 'replace_suffix', expectedSuffix: [user('a'), user('x')], replacement: [user('w')] },
      });
      assert.deepEqual(texts(await session.getItems()), ['w']);
    });

    test('replace_suffix with tool items compares them in the form the service gives back', async () => {
      const session = open();
      const call: AgentInputItem = { type: 'function_call', callId: 'c1', name: 'f', arguments: '{}', status: 'completed' };
      const result: AgentInputItem = {
        type: 'function_call_result',
        callId: 'c1',
        name: 'f',
        status: 'completed',
        output: { type: 'text', text: 'ok' },
      };
      await session.addItems([user('q'), call, result]);
      await session.applyHistoryTransaction({
        operationId: 'tools',
        transaction: { type: 'replace_suffix', expectedSuffix: [call, result], replacement: [user('summary')] },
      });
      assert.deepEqual(texts(await session.getItems()), ['q', 'summary']);
    });

    test('a mismatched suffix throws and changes nothing, nor uses up the operation id', async () => {
      const session = open();
      await session.addItems(['a', 'b'].map(user));
      for (const expectedSuffix of [[user('a')], [user('x'), user('a'), user('b')], [user('c'), user('b')]]) {
        await assert.rejects(
          session.applyHistoryTransaction({
            operationId: 'm',
            transaction: { type: 'replace_suffix', expectedSuffix, replacement: [user('z')] },
          }),
          isUserError(SUFFIX_MISMATCH),
        );
      }
      assert.deepEqual(texts(await session.getItems()), ['a', 'b']);
      await assert.rejects(
        open().applyHistoryTransaction({
          operationId: 'm',
          transaction: { type: 'replace_suffix', expectedSuffix: [user('a')], replacement: [] },
        }),
        isUserError(SUFFIX_MISMATCH),
      );
      // Nothing was recorded under the id: it still works for a transaction that matches.
      await session.applyHistoryTransaction({
        operationId: 'm',
        transaction: { type: 'replace_suffix', expectedSuffix: [user('b')], replacement: [user('z')] },
      });
      assert.deepEqual(texts(await session.getItems()), ['a', 'z']);
    });

    test('replace_suffix repeated with the same operation id is a no-op', async () => {
      for (const prefix of [['p'], []]) {
        const session = open();
        await session.addItems([...prefix, 'b', 'c'].map(user));
        const args = {
          operationId: 'once',
          transaction: {
            type: 'replace_suffix' as const,
            expectedSuffix: [user('b'), user('c')],
            replacement: [user('x')],
          },
        };
        await session.applyHistoryTransaction(args);
        const after = await session.getStoredItems();
        await session.applyHistoryTransaction(args);
        await session.applyHistoryTransaction(structuredClone(args));
        assert.deepEqual(await session.getStoredItems(), after);
        assert.deepEqual(texts(await session.getItems()), [...prefix, 'x']);
        // An empty replacement too: the item before it says where it was.
        await session.applyHistoryTransaction({
          operationId: 'drop',
          transaction: { type: 'replace_suffix', expectedSuffix: [user('x')], replacement: [] },
        });
        await session.applyHistoryTransaction({
          operationId: 'drop',
          transaction: { type: 'replace_suffix', expectedSuffix: [user('x')], replacement: [] },
        });
        assert.deepEqual(texts(await session.getItems()), prefix);
      }
    });

    test('an append landing between the read and the replace is never lost', async () => {
      const writer = open();
      let appended = false;
      // Another client appends right before the replace reaches the service.
      const session = open(
        {
          fetch: async (input, init) => {
            if (init?.method === 'PUT' && !appended) {
              appended = true;
              await writer.addItems([user('concurrent')]);
            }
            return fetch(input, init);
          },
        },
        writer.sessionId,
      );
      await session.addItems(['a', 'b'].map(user));
      await assert.rejects(
        session.applyHistoryTransaction({
          operationId: 'race',
          transaction: { type: 'replace_suffix', expectedSuffix: [user('b')], replacement: [user('x')] },
        }),
        isUserError(SUFFIX_MISMATCH),
      );
      assert.ok(appended);
      assert.deepEqual(texts(await session.getItems()), ['a', 'b', 'concurrent']);
    });

    test('a write that leaves the suffix in place is re-checked, and the replace lands', async () => {
      const writer = open();
      let raced = false;
      const session = open(
        {
          fetch: async (input, init) => {
            if (init?.method === 'PUT' && !raced) {
              raced = true;
              // The ETag moves on (a push and a pop) but the history reads the same.
              await writer.addItems([user('gone')]);
              await writer.popItem();
            }
            return fetch(input, init);
          },
        },
        writer.sessionId,
      );
      await session.addItems(['a', 'b'].map(user));
      await session.applyHistoryTransaction({
        operationId: 'retry',
        transaction: { type: 'replace_suffix', expectedSuffix: [user('b')], replacement: [user('x')] },
      });
      assert.ok(raced);
      assert.deepEqual(texts(await session.getItems()), ['a', 'x']);
    });

    test('concurrent appends and suffix replaces: every appended item is kept exactly once', async () => {
      const id = open().sessionId;
      const appender = open({}, id);
      const replacer = open({}, id);
      await appender.addItems([user('seed')]);
      const appends = Array.from({ length: 20 }, (_, i) => appender.addItems([user(`n${i}`)]));
      let replaced = 0;
      const replaces = Array.from({ length: 20 }, async (_, i) => {
        const [last] = await replacer.getItems(1);
        try {
          await replacer.applyHistoryTransaction({
            operationId: `swap-${i}`,
            transaction: { type: 'replace_suffix', expectedSuffix: [last!], replacement: [last!, user(`r${i}`)] },
          });
          replaced++;
        } catch (error) {
          if (!(error instanceof UserError) || error.message !== SUFFIX_MISMATCH) throw error;
        }
      });
      await Promise.all([...appends, ...replaces]);
      const all = texts(await replacer.getItems()) as string[];
      for (let i = 0; i < 20; i++) assert.equal(all.filter((t) => t === `n${i}`).length, 1, `n${i} in ${all}`);
      assert.equal(all.filter((t) => t.startsWith('r')).length, replaced);
      assert.equal(all.filter((t) => t === 'seed').length, 1);
    });

    test('replace_suffix reads a suffix longer than one page at one revision', async () => {
      const session = open();
      // Items of ~200 KB: the service stops a page early at its byte bound.
      const big = (n: number) => user(`${n}`.padEnd(200_000, '.'));
      const items = [0, 1, 2, 3, 4, 5].map(big);
      await session.addItems(items.slice(0, 3));
      await session.addItems(items.slice(3));
      await session.applyHistoryTransaction({
        operationId: 'long',
        transaction: { type: 'replace_suffix', expectedSuffix: items.slice(1), replacement: [user('short')] },
      });
      assert.deepEqual(texts(await session.getItems()), [(items[0] as { content: string }).content, 'short']);
    });

    test('invalid transactions are refused before anything is sent', async () => {
      let calls = 0;
      const session = open({ fetch: (input, init) => (calls++, fetch(input, init)) });
      const bad: unknown[] = [
        undefined,
        { operationId: ' ', transaction: { type: 'append_items', items: [] } },
        { operationId: 'x', transaction: { type: 'append_items', items: [], extra: 1 } },
        { operationId: 'x', transaction: { type: 'replace_suffix', expectedSuffix: [] } },
        { operationId: 'x', transaction: { type: 'delete' } },
        { operationId: 'x', transaction: { type: 'append_items', items: [{ role: 'user', content: 1n }] } },
      ];
      for (const args of bad) {
        await assert.rejects(session.applyHistoryTransaction(args as never), UserError);
      }
      assert.equal(calls, 0);
    });

    test('replaceHistoryWithCompaction swaps the whole history in one step', async () => {
      const session = open();
      await session.addItems(['a', 'b', 'c'].map(user));
      const compacted: AgentInputItem[] = [
        { type: 'compaction', encrypted_content: 'opaque-summary' } as AgentInputItem,
        user('c'),
      ];
      await session.replaceHistoryWithCompaction(compacted);
      assert.deepEqual(await session.getItems(), canonicalItems(compacted));
      assert.deepEqual(texts(await session.getItems()), ['compaction', 'c']);
      await session.replaceHistoryWithCompaction([]);
      assert.deepEqual(await session.getItems(), []);
    });
  });
}
