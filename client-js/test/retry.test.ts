/**
 * The retry schedule on a mocked clock: the default budget (30 s, as in Python)
 * rides out ten seconds of refused connections, gives up after its budget, and never
 * waits longer than the cap between attempts. A call whose first attempt finds no
 * server says so at once, through the `logger` option (the console by default).
 */

import assert from 'node:assert/strict';
import { mock, test } from 'node:test';

import {
  BASE_URL_ENV,
  ConnectError,
  DEFAULT_RETRY_BUDGET_MS,
  MAX_BACKOFF_MS,
  RemoteSession,
  type Logger,
} from '../src/index.js';

/** A logger that keeps what it is told. */
function recorder(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { warnings, warn: (message: string) => void warnings.push(message) };
}

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
    const session = new RemoteSession('s', { fetch: refusingUntil(10_000, attempts), logger: recorder() });
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
    const session = new RemoteSession('s', {
      fetch: refusingUntil(60_000, attempts),
      retryBudgetMs: 5_000,
      logger: recorder(),
    });
    await assert.rejects(drive(session.getItems()), ConnectError);
    assert.ok(attempts.at(-1)! <= 5_000);
    assert.ok(attempts.length > 2);
  } finally {
    mock.timers.reset();
  }
});

test('the default budget is 30 s, as in the Python client', async () => {
  assert.equal(DEFAULT_RETRY_BUDGET_MS, 30_000);
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const attempts: number[] = [];
    const session = new RemoteSession('s', { fetch: refusingUntil(120_000, attempts), logger: recorder() });
    await assert.rejects(drive(session.getItems()), ConnectError);
    assert.ok(attempts.at(-1)! > 25_000 && attempts.at(-1)! <= 30_000, `last at ${attempts.at(-1)}`);
  } finally {
    mock.timers.reset();
  }
});

test('the first refused attempt of a call is a warning naming the URL and the budget left', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const logger = recorder();
    const session = new RemoteSession('s', {
      baseUrl: 'http://127.0.0.1:9',
      fetch: refusingUntil(60_000, []),
      retryBudgetMs: 5_000,
      logger,
    });
    await assert.rejects(drive(session.getItems()), ConnectError);
    assert.equal(logger.warnings.length, 1, 'once per call, not per attempt');
    assert.match(logger.warnings[0]!, /could not connect to session-memory at http:\/\/127\.0\.0\.1:9/);
    assert.match(logger.warnings[0]!, /retrying for up to 5\.0 s more$/);
    // Another call says it again; a call that succeeds at once says nothing.
    await assert.rejects(drive(session.getItems()), ConnectError);
    assert.equal(logger.warnings.length, 2);
    const counted = new RemoteSession('s', { fetch: refusingUntil(60_000, []), maxRetries: 2, logger });
    await assert.rejects(drive(counted.getItems()), ConnectError);
    assert.match(logger.warnings[2]!, /\(at most 2 more attempts\)$/);
  } finally {
    mock.timers.reset();
  }
});

test('without a retry to come there is no warning: the error says it', async () => {
  const logger = recorder();
  const session = new RemoteSession('s', { fetch: refusingUntil(60_000, []), maxRetries: 0, logger });
  await assert.rejects(session.getItems(), ConnectError);
  assert.deepEqual(logger.warnings, []);
});

test('the logger defaults to the console', async (t) => {
  const warn = t.mock.method(console, 'warn', () => {});
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const session = new RemoteSession('s', { fetch: refusingUntil(60_000, []), retryBudgetMs: 1_000 });
    await assert.rejects(drive(session.getItems()), ConnectError);
  } finally {
    mock.timers.reset();
  }
  assert.equal(warn.mock.callCount(), 1);
  assert.match(String(warn.mock.calls[0]!.arguments[0]), /could not connect to session-memory at/);
});

test('baseUrl defaults to SESSION_MEMORY_BASE_URL, as in Python', () => {
  const before = process.env[BASE_URL_ENV];
  try {
    process.env[BASE_URL_ENV] = 'http://sessions.internal:8123/';
    assert.equal(new RemoteSession('s').baseUrl, 'http://sessions.internal:8123');
    assert.equal(new RemoteSession('s', { baseUrl: 'http://other:1' }).baseUrl, 'http://other:1');
    delete process.env[BASE_URL_ENV];
    assert.equal(new RemoteSession('s').baseUrl, 'http://127.0.0.1:8000');
  } finally {
    if (before === undefined) delete process.env[BASE_URL_ENV];
    else process.env[BASE_URL_ENV] = before;
  }
});
