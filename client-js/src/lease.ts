/**
 * Run leases in the client: `RemoteSession.runLease`, a session held by one run, as
 * the Python client's `session.run_lease` (session_memory_client/_lease.py).
 *
 * `await session.runLease({ ttlMs: 30_000, waitMs: 10_000 }, async (lease) => run(...))`
 * acquires the session's run lease (waiting up to `waitMs` for a run that holds it
 * to end), renews it in the background every third of its TTL, sends its token
 * (`Run-Lease`) with every write made through that `RemoteSession` inside the
 * callback, and releases it when the callback settles, also when it throws or its
 * signal aborts.
 *
 * "Inside the callback" is its async context (the SDK's own `AsyncLocalStorage`, the
 * one its tracing uses, on each platform): the tasks the callback starts send the
 * token too, and two callbacks sharing one `RemoteSession` each send their own, so a
 * run that lost its lease never writes with the next run's token.
 */

import { AsyncLocalStorage } from '@openai/agents-core/_shims';

import { ProblemError, SessionMemoryError } from './errors.js';
import { parseJson, stringifyJson } from './json.js';
import { IDEMPOTENCY_KEY, ProblemType, RUN_LEASE } from './protocol.js';

/** What a write with no token does while the lease is held: refused (the default) or let through. */
export type UnleasedWrites = 'refuse' | 'allow';

export type RunLeaseOptions = {
  /** How long the lease lasts unless renewed (renewed every third of it); default 30 s. */
  ttlMs?: number;
  /** How long to wait for a run that holds the lease; default 0: 409 `session-leased` at once. */
  waitMs?: number;
  /** Default `'refuse'`: while held, the session's writes without the token are refused. */
  unleasedWrites?: UnleasedWrites;
  /** Aborts the wait for the lease; once held, the lease is released when the callback settles. */
  signal?: AbortSignal;
};

/**
 * The run lease a callback holds: its token, its expiry as the service last gave it
 * (ISO 8601), its TTL, and whether a renewal found it lost (it expired, or the
 * service gave the session to another run): the callback's writes are then refused.
 */
export type RunLease = {
  readonly sessionId: string;
  token: number;
  expiresAt: string;
  ttlMs: number;
  lost: boolean;
};

export const DEFAULT_LEASE_TTL_MS = 30_000;
/**
 * Each acquisition request waits on the service at most this share of the client's
 * timeout; a longer wait is several requests, at least LEAST_PAUSE_MS apart, in case
 * the service waits less than asked (its max_lease_wait_seconds).
 */
const WAIT_SHARE = 0.5;
const LEAST_PAUSE_MS = 100;

/** One request of the lease's, to the session's `/lease`. */
export type LeaseRequest = {
  method: string;
  body?: string;
  headers: Record<string, string>;
  signal?: AbortSignal;
  abortable?: boolean;
};

/** What the lease needs of its session: one request, retried as the session's are. */
export type LeaseTransport = {
  readonly sessionId: string;
  timeoutMs: number;
  logger: { warn(message: string): void };
  send(spec: LeaseRequest): Promise<{ text: string }>;
};

type Held = ReadonlyArray<readonly [object, number]>;
// (session, token) of every lease held in this context; a new array per callback,
// so a callback's entry is gone once it settles, whatever callbacks nested in it did.
const held = new AsyncLocalStorage<Held>();

/** The token of the run lease `session` holds in this context, or undefined. */
export function leaseToken(session: object): number | undefined {
  for (const [owner, token] of held.getStore() ?? []) {
    if (owner === session) return token;
  }
  return undefined;
}

type LeaseAnswer = { token: number; expires_at: string; ttl: number };

function check(options: RunLeaseOptions): Required<Omit<RunLeaseOptions, 'signal'>> {
  const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  const waitMs = options.waitMs ?? 0;
  const unleasedWrites = options.unleasedWrites ?? 'refuse';
  if (!(ttlMs > 0) || !Number.isFinite(ttlMs)) throw new RangeError(`ttlMs must be above 0, not ${ttlMs}`);
  if (!(waitMs >= 0) || !Number.isFinite(waitMs)) throw new RangeError(`waitMs must be 0 or more, not ${waitMs}`);
  if (unleasedWrites !== 'refuse' && unleasedWrites !== 'allow') {
    throw new RangeError(`unleasedWrites must be 'refuse' or 'allow', not ${JSON.stringify(unleasedWrites)}`);
  }
  return { ttlMs, waitMs, unleasedWrites };
}

/** Hold `session`'s run lease while `fn` runs; see the module's comment. */
export async function withRunLease<T>(
  session: object,
  transport: LeaseTransport,
  options: RunLeaseOptions,
  fn: (lease: RunLease) => Promise<T> | T,
): Promise<T> {
  const terms = check(options);
  if (leaseToken(session) !== undefined) {
    throw new Error(`this context already holds the run lease of session ${JSON.stringify(transport.sessionId)}`);
  }
  const lease = await acquire(transport, terms, options.signal);
  const renewer = new Renewer(transport, lease);
  try {
    // An abort that came while the acquisition was answered: the lease is released below.
    options.signal?.throwIfAborted();
    return await held.run([...(held.getStore() ?? []), [session, lease.token]], () => fn(lease));
  } finally {
    await renewer.stop();
    if (!lease.lost) await release(transport, lease);
  }
}

