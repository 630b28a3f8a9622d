/**
 * The retry schedule on a mocked clock: the default budget rides out ten seconds
 * of refused connections, gives up after its budget, and never waits longer than
 * the cap between attempts.
 */

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import { ConnectError, MAX_BACKOFF_MS, RemoteSession } from '../src/index.js';

/** Advance the mocked clock in small steps until `promise` settles. */
async function drive<T>(promise: Promise<T>): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  watched.catch(() => {});
  for (let steps = 0; !settled && steps < 100_000; steps++) {
    await new Promise((resolve) => setImmediate(resolve));
    mock.timers.tick(10);
  }
  return watched;
}

function refusingUntil(outageMs: number, attempts: number[]): typeof fetch {
  const start = Date.now();
  return async () => {
    attempts.push(Date.now() - start);
    if (Date.now() - start < outageMs) {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
    }
    return new Response(JSON.stringify({ items: [] }), { status: 200 });
  };
}

test('the default retry budget outlasts a ten-second outage', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const attempts: number[] = [];
    const session = new RemoteSession('s', { fetch: refusingUntil(10_000, attempts) });
    assert.deepEqual(await drive(session.getItems()), []);
    assert.ok(attempts.at(-1)! >= 10_000);
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    assert.ok(Math.max(...gaps) <= MAX_BACKOFF_MS + 10, `gaps ${gaps}`);
  } finally {
    mock.timers.reset();
  }
});

test('after its budget a call gives up with the last error', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const attempts: number[] = [];
    const session = new RemoteSession('s', { fetch: refusingUntil(60_000, attempts), retryBudgetMs: 5_000 });
    await assert.rejects(drive(session.getItems()), ConnectError);
    assert.ok(attempts.at(-1)! <= 5_000);
    assert.ok(attempts.length > 2);
  } finally {
    mock.timers.reset();
  }
});
