/**
 * `RemoteSession.runLease` against real servers on SQLite and PostgreSQL (on
 * PostgreSQL, the two runs go through two replicas of one database): one run at a
 * time, writes fenced by the lease's token, renewal, release, and a stale holder
 * paused with SIGSTOP in a process of its own.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { Agent, Runner, setTracingDisabled, type AgentInputItem } from '@openai/agents-core';

import { ProblemError, ProblemType, RemoteSession, SessionMemoryClient, type RunLease } from '../src/index.js';
import { assistantMessage, ScriptedModel } from './fixtures/scriptedModel.js';
import { API_KEY, backends, CLIENT_ROOT, ServerProcess } from './server.js';

setTracingDisabled(true);

const HOLDER = join(CLIENT_ROOT, 'dist', 'test', 'fixtures', 'leaseHolder.js');
const quiet = { warn() {} };

/** A gate a test opens when it is ready for a callback to go on. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

function contents(items: AgentInputItem[]): string[] {
  return items.map((item) => {
    const content = (item as { content: unknown }).content;
    if (typeof content === 'string') return content;
    return (content as { text: string }[]).map((part) => part.text).join('');
  });
}

/** A model that takes a while to answer, so two runs overlap. */
class SlowModel extends ScriptedModel {
  override async getResponse(...args: Parameters<ScriptedModel['getResponse']>) {
    await delay(150);
    return super.getResponse(...args);
  }
}

