/**
 * RemoteSession keeps what getItems read and asks only for what changed: never stale
 * (the writes come from other Node processes, which this one cannot know of), and
 * never shared with the caller. Run against real servers on SQLite and PostgreSQL.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { CacheEntry, ReadCache, RemoteSession, sessionPath, type RemoteSessionOptions, type StoredItem } from '../src/index.js';
import { API_KEY, CLIENT_ROOT, postgresUnavailable, ServerProcess, type Backend } from './server.js';

const run = promisify(execFile);
const WRITER = join(CLIENT_ROOT, 'dist', 'test', 'fixtures', 'writer.js');

const item = (n: number, extra: Record<string, unknown> = {}): StoredItem => ({ n, ...extra });

for (const backend of ['sqlite', 'postgres'] as Backend[]) {
  describe(`the read cache on ${backend}`, { skip: backend === 'postgres' && postgresUnavailable() }, () => {
    let server: ServerProcess;
    let counter = 0;
    const open = (id: string, options: RemoteSessionOptions = {}) =>
      new RemoteSession(id, { baseUrl: server.baseUrl, apiKey: API_KEY, ...options });
    /** One request made by another Node process. */
    const write = async (method: string, path: string, body: unknown = null, headers = {}) => {
      const { stdout } = await run(process.execPath, [
        WRITER,
        server.baseUrl,
        API_KEY,
        JSON.stringify({ method, path, body, headers }),
      ]);
      return Number(stdout);
    };

    before(async () => {
      server = await ServerProcess.fresh(backend);
    });
    after(async () => {
      await server?.close();
    });

    const agree = async (cached: RemoteSession, plain: RemoteSession, expected: StoredItem[]) => {
      for (const limit of [undefined, 1, 2, 5, 50]) {
        const want = limit === undefined ? expected : expected.slice(-limit);
        assert.deepEqual(await cached.getStoredItems(limit), want, `limit ${limit}`);
        assert.deepEqual(await plain.getStoredItems(limit), want, `limit ${limit}`);
      }
    };

    test('every change made by another process is seen', async () => {
      const id = `js-cache-${process.pid}-${++counter}`;
      const path = sessionPath(id);
      const other = sessionPath(`${id}-source`);
      const cached = open(id);
      const plain = open(id, { cacheBytes: 0 });
      let expected = [0, 1, 2, 3, 4].map((n) => item(n));
      assert.equal(await write('POST', `${path}/items`, { items: expected }), 201);
      await agree(cached, plain, expected);

      await write('POST', `${path}/items`, { items: [item(5), item(6)] });
      expected = [...expected, item(5), item(6)];
      await agree(cached, plain, expected);

      await write('DELETE', `${path}/items/last`);
      await write('POST', `${path}/items`, { items: [item(60)] });
      expected = [...expected.slice(0, -1), item(60)];
      await agree(cached, plain, expected);

      expected = [80, 81, 82].map((n) => item(n));
      await write('PUT', `${path}/items`, { items: expected });
      await agree(cached, plain, expected);

      await write('DELETE', path);
      expected = [100, 101, 102, 103, 104, 105, 106].map((n) => item(n));
      await write('POST', `${path}/items`, { items: expected });
      await agree(cached, plain, expected);

      await write('DELETE', path);
      expected = [200, 201, 202, 203, 204, 205, 206, 207, 208].map((n) => item(n));
      await write('POST', `${other}/items`, { items: expected });
      assert.equal(await write('POST', `${other}/fork`, { session_id: id }), 201);
      await agree(cached, plain, expected);

      await write('DELETE', path);
      await agree(cached, plain, []);
      await write('DELETE', other);
    });

    test('a session that expires is seen to go and come back', async () => {
      const id = `js-cache-ttl-${process.pid}-${++counter}`;
      const path = sessionPath(id);
      const cached = open(id);
      const plain = open(id, { cacheBytes: 0 });
      const first = [1, 2, 3].map((n) => item(n));
      // Long enough that the reads before it ends finish first on a loaded machine.
      await write('POST', `${path}/items`, { items: first }, { 'Session-TTL': '4' });
      await agree(cached, plain, first);
      await new Promise((resolve) => setTimeout(resolve, 4300));
      await agree(cached, plain, []);
      const again = [7, 8, 9, 10, 11].map((n) => item(n));
      await write('POST', `${path}/items`, { items: again });
      await agree(cached, plain, again);
    });

    test('changing what a read returned changes nothing kept', async () => {
      const session = open(`js-cache-own-${process.pid}-${++counter}`);
      const nested = { role: 'assistant', content: [{ type: 'output_text', text: 'hi' }] };
      await session.addStoredItems([item(1), nested]);
      const first = await session.getStoredItems();
      first[0]!.n = 99;
      (first[1]!.content as { text: string }[])[0]!.text = 'changed';
      first.push(item(3));
      assert.deepEqual(await session.getStoredItems(), [item(1), nested]);
      const agentItems = await session.getItems();
      (agentItems[0] as { content: string }).content = 'changed';
      assert.deepEqual(await session.getStoredItems(1), [nested]);
    });

    test('a shared cache stays within its bound', async () => {
      const cache = new ReadCache(4000);
      const pad = 'x'.repeat(400);
      const sessions = [0, 1, 2].map((n) => open(`js-cache-bound-${process.pid}-${++counter}-${n}`, { cache }));
      const expected = [0, 1, 2].map((n) => Array.from({ length: 20 }, (_, k) => 20 * n + k));
      for (const [n, session] of sessions.entries()) {
        await session.addStoredItems(expected[n]!.map((k) => item(k, { pad })));
      }
      for (let round = 0; round < 3; round++) {
        for (const [n, session] of sessions.entries()) {
          assert.deepEqual((await session.getStoredItems()).map((i) => i.n), expected[n]);
          assert.deepEqual((await session.getStoredItems(3)).map((i) => i.n), expected[n]!.slice(-3));
          assert.ok(cache.nbytes > 0 && cache.nbytes <= 4000, `${cache.nbytes}`);
          await session.addStoredItems([item(1000 + round, { pad })]);
          expected[n]!.push(1000 + round);
        }
      }
    });
  });
}