/**
 * The lease; `ProblemError` 409 `session-leased` when another run still holds it
 * after `waitMs`. Every request of one acquisition carries one Idempotency-Key, so
 * a retry after a lost answer is given the lease its first attempt took.
 */
async function acquire(
  transport: LeaseTransport,
  terms: { ttlMs: number; waitMs: number; unleasedWrites: UnleasedWrites },
  signal: AbortSignal | undefined,
): Promise<RunLease> {
  const deadline = Date.now() + terms.waitMs;
  const headers = { [IDEMPOTENCY_KEY]: crypto.randomUUID() };
  const ask = async (waitMs: number, abortable: AbortSignal | undefined): Promise<RunLease> => {
    const body = stringifyJson({ ttl: terms.ttlMs / 1000, wait: waitMs / 1000, unleased_writes: terms.unleasedWrites });
    const answer = await transport.send({
      method: 'POST',
      body,
      headers,
      ...(abortable ? { signal: abortable, abortable: true } : {}),
    });
    const granted = parseJson(answer.text) as LeaseAnswer;
    return {
      sessionId: transport.sessionId,
      token: granted.token,
      expiresAt: granted.expires_at,
      ttlMs: granted.ttl * 1000,
      lost: false,
    };
  };
  for (;;) {
    try {
      return await ask(Math.max(0, Math.min(deadline - Date.now(), WAIT_SHARE * transport.timeoutMs)), signal);
    } catch (error) {
      if (signal?.aborted) {
        await settleAborted(transport, ask);
        throw signal.reason;
      }
      const left = deadline - Date.now();
      if (!(error instanceof ProblemError) || error.type !== ProblemType.SESSION_LEASED || left <= 0) throw error;
      // An abort in the pause is settled by the next turn's request, which then fails at once.
      await pause(Math.min(LEAST_PAUSE_MS, left), signal).catch(() => undefined);
    }
  }
}

/**
 * After an abort cut an acquisition short, ask once more with the same key and no
 * wait: the lease the aborted request was given (the service answers a repeated key
 * with the lease it granted) or a new one comes back and is released, so an abort
 * never leaves the session held until the TTL ends.
 */
async function settleAborted(
  transport: LeaseTransport,
  ask: (waitMs: number, abortable: undefined) => Promise<RunLease>,
): Promise<void> {
  try {
    await release(transport, await ask(0, undefined));
  } catch {
    // Refused (another run holds it) or unreachable: nothing of this acquisition is held.
  }
}

/** Every third of the TTL, hold the lease for another TTL, until it is lost or stopped. */
class Renewer {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;
  private readonly aborter = new AbortController();

  constructor(
    private readonly transport: LeaseTransport,
    private readonly lease: RunLease,
  ) {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped || this.lease.lost) return;
    this.timer = setTimeout(() => {
      this.inFlight = this.renew().finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
    }, this.lease.ttlMs / 3);
    // A renewal timer alone must not keep a Node process alive.
    (this.timer as { unref?: () => void }).unref?.();
  }

  private async renew(): Promise<void> {
    const { lease, transport } = this;
    try {
      const answer = await transport.send({
        method: 'PUT',
        body: stringifyJson({ ttl: lease.ttlMs / 1000 }),
        headers: { [RUN_LEASE]: String(lease.token) },
        signal: this.aborter.signal,
      });
      const renewed = parseJson(answer.text) as LeaseAnswer;
      lease.expiresAt = renewed.expires_at;
      lease.ttlMs = renewed.ttl * 1000;
    } catch (error) {
      if (this.stopped) return;
      if (error instanceof ProblemError && error.type === ProblemType.LEASE_LOST) {
        lease.lost = true;
        transport.logger.warn(
          `the run lease of session ${JSON.stringify(lease.sessionId)} was lost (it expired before it ` +
            "was renewed); the run's writes are refused from now on",
        );
        return;
      }
      const reason = error instanceof SessionMemoryError ? error.message : String(error);
      transport.logger.warn(`could not renew the run lease of ${JSON.stringify(lease.sessionId)}: ${reason}`);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.aborter.abort();
    await this.inFlight;
  }
}

/** Release it now, unaborted: a lease left held blocks the session for its TTL. */
async function release(transport: LeaseTransport, lease: RunLease): Promise<void> {
  try {
    await transport.send({ method: 'DELETE', headers: { [RUN_LEASE]: String(lease.token) } });
  } catch (error) {
    // Gone already (it expired): nothing to release.
    if (error instanceof ProblemError && error.type === ProblemType.LEASE_LOST) return;
    const reason = error instanceof SessionMemoryError ? error.message : String(error);
    transport.logger.warn(`could not release the run lease of ${JSON.stringify(lease.sessionId)}: ${reason}`);
  }
}

/** Wait `ms`, or throw the signal's reason when it aborts first. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