for (const backend of backends()) {
  describe(`run leases on ${backend}`, () => {
    let server: ServerProcess;
    let replica: ServerProcess;
    let counter = 0;
    const fresh = () => `js-lease-${process.pid}-${++counter}`;
    // On PostgreSQL the second of two runs talks to another replica of the same database.
    const open = (id: string, second = false) =>
      new RemoteSession(id, { baseUrl: (second ? replica : server).baseUrl, apiKey: API_KEY, logger: quiet });

    before(async () => {
      server = await ServerProcess.fresh(backend);
      replica = backend === 'postgres' ? await server.replica() : server;
    });
    after(async () => {
      if (replica !== server) await replica?.close();
      await server?.close();
    });

    test('two Runner runs that wait for the lease leave whole turns, in either order', async () => {
      const id = fresh();
      const runs = ['A', 'B'].map(async (name, index) => {
        const session = open(id, index === 1);
        const agent = new Agent({ name, model: new SlowModel([[assistantMessage(`answer ${name}`)]]) });
        return session.runLease({ waitMs: 20_000 }, (lease) =>
          new Runner().run(agent, `question ${name}`, { session }).then(() => lease.token),
        );
      });
      const tokens = await Promise.all(runs);
      assert.notEqual(tokens[0], tokens[1]);
      const history = contents(await open(id).getItems());
      const first = history[0]!.endsWith('A') ? 'A' : 'B';
      const second = first === 'A' ? 'B' : 'A';
      assert.deepEqual(history, [
        `question ${first}`,
        `answer ${first}`,
        `question ${second}`,
        `answer ${second}`,
      ]);
    });

    test('a second run that does not wait is refused at once and runs nothing', async () => {
      const id = fresh();
      const holding = gate();
      const entered = gate();
      const first = open(id).runLease(async () => {
        entered.open();
        await holding.wait;
      });
      await entered.wait;
      let ran = false;
      await assert.rejects(
        open(id, true).runLease({ waitMs: 0 }, () => {
          ran = true;
        }),
        (error: unknown) => error instanceof ProblemError && error.status === 409 && error.type === ProblemType.SESSION_LEASED,
      );
      assert.equal(ran, false);
      holding.open();
      await first;
    });

    test("the callback's writes carry the token; the same session's writes outside it are refused", async () => {
      const id = fresh();
      const session = open(id);
      const holding = gate();
      const entered = gate();
      const run = session.runLease(async (lease) => {
        await session.addItems([{ role: 'user', content: 'inside' }]);
        // Another RemoteSession object is another client: its writes carry no token.
        await assert.rejects(open(id).addItems([{ role: 'user', content: 'other object' }]), {
          type: ProblemType.SESSION_LEASED,
        });
        entered.open();
        await holding.wait;
        await session.addItems([{ role: 'user', content: 'still inside' }]);
        return lease;
      });
      await entered.wait;
      // This context is not the callback's, though the session object is the same.
      await assert.rejects(session.addItems([{ role: 'user', content: 'outside' }]), {
        status: 409,
        type: ProblemType.SESSION_LEASED,
      });
      await assert.rejects(session.clearSession(), { type: ProblemType.SESSION_LEASED });
      holding.open();
      const lease = await run;
      assert.equal(lease.lost, false);
      assert.deepEqual(contents(await session.getItems()), ['inside', 'still inside']);
      // Released: writes without a token go through again.
      await session.addItems([{ role: 'user', content: 'after' }]);
    });

    test("with unleasedWrites 'allow', writes without a token go through while it is held", async () => {
      const id = fresh();
      const session = open(id);
      await session.runLease({ unleasedWrites: 'allow' }, async () => {
        await open(id, true).addItems([{ role: 'user', content: 'untokened' }]);
      });
      assert.deepEqual(contents(await session.getItems()), ['untokened']);
    });

    test('a callback that outlives its TTL keeps the lease: it is renewed in the background', async () => {
      const id = fresh();
      const session = open(id);
      const seen: string[] = [];
      const lease = await session.runLease({ ttlMs: 1_500 }, async (lease: RunLease) => {
        seen.push(lease.expiresAt);
        await delay(2_500);
        seen.push(lease.expiresAt);
        await session.addItems([{ role: 'user', content: 'late but leased' }]);
        return lease;
      });
      assert.equal(lease.lost, false);
      assert.ok(seen[1]! > seen[0]!, `renewed: ${seen.join(' -> ')}`);
      assert.deepEqual(contents(await session.getItems()), ['late but leased']);
    });

    test('the lease is released when the callback throws, and the next run takes it at once', async () => {
      const id = fresh();
      let held = 0;
      await assert.rejects(
        open(id).runLease({ ttlMs: 60_000 }, async (lease) => {
          held = lease.token;
          throw new Error('the run failed');
        }),
        /the run failed/,
      );
      const next = await open(id, true).runLease({ waitMs: 0 }, (lease) => lease.token);
      assert.ok(next > held, `tokens only grow: ${held} then ${next}`);
    });

    test('an abort while waiting rejects with its reason and leaves no lease behind', async () => {
      const id = fresh();
      const holding = gate();
      const entered = gate();
      const first = open(id).runLease(async () => {
        entered.open();
        await holding.wait;
      });
      await entered.wait;
      const aborter = new AbortController();
      const waiting = open(id, true).runLease({ waitMs: 30_000, signal: aborter.signal }, () => 'ran');
      await delay(200);
      aborter.abort(new Error('gave up'));
      await assert.rejects(waiting, /gave up/);
      holding.open();
      await first;
      assert.equal(await open(id).runLease({ waitMs: 0 }, () => 'free'), 'free');
    });

    test('runLease inside its own callback is an error; two callbacks on one session object queue', async () => {
      const id = fresh();
      const session = open(id);
      await session.runLease(async () => {
        await assert.rejects(session.runLease(() => 'nested'), /already holds the run lease/);
      });
      const turn = (name: string) =>
        session.runLease({ waitMs: 20_000 }, async () => {
          await session.addItems([{ role: 'user', content: `${name} 1` }]);
          await delay(100);
          await session.addItems([{ role: 'user', content: `${name} 2` }]);
        });
      await Promise.all([turn('A'), turn('B')]);
      const history = contents(await session.getItems());
      const first = history[0]!.startsWith('A') ? 'A' : 'B';
      const second = first === 'A' ? 'B' : 'A';
      assert.deepEqual(history, [`${first} 1`, `${first} 2`, `${second} 1`, `${second} 2`]);
    });

    test('an operator sees which run holds the lease and frees it', async () => {
      const id = fresh();
      const operator = new SessionMemoryClient({ baseUrl: replica.baseUrl, apiKey: API_KEY, logger: quiet });
      assert.equal(await operator.getLease(id), null);
      const session = open(id);
      await session.runLease({ ttlMs: 60_000 }, async (lease) => {
        assert.deepEqual(await operator.getLease(id), { ...lease });
        await operator.releaseLease(id, lease.token);
        assert.equal(await operator.getLease(id), null);
        // Freed: the run's writes are refused, and so is a second release.
        await assert.rejects(session.addItems([{ role: 'user', content: 'late' }]), (error: unknown) => {
          return error instanceof ProblemError && error.type === ProblemType.LEASE_LOST;
        });
        await assert.rejects(operator.releaseLease(id, lease.token), (error: unknown) => {
          return error instanceof ProblemError && error.status === 409 && error.type === ProblemType.LEASE_LOST;
        });
      });
      assert.equal(await operator.getLease(id), null);
    });

    test('a follower is told of the run holding the session, and of its end', async () => {
      const id = fresh();
      const aborter = new AbortController();
      const client = new SessionMemoryClient({ baseUrl: server.baseUrl, apiKey: API_KEY, logger: quiet });
      const events = client.follow(id, { after: 0, signal: aborter.signal });
      try {
        const session = open(id, true);
        const token = await session.runLease({ ttlMs: 30_000 }, async (lease) => {
          const held = (await events.next()).value;
          assert.deepEqual(held && { ...held, expiresAt: typeof (held as { expiresAt?: unknown }).expiresAt }, {
            kind: 'lease',
            token: lease.token,
            expiresAt: 'string',
            ttlMs: 30_000,
          });
          return lease.token;
        });
        assert.deepEqual((await events.next()).value, { kind: 'lease-end', token });
      } finally {
        aborter.abort();
        await events.return(undefined);
      }
    });

        test('a holder paused past its TTL while another run took the lease has its late writes refused', async () => {
      const id = fresh();
      const holder = spawn(process.execPath, [HOLDER, server.baseUrl, id, '1000', API_KEY], {
        detached: true, // its own process group, ended whole below
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const lines = createInterface({ input: holder.stdout! })[Symbol.asyncIterator]();
      const next = async () => String((await lines.next()).value);
      try {
        const held = Number((await next()).split(' ')[1]);
        process.kill(-holder.pid!, 'SIGSTOP');
        // The paused holder cannot renew: its lease expires, and this run takes it.
        const run = open(id, true);
        const token = await run.runLease({ waitMs: 20_000 }, async (lease) => {
          process.kill(-holder.pid!, 'SIGCONT');
          holder.stdin!.write('late write\n');
          assert.equal(await next(), ProblemType.LEASE_LOST);
          await run.addItems([{ role: 'user', content: 'new run' }]);
          return lease.token;
        });
        assert.ok(token > held, `the new token ${token} is above the stale ${held}`);
        assert.deepEqual(contents(await open(id).getItems()), ['new run']);
        holder.stdin!.end();
      } finally {
        try {
          process.kill(-holder.pid!, 'SIGCONT');
          process.kill(-holder.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
  });
}