describe('what the client sends', () => {
  const page = (items: number[], first: number | null, since: number | null, token: string, more = {}) => ({
    items: items.map((n) => item(n)),
    first_seq: first,
    last_seq: first === null ? null : first + items.length - 1,
    has_more: false,
    since,
    unchanged: false,
    read_token: token,
    ...more,
  });
  const scripted = (answers: unknown[], urls: string[]) => async (input: string | URL | Request) => {
    urls.push(String(input));
    return new Response(JSON.stringify(answers.shift()), {
      status: 200,
      headers: { 'content-type': 'application/json', etag: '"1"' },
    });
  };

  test('the token goes back each time, and each answer becomes the right history', async () => {
    const urls: string[] = [];
    const answers = [
      page([1, 2], 1, null, 't1'),
      page([], null, 2, 't1', { unchanged: true }),
      page([3], 3, 2, 't2'),
      page([1, 2], 1, null, 't3'),
      page([7, 8], 7, 2, 't4', { has_more: true }),
    ];
    const session = new RemoteSession('s', { baseUrl: 'http://x', fetch: scripted(answers, urls) });
    const ns = async (limit?: number) => (await session.getStoredItems(limit)).map((i) => i.n);
    assert.deepEqual(await ns(), [1, 2]);
    assert.deepEqual(await ns(), [1, 2]);
    assert.deepEqual(await ns(), [1, 2, 3]);
    assert.deepEqual(await ns(), [1, 2]);
    assert.deepEqual(await ns(2), [7, 8]);
    assert.deepEqual(
      urls.map((url) => url.split('?')[1]),
      ['limit=10000&known=', 'limit=10000&known=t1', 'limit=10000&known=t1', 'limit=10000&known=t2', 'limit=2&known=t3'],
    );
  });

  test('with the cache off no token is asked for, and every read sends a limit', async () => {
    const urls: string[] = [];
    const plain = { items: [item(1)], first_seq: 1, last_seq: 1, has_more: false };
    const session = new RemoteSession('s', {
      baseUrl: 'http://x',
      cacheBytes: 0,
      fetch: scripted([plain, plain], urls),
    });
    assert.deepEqual(await session.getStoredItems(), [item(1)]);
    assert.deepEqual(await session.getStoredItems(4), [item(1)]);
    assert.deepEqual(
      urls.map((url) => url.split('?')[1]),
      ['limit=10000', 'limit=4'],
    );
    assert.throws(() => new RemoteSession('s', { cacheBytes: -1 }), RangeError);
  });
});

test("entries share their arrays without seeing each other's items", () => {
  const entry = (token: string, ns: number[]) =>
    CacheEntry.read(token, ns.map((n) => item(n)), 10 * ns.length, false);
  const base = entry('t0', [1, 2]);
  const first = base.followedBy(entry('t1', [3]));
  const second = base.followedBy(entry('t2', [4, 5]));
  const ns = (e: CacheEntry, limit?: number) => e.latest(limit).map((i) => i.n);
  assert.deepEqual(ns(base), [1, 2]);
  assert.deepEqual(ns(first), [1, 2, 3]);
  assert.deepEqual(ns(second), [1, 2, 4, 5]);
  assert.deepEqual(ns(first.followedBy(entry('t3', [6])), 2), [3, 6]);
  assert.deepEqual([second.count, second.nbytes, second.token], [4, 40, 't2']);
  const big = entry('t', Array.from({ length: 100 }, (_, k) => k));
  const kept = big.trimmed(500)!;
  assert.deepEqual([kept.count, kept.nbytes, kept.complete], [37, 370, false]);
  assert.equal(kept.trimmed(500), kept);
  assert.equal(big.trimmed(5), undefined);
});
