/**
 * The contract the Python client's tests hold the service and client to, run from
 * Node against real servers on SQLite and PostgreSQL: order, limits, pop, clear,
 * concurrency between Node processes, errors, retries and aborts.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import type { AgentInputItem } from '@openai/agents-core';

import { ProblemError, ProblemType, RemoteSession, type RemoteSessionOptions } from '../src/index.js';
import { API_KEY, CLIENT_ROOT, postgresUnavailable, ServerProcess, type Backend } from './server.js';

const run = promisify(execFile);

function user(text: string): AgentInputItem {
  return { role: 'user', content: text };
}

function texts(items: AgentInputItem[]): unknown[] {
  return items.map((item) => ('content' in item ? item.content : item.type));
}

for (const backend of ['sqlite', 'postgres'] as Backend[]) {
  describe(`RemoteSession on ${backend}`, { skip: backend === 'postgres' && postgresUnavailable() }, () => {
    let server: ServerProcess;
    let counter = 0;
    const open = (options: RemoteSessionOptions = {}, id?: string) =>
      new RemoteSession(id ?? `js-${process.pid}-${++counter}-${Date.now()}`, {
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

    test('items come back in the order they were added, across calls', async () => {
      const session = open();
      await session.addItems([user('a'), user('b')]);
      await session.addItems([user('c')]);
      assert.deepEqual(texts(await session.getItems()), ['a', 'b', 'c']);
      assert.equal(await session.getSessionId(), session.sessionId);
    });

    test('limit gives the latest items, oldest first; 0 gives none', async () => {
      const session = open();
      await session.addItems(['1', '2', '3', '4', '5'].map(user));
      assert.deepEqual(texts(await session.getItems(2)), ['4', '5']);
      assert.deepEqual(await session.getItems(0), []);
      assert.deepEqual(texts(await session.getItems(99)), ['1', '2', '3', '4', '5']);
      await assert.rejects(session.getItems(-1), RangeError);
    });

    test('sessionSettings.limit applies when getItems has no limit', async () => {
      const session = open({ sessionSettings: { limit: 2 } });
      await session.addItems(['x', 'y', 'z'].map(user));
      assert.deepEqual(texts(await session.getItems()), ['y', 'z']);
      assert.deepEqual(texts(await session.getItems(3)), ['x', 'y', 'z']);
    });

    test('popItem removes and returns the newest; undefined when empty', async () => {
      const session = open();
      assert.equal(await session.popItem(), undefined);
      await session.addItems([user('first'), user('second')]);
      assert.deepEqual(await session.popItem(), { role: 'user', content: 'second' });
      assert.deepEqual(texts(await session.getItems()), ['first']);
    });

    test('clearSession empties only this session', async () => {
      const session = open();
      const other = open();
      await session.addItems([user('mine')]);
      await other.addItems([user('theirs')]);
      await session.clearSession();
      assert.deepEqual(await session.getItems(), []);
      assert.deepEqual(texts(await other.getItems()), ['theirs']);
      await session.clearSession(); // clearing an absent session is fine too
    });

    test('addItems([]) sends nothing', async () => {
      let calls = 0;
      const session = open({ fetch: (input, init) => (calls++, fetch(input, init)) });
      await session.addItems([]);
      assert.equal(calls, 0);
    });

    test('ids with reserved characters, dots and emoji round-trip as one path segment', async () => {
      assert.throws(() => open({}, '..'), /dot segment/);
      for (const id of ['.a', 'a..', '...', 'a b?c#d%e', 'über/'.slice(0, 4), '👩‍👩‍👧 family', "it's (x)*!"]) {
        const session = open({}, id);
        await session.addItems([user(id)]);
        assert.deepEqual(texts(await session.getItems()), [id]);
        await session.clearSession();
      }
    });

    test('the service stores the Responses shape the Python SDK writes', async () => {
      const session = open();
      await session.addItems([
        { type: 'function_call', callId: 'call_1', name: 'f', arguments: '{}', status: 'completed' },
        { type: 'function_call_result', callId: 'call_1', name: 'f', status: 'completed', output: { type: 'text', text: 'ok' } },
      ]);
      assert.deepEqual(await session.getStoredItems(), [
        { type: 'function_call', call_id: 'call_1', name: 'f', arguments: '{}', status: 'completed' },
        { type: 'function_call_output', call_id: 'call_1', output: 'ok' },
      ]);
    });

    test('errors carry the problem details', async () => {
      const wrongKey = open({ apiKey: 'not-the-key' });
      const error = await wrongKey.getItems().then(
        () => assert.fail('expected a 401'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 401);
      assert.equal(error.type, ProblemType.UNAUTHORIZED);
      assert.equal(error.problem.status, 401);
      assert.ok(error.detail.length > 0);
    });

    test('several Node processes appending at once lose and reorder nothing', async () => {
      const session = open();
      const workers = 4;
      const each = 10;
      const script = join(CLIENT_ROOT, 'dist', 'test', 'fixtures', 'worker.js');
      await Promise.all(
        Array.from({ length: workers }, (_, w) =>
          run(process.execPath, [script, server.baseUrl, session.sessionId, `w${w}`, 'append', String(each), API_KEY]),
        ),
      );
      const seen = texts(await session.getItems()) as string[];
      assert.equal(seen.length, workers * each);
      for (let w = 0; w < workers; w++) {
        const mine = seen.filter((text) => text.startsWith(`w${w}:`));
        assert.deepEqual(mine, Array.from({ length: each }, (_, i) => `w${w}:${i}`));
      }
    });

    test('several Node processes popping at once never get the same item', async () => {
      const session = open();
      const total = 24;
      await session.addItems(Array.from({ length: total }, (_, i) => user(`item-${i}`)));
      const script = join(CLIENT_ROOT, 'dist', 'test', 'fixtures', 'worker.js');
      const outputs = await Promise.all(
        Array.from({ length: 3 }, (_, w) =>
          run(process.execPath, [script, server.baseUrl, session.sessionId, `p${w}`, 'pop', '10', API_KEY]),
        ),
      );
      const popped = outputs.flatMap(({ stdout }) => JSON.parse(stdout) as (AgentInputItem | null)[]);
      const items = popped.filter((item) => item !== null) as AgentInputItem[];
      const got = texts(items) as string[];
      assert.equal(got.length, total);
      assert.equal(new Set(got).size, total);
      assert.equal(popped.length - items.length, 30 - total); // the rest found it empty
      assert.deepEqual(await session.getItems(), []);
    });

    test('a write whose answer was lost is retried with the same Idempotency-Key and lands once', async () => {
      const keys: (string | null)[] = [];
      let dropNext = true;
      const flaky: typeof fetch = async (input, init) => {
        keys.push(new Headers(init?.headers).get('Idempotency-Key'));
        const response = await fetch(input, init);
        if (dropNext && init?.method === 'POST') {
          // The server committed the append; the client never hears about it.
          dropNext = false;
          await response.body?.cancel();
          throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
        }
        return response;
      };
      const session = open({ fetch: flaky, backoffMs: 1 });
      await session.addItems([user('once')]);
      assert.equal(keys.length, 2);
      assert.ok(keys[0]);
      assert.equal(keys[0], keys[1]);
      assert.deepEqual(texts(await session.getItems()), ['once']);
      // A second logical write gets a key of its own.
      await session.addItems([user('twice')]);
      assert.notEqual(keys[2], keys[0]);
    });

    test('502, 503 and 409 in-flight are retried with the same key; other errors are not', async () => {
      const keys: (string | null)[] = [];
      const answers = [
        new Response('<html>bad gateway</html>', { status: 502 }),
        new Response(JSON.stringify({ type: ProblemType.STORE_UNAVAILABLE, title: 'Store unavailable', status: 503, detail: 'x' }), { status: 503 }),
        new Response(JSON.stringify({ type: ProblemType.IDEMPOTENCY_KEY_IN_FLIGHT, title: 'In flight', status: 409, detail: 'y' }), { status: 409 }),
      ];
      const flaky: typeof fetch = async (input, init) => {
        keys.push(new Headers(init?.headers).get('Idempotency-Key'));
        return answers.shift() ?? fetch(input, init);
      };
      const session = open({ fetch: flaky, backoffMs: 1 });
      await session.addItems([user('after three failures')]);
      assert.equal(keys.length, 4);
      assert.equal(new Set(keys).size, 1);
      assert.deepEqual(texts(await session.getItems()), ['after three failures']);

      let calls = 0;
      const conflict: typeof fetch = async () => {
        calls++;
        return new Response(JSON.stringify({ type: 'urn:other', title: 'Conflict', status: 409, detail: 'z', extra: 1 }), { status: 409 });
      };
      const error = await open({ fetch: conflict, backoffMs: 1 }).popItem().catch((e: unknown) => e);
      assert.equal(calls, 1);
      assert.ok(error instanceof ProblemError);
      assert.deepEqual([error.status, error.type, error.detail, error.problem.extra], [409, 'urn:other', 'z', 1]);
      const proxy: typeof fetch = async () => new Response('<html>teapot</html>', { status: 418 });
      await assert.rejects(open({ fetch: proxy }).getItems(), { status: 418, detail: '<html>teapot</html>', type: 'about:blank' });
    });

    test('calls ride out a server restart', async () => {
      const session = open();
      await session.addItems([user('before')]);
      await server.stop();
      const pending = session.addItems([user('during')]);
      const read = session.getItems();
      await server.start();
      await pending;
      assert.deepEqual(texts(await read).slice(0, 1), ['before']);
      assert.deepEqual(texts(await session.getItems()), ['before', 'during']);
    });

    test('an abort stops a call that is waiting to retry', async () => {
      const controller = new AbortController();
      let attempts = 0;
      const refused: typeof fetch = async () => {
        attempts++;
        if (attempts === 2) controller.abort(new Error('caller gave up'));
        throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
      };
      const session = open({ fetch: refused, backoffMs: 1 });
      await assert.rejects(session.addItems([user('x')], { signal: controller.signal }), /caller gave up/);
      assert.equal(attempts, 2);
      const sessionWide = new AbortController();
      sessionWide.abort(new Error('closed'));
      await assert.rejects(open({ signal: sessionWide.signal }).getItems(), /closed/);
    });

    test('a refused connection gives up after the retry budget with a ConnectError', async () => {
      let attempts = 0;
      const refused: typeof fetch = async () => {
        attempts++;
        throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
      };
      const session = open({ fetch: refused, backoffMs: 1, maxRetries: 3 });
      await assert.rejects(session.getItems(), { name: 'ConnectError' });
      assert.equal(attempts, 4);
    });
  });
}

describe('RemoteSession with pages cut short by bytes', () => {
  let server: ServerProcess;
  before(async () => {
    // 1 KiB pages and items of about 600 bytes: every page holds one item.
    server = await ServerProcess.fresh('sqlite', { SESSION_MEMORY_MAX_READ_PAGE_BYTES: '1024' });
  });
  after(async () => {
    await server?.close();
  });

  test('getItems(limit) follows has_more to return limit items', async () => {
    const session = new RemoteSession(`js-paged-${process.pid}`, {
      baseUrl: server.baseUrl,
      apiKey: API_KEY,
    });
    const words = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((w) => w.repeat(560));
    await session.addItems(words.map(user));
    assert.deepEqual(texts(await session.getItems(5)), words.slice(-5));
    assert.deepEqual(texts(await session.getItems(20)), words);
    assert.deepEqual(texts(await session.getItems()), words);
  });
});
