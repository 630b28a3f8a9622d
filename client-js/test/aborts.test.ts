/**
 * Aborted writes against a real server: the caller always learns whether the write
 * landed. An attempt in flight runs to its answer; when the answer is lost, the
 * client asks the service by replaying the write's Idempotency-Key.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import type { AgentInputItem } from '@openai/agents-core';

import { RemoteSession, TransportError, WriteAbortedError, type RemoteSessionOptions } from '../src/index.js';
import { API_KEY, ServerProcess } from './server.js';

function user(text: string): AgentInputItem {
  return { role: 'user', content: text };
}

/** A connection reset: a transport failure that may come after the server got the request. */
function reset(): TypeError {
  return new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
}

type Plan = (
  real: typeof fetch,
  url: string,
  init: RequestInit,
  controller: AbortController,
) => Promise<Response>;

describe('aborted writes', () => {
  let server: ServerProcess;
  let counter = 0;

  before(async () => {
    server = await ServerProcess.fresh('sqlite');
  });
  after(async () => {
    await server?.close();
  });

  /** A session whose first write attempt goes as `plan` says; every other request is real. */
  function scripted(plan: Plan, options: RemoteSessionOptions = {}) {
    const controller = new AbortController();
    let planned = false;
    const fetchImpl: typeof fetch = async (input, init = {}) => {
      const url = String(input);
      if (planned || init.method === 'GET') return fetch(input, init);
      planned = true;
      return plan(fetch, url, init, controller);
    };
    const id = `abort-${process.pid}-${++counter}`;
    const open = (extra: RemoteSessionOptions = {}) =>
      new RemoteSession(id, { baseUrl: server.baseUrl, apiKey: API_KEY, backoffMs: 60_000, ...extra });
    return { session: open({ fetch: fetchImpl, ...options }), plain: open(), signal: controller.signal };
  }

  test('an abort while the attempt is in flight waits for its answer: landed, so it resolves', async () => {
    const { session, plain, signal } = scripted(async (real, url, init, controller) => {
      controller.abort(new Error('caller gave up'));
      assert.equal(init.signal?.aborted, false); // the attempt itself is not cut short
      return real(url, init);
    });
    await session.addItems([user('a')], { signal });
    assert.deepEqual(await plain.getItems(), [user('a')]);
  });

  test('a write that landed but whose answer was lost: WriteAbortedError, landed, with the outcome', async () => {
    const { session, plain, signal } = scripted(async (real, url, init, controller) => {
      await (await real(url, init)).text();
      // Fires before the retry's wait ends (a timer made earlier, of no longer a delay).
      setTimeout(() => controller.abort(new Error('caller gave up')), 0);
      throw reset();
    });
    const error = await session.addItems([user('a'), user('b')], { signal }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof WriteAbortedError, String(error));
    assert.equal(error.landed, true);
    assert.match(error.message, /caller gave up/);
    assert.deepEqual(error.outcome, { count: 2, first_seq: 1, last_seq: 2 });
    // Asked, not applied again.
    assert.deepEqual(await plain.getItems(), [user('a'), user('b')]);
  });

  test('a write lost before it reached the service: landed false, and it never lands', async () => {
    const { session, plain, signal } = scripted(async (_real, _url, _init, controller) => {
      // The caller gives up as the attempt fails: no timer to race a loaded machine.
      controller.abort(new Error('caller gave up'));
      throw reset();
    });
    await plain.addItems([user('kept')]);
    const error = await session.addItems([user('lost')], { signal }).catch((e: unknown) => e);
    assert.ok(error instanceof WriteAbortedError, String(error));
    assert.equal(error.landed, false);
    assert.equal(error.outcome, undefined);
    assert.deepEqual(await plain.getItems(), [user('kept')]);
  });

  test('a pop that landed: the outcome holds the item it removed', async () => {
    const { session, plain, signal } = scripted(async (real, url, init, controller) => {
      await (await real(url, init)).text();
      // Fires before the retry's wait ends (a timer made earlier, of no longer a delay).
      setTimeout(() => controller.abort(new Error('stop')), 0);
      throw reset();
    });
    await plain.addItems([user('a'), user('b')]);
    const error = await session.popItem({ signal }).catch((e: unknown) => e);
    assert.ok(error instanceof WriteAbortedError, String(error));
    assert.equal(error.landed, true);
    assert.deepEqual(error.outcome, { item: { role: 'user', content: 'b' } });
    assert.deepEqual(await plain.getItems(), [user('a')]);
  });

  test('a history transaction aborted after it landed says so, and its repeat is a no-op', async () => {
    const { session, plain, signal } = scripted(async (real, url, init, controller) => {
      await (await real(url, init)).text();
      // Fires before the retry's wait ends (a timer made earlier, of no longer a delay).
      setTimeout(() => controller.abort(new Error('stop')), 0);
      throw reset();
    });
    const args = { operationId: 'op', transaction: { type: 'append_items' as const, items: [user('t')] } };
    const error = await session.applyHistoryTransaction(args, { signal }).catch((e: unknown) => e);
    assert.ok(error instanceof WriteAbortedError && error.landed === true, String(error));
    await plain.applyHistoryTransaction(args);
    assert.deepEqual(await plain.getItems(), [user('t')]);
  });

  test('a clear whose answer was lost is finished, not left unknown', async () => {
    const { session, plain, signal } = scripted(async (_real, _url, _init, controller) => {
      setTimeout(() => controller.abort(new Error('stop')), 20);
      throw reset();
    });
    await plain.addItems([user('a')]);
    await session.clearSession({ signal });
    assert.deepEqual(await plain.getItems(), []);
  });

  test('a write aborted before anything was sent rejects with the reason', async () => {
    const { session, plain } = scripted(async () => assert.fail('sent'));
    const controller = new AbortController();
    controller.abort(new Error('never mind'));
    await assert.rejects(session.addItems([user('x')], { signal: controller.signal }), /never mind/);
    assert.deepEqual(await plain.getItems(), []);
  });

  test('when the service cannot be asked, landed is undefined and the failure is kept', async () => {
    const { session, signal } = scripted(
      async (_real, _url, _init, controller) => {
        controller.abort(new Error('stop'));
        throw reset();
      },
      { baseUrl: 'http://127.0.0.1:9', retryBudgetMs: 300, backoffMs: 1 },
    );
    const error = await session.addItems([user('x')], { signal }).catch((e: unknown) => e);
    assert.ok(error instanceof WriteAbortedError, String(error));
    assert.equal(error.landed, undefined);
    assert.ok(error.settleError instanceof TransportError, String(error.settleError));
  });
});
