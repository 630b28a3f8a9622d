/**
 * `SessionMemoryClient` against a real server: listing with paging and filters,
 * records and metadata merge patches, reads with seqs and the ETag, fork, and
 * following a session over server-sent events, resumed across a server restart.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { AgentInputItem } from '@openai/agents-core';

import {
  ProblemError,
  ProblemType,
  SessionMemoryClient,
  type ClientOptions,
  type FollowEvent,
} from '../src/index.js';
import { API_KEY, ServerProcess } from './server.js';

function user(text: string): AgentInputItem {
  return { role: 'user', content: text };
}

/** The next event, or a failure after `ms` (a follower never ends by itself). */
async function next(events: AsyncGenerator<FollowEvent>, ms = 10_000): Promise<FollowEvent> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no event within ${ms} ms`)), ms);
  });
  try {
    const result = await Promise.race([events.next(), timeout]);
    assert.ok(!result.done, 'the follower ended');
    return result.value;
  } finally {
    clearTimeout(timer);
  }
}

function summary(event: FollowEvent): string {
  return event.kind === 'append' ? `append ${event.seq} ${JSON.stringify(event.item)}` : event.kind;
}

describe('SessionMemoryClient', () => {
  let server: ServerProcess;
  let counter = 0;
  const warnings: string[] = [];
  const client = (options: ClientOptions = {}) =>
    new SessionMemoryClient({
      baseUrl: server.baseUrl,
      apiKey: API_KEY,
      backoffMs: 20,
      logger: { warn: (message) => warnings.push(message) },
      ...options,
    });
  const fresh = () => `client-${process.pid}-${++counter}`;

  before(async () => {
    server = await ServerProcess.fresh('sqlite');
  });
  after(async () => {
    await server?.close();
  });

  test('listSessions pages with a cursor; iterSessions walks every page; filters apply', async () => {
    const sm = client();
    const prefix = `${fresh()}-`;
    const ids = ['a', 'b', 'c', 'd', 'e'].map((name) => prefix + name);
    for (const id of ids) await sm.session(id).addItems([user(id)]);
    const first = await sm.listSessions({ prefix, limit: 2 });
    assert.equal(first.sessions.length, 2);
    assert.ok(first.nextCursor);
    const second = await sm.listSessions({ prefix, limit: 2, cursor: first.nextCursor });
    assert.equal(second.sessions.length, 2);
    const seen: string[] = [];
    for await (const record of sm.iterSessions({ prefix, limit: 2 })) seen.push(record.id);
    assert.deepEqual([...seen].sort(), ids);
    // Most recently updated first.
    assert.deepEqual(seen, [...ids].reverse());
    await sm.patchMetadata(ids[2]!, { team: 'blue', tier: 2 });
    const blue = await sm.listSessions({ prefix, metadata: { team: 'blue', tier: 2 } });
    assert.deepEqual(
      blue.sessions.map((record) => record.id),
      [ids[2]],
    );
    assert.equal(blue.nextCursor, null);
  });

  test('getRecord and patchMetadata: a merge patch of the record, If-Match, 404', async () => {
    const sm = client();
    const id = fresh();
    await sm.session(id).addItems([user('a'), user('b')]);
    const record = await sm.getRecord(id);
    assert.equal(record.id, id);
    assert.equal(record.item_count, 2);
    assert.deepEqual(record.metadata, {});
    const patched = await sm.patchMetadata(id, { owner: 'ann', tags: { x: 1, y: 2 }, big: 12345678901234567890 });
    assert.deepEqual(patched.metadata, { owner: 'ann', tags: { x: 1, y: 2 }, big: 12345678901234567890 });
    const merged = await sm.patchMetadata(id, { owner: null, tags: { y: null, z: 3 } });
    assert.deepEqual(merged.metadata, { tags: { x: 1, z: 3 }, big: 12345678901234567890 });
    assert.deepEqual((await sm.getRecord(id)).metadata, merged.metadata);
    assert.deepEqual((await sm.patchMetadata(id, null)).metadata, {});
    const stale = await sm.readItems(id);
    await sm.session(id).addItems([user('c')]);
    const revision = Number(stale.etag!.replaceAll('"', ''));
    await assert.rejects(sm.patchMetadata(id, { a: 1 }, { ifRevision: revision }), { status: 412 });
    await assert.rejects(sm.getRecord(fresh()), { status: 404, type: ProblemType.SESSION_NOT_FOUND });
    await assert.rejects(sm.patchMetadata(fresh(), { a: 1 }), { status: 404 });
  });

  test('readItems gives seqs, has_more and the ETag', async () => {
    const sm = client();
    const id = fresh();
    await sm.session(id).addItems([user('a'), user('b'), user('c')]);
    const latest = await sm.readItems(id, { limit: 2 });
    assert.deepEqual(latest.items, [user('b'), user('c')]);
    assert.equal(latest.firstSeq, 2);
    assert.equal(latest.lastSeq, 3);
    assert.equal(latest.hasMore, true);
    assert.match(latest.etag ?? '', /^"\d+"$/);
    const forward = await sm.readItems(id, { after: 1, limit: 1 });
    assert.deepEqual([forward.items, forward.firstSeq, forward.hasMore], [[user('b')], 2, true]);
    const back = await sm.readItems(id, { before: 2 });
    assert.deepEqual([back.items, back.firstSeq, back.hasMore], [[user('a')], 1, false]);
  });

  test('fork copies through a seq into a new session; an existing id is session-exists', async () => {
    const sm = client();
    const id = fresh();
    await sm.session(id).addItems([user('a'), user('b'), user('c')]);
    const target = fresh();
    const result = await sm.fork(id, target, { throughSeq: 2 });
    assert.deepEqual(
      { ...result, revision: 0 },
      { sessionId: target, count: 2, firstSeq: 1, lastSeq: 2, revision: 0 },
    );
    assert.ok(result.revision > 0);
    assert.deepEqual(await sm.session(target).getItems(), [user('a'), user('b')]);
    const error = await sm.fork(id, target).catch((e: unknown) => e);
    assert.ok(error instanceof ProblemError && error.type === ProblemType.SESSION_EXISTS, String(error));
    await assert.rejects(sm.fork(fresh(), fresh()), { status: 404 });
  });

  test('follow: appends with seqs, pop, replace, clear and a new history from 1', async () => {
    const sm = client();
    const id = fresh();
    const session = sm.session(id);
    await session.addItems([user('a')]);
    const controller = new AbortController();
    const events = sm.follow(id, { after: 0, signal: controller.signal });
    assert.equal(summary(await next(events)), 'append 1 {"role":"user","content":"a"}');
    await session.addItems([user('b')]);
    const appended = await next(events);
    assert.equal(summary(appended), 'append 2 {"role":"user","content":"b"}');
    assert.deepEqual(appended.kind === 'append' && appended.stored, { role: 'user', content: 'b' });
    await session.popItem();
    assert.equal((await next(events)).kind, 'pop');
    await session.replaceHistoryWithCompaction([user('s')]);
    assert.equal((await next(events)).kind, 'replace');
    assert.equal(summary(await next(events)), 'append 3 {"role":"user","content":"s"}');
    await session.clearSession();
    await session.addItems([user('new')]);
    const kinds: string[] = [];
    while (kinds.length === 0 || kinds.at(-1)!.startsWith('append') === false) {
      kinds.push(summary(await next(events)));
    }
    assert.ok(kinds.includes('clear'), kinds.join(', '));
    assert.equal(kinds.at(-1), 'append 1 {"role":"user","content":"new"}');
    controller.abort();
    assert.deepEqual(await events.next(), { done: true, value: undefined });
  });

  test('follow resumes across a server restart without gaps or repeats, and after a clear from 1', async () => {
    const sm = client();
    const id = fresh();
    const session = sm.session(id);
    const events = sm.follow(id);
    // From now on: wait until the stream is open before writing.
    const first = next(events);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await session.addItems([user('a')]);
    assert.equal(summary(await first), 'append 1 {"role":"user","content":"a"}');
    warnings.length = 0;
    const pending = next(events, 30_000);
    await server.stop();
    await server.start();
    await session.addItems([user('b'), user('c')]);
    assert.equal(summary(await pending), 'append 2 {"role":"user","content":"b"}');
    assert.equal(summary(await next(events)), 'append 3 {"role":"user","content":"c"}');
    assert.ok(warnings.some((message) => message.includes('reconnecting')), warnings.join('\n'));
    // A clear, then a restart before anything new: the resumed stream starts the new history at 1.
    await session.clearSession();
    assert.equal((await next(events)).kind, 'clear');
    const resumed = next(events, 30_000);
    await server.stop();
    await server.start();
    await session.addItems([user('x')]);
    assert.equal(summary(await resumed), 'append 1 {"role":"user","content":"x"}');
    await events.return();
  });

  test('follow: resync and the event-stream syntax (CRLF, multi-line data, comments)', async () => {
    const body =
      ': hello\r\n\r\n' +
      'id: 7\r\nevent: append\r\ndata: {"role":"user",\r\ndata: "content":"multi"}\r\n\r\n' +
      'event: resync\ndata: {"revision": 9}\n\n';
    let calls = 0;
    const fetchImpl: typeof fetch = async (_url, init) => {
      calls++;
      assert.equal(new Headers(init?.headers).get('Last-Event-ID'), calls === 1 ? '3' : '7');
      return new Response(calls === 1 ? body : ': idle\n\n', { headers: { 'Content-Type': 'text/event-stream' } });
    };
    const events = client({ fetch: fetchImpl }).follow('scripted', { after: 3 });
    assert.deepEqual(await next(events), {
      kind: 'append',
      seq: 7,
      item: user('multi'),
      stored: { role: 'user', content: 'multi' },
    });
    assert.deepEqual(await next(events), { kind: 'resync', revision: 9 });
    await events.return();
  });

  test('follow: an error answer is thrown as ProblemError', async () => {
    const events = client({ apiKey: 'wrong' }).follow(fresh());
    await assert.rejects(events.next(), { name: 'ProblemError', status: 401 });
  });
});
