/**
 * `RemoteSession`: the JS Agents SDK `Session` interface over session-memory's HTTP
 * API, behaving like the Python client's `RemoteSession` (session_memory_client/_session.py).
 */

import {
  applySessionHistoryMutations,
  UserError,
  type AgentInputItem,
  type Session,
  type SessionHistoryRewriteArgs,
} from '@openai/agents-core';

import { ProblemError } from './errors.js';
import { canonicalItems, fromStoredItems, toStoredItems, type StoredItem } from './items.js';
import { parseJson, stringifyJson } from './json.js';
import {
  ALREADY_APPLIED,
  canonicalJson,
  checkTransactionArgs,
  EMPTY_APPEND_BODY,
  operationKey,
  replacementPositions,
  sameItems,
  SUFFIX_MISMATCH,
  UNREACHABLE_ETAG,
  type HistoryTransactionArgs,
  type ReplaceSuffixTransaction,
} from './history.js';
import { leaseToken, withRunLease, type LeaseRequest, type RunLease, type RunLeaseOptions } from './lease.js';
import { ETAG, IF_MATCH, ProblemType, RUN_LEASE, sessionPath, validateSessionId } from './protocol.js';
import { DEFAULT_CACHE_BYTES, ReadCache, readLatest } from './reads.js';
import { Transport, type Answer, type Logger, type RequestSpec } from './transport.js';

/** The SDK's session settings: `limit` caps how many recent items `getItems()` returns. */
export type SessionSettings = { limit?: number };

export type RemoteSessionOptions = {
  /** Where the service listens; defaults to SESSION_MEMORY_BASE_URL, else http://127.0.0.1:8000. */
  baseUrl?: string;
  /** Sent as a Bearer token; defaults to the SESSION_MEMORY_API_KEY environment variable. */
  apiKey?: string;
  /** `limit` applies when `getItems()` is called without one. */
  sessionSettings?: SessionSettings;
  /** The fetch to use (a test seam, or a proxy-aware fetch); defaults to the global one. */
  fetch?: typeof globalThis.fetch;
  /** Aborts every call of this session, in flight or waiting to retry. */
  signal?: AbortSignal;
  /** Per attempt. */
  timeoutMs?: number;
  /** Transient failures are retried until this much time has passed since the first attempt. */
  retryBudgetMs?: number;
  /** The first backoff interval; each retry doubles it, up to MAX_BACKOFF_MS. */
  backoffMs?: number;
  /** An upper bound on retries of one call, on top of the time budget. */
  maxRetries?: number;
  /** Told when a call's first attempt fails to reach the service and it retries; defaults to `console`. */
  logger?: Logger;
  /**
   * The JSON bytes of items `getItems` keeps, so the next read is sent only what
   * changed (default 8 MiB; 0 turns it off). Ignored when `cache` is given.
   */
  cacheBytes?: number;
  /** A cache to share between sessions (its bound covers them all). */
  cache?: ReadCache;
};

/** Per-call options; `signal` aborts this call only. */
export type CallOptions = { signal?: AbortSignal };

/** A page of a read: `first_seq` is the seq of `items[0]`. */
type ItemPage = { items: StoredItem[]; first_seq: number | null; last_seq: number | null; has_more: boolean };

/** The latest items, the seq of the first, the ETag they were read at, and whether that is all. */
type Tail = { items: StoredItem[]; firstSeq: number | null; etag: string; complete: boolean };

/**
 * How many times a suffix replace re-checks the history after a concurrent write
 * made its If-Match fail; each time a write landed, so under any sane load the
 * suffix is either confirmed or gone long before this.
 */
export const MAX_SUFFIX_ATTEMPTS = 16;

/**
 * The replace request for `items` from the item after seq `before` on (the whole
 * history when null), in canonical bytes so a repeat of the operation is the same request.
 */
function replaceBody(items: StoredItem[], before: number | null): string {
  return canonicalJson(before === null ? { items } : { items, from_seq: before + 1 });
}

/**
 * A conversation history kept by a session-memory service.
 *
 * Implements the JS Agents SDK's `Session`, so
 * `run(agent, input, { session: new RemoteSession('user-42') })` keeps its history on
 * the server, shared with every process, host and language that uses the same id.
 * Items are stored in the Responses API input-item shape the Python SDK writes
 * (see items.ts), so a Python agent and a TypeScript agent can share one history.
 *
 * Transient failures (no connection, a timeout, 502, 503, 504, and 409 for a write
 * whose earlier attempt is still running) are retried with capped exponential
 * backoff and full jitter for up to `retryBudgetMs`. Every `addItems` and `popItem`
 * carries a fresh Idempotency-Key reused by its retries, so a retry never
 * duplicates an append nor pops twice.
 */
export class RemoteSession implements Session {
  readonly sessionId: string;
  readonly baseUrl: string;
  sessionSettings: SessionSettings;
  private readonly transport: Transport;
  private readonly cache: ReadCache | undefined;

  constructor(sessionId: string, options: RemoteSessionOptions = {}) {
    this.sessionId = validateSessionId(sessionId);
    if (sessionId === '.' || sessionId === '..') {
      // The service accepts these ids, but a WHATWG URL (what fetch takes) turns a
      // "%2E" or "%2E%2E" segment back into a dot segment and removes it, so no
      // fetch-based client can address them. The Python client can.
      throw new RangeError(
        `session id ${JSON.stringify(sessionId)} cannot be addressed through fetch: ` +
          'URL parsing removes it as a dot segment even when percent-encoded',
      );
    }
    this.transport = new Transport(options, sessionPath(sessionId));
    this.baseUrl = this.transport.baseUrl;
    this.sessionSettings = { ...options.sessionSettings };
    const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (!(cacheBytes >= 0)) throw new RangeError(`cacheBytes must be 0 or more, not ${cacheBytes}`);
    this.cache = options.cache ?? (cacheBytes > 0 ? new ReadCache(cacheBytes) : undefined);
  }

  // -- the Session interface ----------------------------------------------------

  async getSessionId(): Promise<string> {
    return this.sessionId;
  }

  /**
   * The latest `limit` items, oldest first; all of them when no limit applies.
   * Without `limit`, `sessionSettings.limit` applies. `0` gives `[]`; a negative or
   * fractional limit is a RangeError.
   */
  async getItems(limit?: number, options: CallOptions = {}): Promise<AgentInputItem[]> {
    return fromStoredItems(await this.getStoredItems(limit, options));
  }

  /**
   * The same items in their stored (Responses API) shape, untranslated. They are kept
   * (see `cacheBytes`), so the next read is sent only what changed since; the service
   * checks within the read, so it is never stale, and each call returns new objects.
   */
  async getStoredItems(limit?: number, options: CallOptions = {}): Promise<StoredItem[]> {
    const effective = limit ?? this.sessionSettings.limit ?? undefined;
    if (effective !== undefined && (!Number.isInteger(effective) || effective < 0)) {
      throw new RangeError(`limit must be an integer, 0 or more, not ${effective}`);
    }
    // Every read sends a limit (the service's fast path) and pages back while has_more.
    const get = async (query: string) => {
      const answer = await this.request({ method: 'GET', path: '/items', query, signal: options.signal });
      return { etag: answer.headers.get(ETAG), text: answer.text };
    };
    return readLatest(get, this.cache, this.transport.url, effective);
  }

  /** Append `items` atomically and contiguously; an empty list sends nothing. */
  async addItems(items: AgentInputItem[], options: CallOptions = {}): Promise<void> {
    if (items.length === 0) return;
    await this.addStoredItems(toStoredItems(items), options);
  }

  /** Append items already in the stored (Responses API) shape. */
  async addStoredItems(items: StoredItem[], options: CallOptions = {}): Promise<void> {
    if (items.length === 0) return;
    await this.request({
      method: 'POST',
      path: '/items',
      body: stringifyJson({ items }),
      idempotentWrite: true,
      signal: options.signal,
    });
  }

  /** Remove and return the newest item, or `undefined` when the session is empty. */
  async popItem(options: CallOptions = {}): Promise<AgentInputItem | undefined> {
    const response = await this.request({
      method: 'DELETE',
      path: '/items/last',
      idempotentWrite: true,
      signal: options.signal,
    });
    const { item } = parseJson(response.text) as { item: StoredItem | null };
    return item === null ? undefined : fromStoredItems([item])[0];
  }

  /** Delete every item of this session, and its record, on the server. */
  async clearSession(options: CallOptions = {}): Promise<void> {
    await this.request({ method: 'DELETE', path: '', signal: options.signal });
  }

  // -- history transactions (the SDK's optional capabilities) ------------------------

  /**
   * Apply one history transaction atomically, at most once per operation id.
   *
   * `append_items` is one append whose Idempotency-Key is derived from the
   * operation id. `replace_suffix` reads the latest items with the session's ETag,
   * checks that they end with `expectedSuffix`, and replaces them by `replacement`
   * in one `PUT .../items` with `from_seq` and If-Match: if anything was written in
   * between, the service refuses (412) and the check runs again on the new history,
   * so a concurrent append is never overwritten. A suffix that does not match
   * changes nothing and throws the SDK's `UserError`.
   *
   * Repeating an operation id with the same transaction succeeds without applying
   * it again (the service replays the recorded outcome); reusing it for a different
   * transaction throws `UserError` and changes nothing, as in MemorySession: an
   * empty append takes its operation id too, and a `replace_suffix` repeated after
   * later writes is still a no-op (looked for at the newest MAX_REPLAY_PROBES places
   * it could have started). The service keeps keys for its idempotency retention
   * time (24 h by default); `clearSession` forgets them, as MemorySession does.
   */
  async applyHistoryTransaction(args: HistoryTransactionArgs, options: CallOptions = {}): Promise<void> {
    const { operationId, transaction } = checkTransactionArgs(args);
    const key = await operationKey(this.sessionId, operationId);
    if (transaction.type === 'append_items') {
      const items = toStoredItems(transaction.items);
      // An empty append changes nothing but takes its operation id, as in MemorySession.
      if (items.length === 0) await this.keyedWrite('PUT', EMPTY_APPEND_BODY, key, {}, options);
      else await this.keyedWrite('POST', canonicalJson({ items }), key, {}, options);
      return;
    }
    await this.replaceSuffix(transaction, key, options);
  }

  /**
   * The SDK's history rewrite (replacing a function call's arguments, say): the
   * mutations are applied to the whole history as MemorySession applies them, and
   * the result replaces it in one write guarded by If-Match, so a concurrent write
   * is never overwritten (the rewrite runs again on the new history instead).
   */
  async applyHistoryMutations(args: SessionHistoryRewriteArgs, options: CallOptions = {}): Promise<void> {
    if (args.mutations.length === 0) return;
    for (let attempt = 0; attempt < MAX_SUFFIX_ATTEMPTS; attempt++) {
      const tail = await this.readTail(Number.MAX_SAFE_INTEGER, options);
      const items = fromStoredItems(tail.items);
      const next = applySessionHistoryMutations(items, args.mutations);
      if (sameItems(items, next)) return;
      try {
        await this.request({
          method: 'PUT',
          path: '/items',
          body: stringifyJson({ items: toStoredItems(next) }),
          idempotentWrite: true,
          headers: { [IF_MATCH]: tail.etag },
          signal: options.signal,
        });
        return;
      } catch (error) {
        if (error instanceof ProblemError && error.type === ProblemType.PRECONDITION_FAILED) continue;
        throw error;
      }
    }
    throw new UserError('Session history changed on every attempt to rewrite it.');
  }

  /**
   * Replace the whole history by `items` (a compaction item and the suffix it keeps)
   * in one transaction: readers see the old history or the new one, never an empty
   * session in between, and the session keeps its id, TTL and metadata.
   */
  async replaceHistoryWithCompaction(items: AgentInputItem[], options: CallOptions = {}): Promise<void> {
    await this.replaceStoredItems(toStoredItems(items), options);
  }

  /** Replace the whole history by items already in the stored shape; see `replaceHistoryWithCompaction`. */
  async replaceStoredItems(items: StoredItem[], options: CallOptions = {}): Promise<void> {
    await this.request({
      method: 'PUT',
      path: '/items',
      body: stringifyJson({ items }),
      idempotentWrite: true,
      signal: options.signal,
    });
  }

  private async replaceSuffix(
    transaction: ReplaceSuffixTransaction,
    key: string,
    options: CallOptions,
  ): Promise<void> {
    const expected = canonicalItems(transaction.expectedSuffix);
    const replacement = toStoredItems(transaction.replacement);
    for (let attempt = 0; attempt < MAX_SUFFIX_ATTEMPTS; attempt++) {
      // One item more than the suffix: the seq of the item before it is where the
      // replaced range starts, a number that stays put when the replace lands (so
      // a repeat of this operation can rebuild the same request; see below).
      const tail = await this.readTail(expected.length + 1, options);
      const start = tail.items.length - expected.length;
      const matches =
        (start === 1 || (start === 0 && tail.complete)) &&
        sameItems(fromStoredItems(tail.items.slice(start)), expected);
      if (!matches) break;
      const body = replaceBody(replacement, start === 1 ? tail.firstSeq : null);
      try {
        await this.keyedWrite('PUT', body, key, { [IF_MATCH]: tail.etag }, options);
        return;
      } catch (error) {
        if (error instanceof ProblemError && error.type === ProblemType.PRECONDITION_FAILED) continue;
        // The suffix is back, but the operation id was taken: by this very operation?
        if (error instanceof UserError) return this.replayOperation(replacement, key, options);
        throw error;
      }
    }
    return this.replayOperation(replacement, key, options);
  }

  /**
   * Succeed when this operation was applied already (MemorySession's repeat is a
   * no-op, whatever happened since); else throw the SDK's UserError: the suffix
   * mismatch when the operation id is unused, ALREADY_APPLIED when another
   * transaction took it.
   *
   * The service fingerprints a request by its bytes, and a replace's bytes hold the
   * seq of the item before the replaced range, so the request is rebuilt for each
   * place the replacement could have started (see replacementPositions) and sent with an
   * ETag no session has: 200 when the key recorded exactly this request (nothing
   * is applied again), 422 when it recorded another, 412 (recording nothing) when
   * it is unused.
   */
  private async replayOperation(replacement: StoredItem[], key: string, options: CallOptions): Promise<void> {
    const history = await this.readTail(Number.MAX_SAFE_INTEGER, options);
    const positions = replacementPositions(fromStoredItems(history.items), fromStoredItems(replacement));
    for (const index of positions) {
      const before =
        index === 0 ? null : (await this.readTail(history.items.length - index + 1, options)).firstSeq;
      try {
        const body = replaceBody(replacement, before);
        await this.keyedWrite('PUT', body, key, { [IF_MATCH]: UNREACHABLE_ETAG }, options);
        return;
      } catch (error) {
        if (error instanceof ProblemError && error.type === ProblemType.PRECONDITION_FAILED) {
          throw new UserError(SUFFIX_MISMATCH);
        }
        if (!(error instanceof UserError)) throw error;
      }
    }
    throw new UserError(ALREADY_APPLIED);
  }

  /** A write keyed by an operation: the key reused by another request is the SDK's UserError. */
  private async keyedWrite(
    method: string,
    body: string,
    key: string,
    headers: Record<string, string>,
    options: CallOptions,
  ): Promise<Answer> {
    try {
      return await this.request({
        method,
        path: '/items',
        body,
        idempotentWrite: key,
        headers,
        signal: options.signal,
      });
    } catch (error) {
      if (error instanceof ProblemError && error.type === ProblemType.IDEMPOTENCY_KEY_REUSED) {
        throw new UserError(ALREADY_APPLIED);
      }
      throw error;
    }
  }

  /**
   * The latest `count` items (fewer when the session holds fewer), all read at one
   * revision: a page may stop early at the service's byte bound, and the pages
   * before it are fetched until `count` are in; a write in between starts it over.
   */
  private async readTail(count: number, options: CallOptions): Promise<Tail> {
    for (;;) {
      const items: StoredItem[] = [];
      let etag: string | null = null;
      let firstSeq: number | null = null;
      let more = true;
      let moved = false;
      while (items.length < count && more) {
        const query =
          firstSeq === null
            ? `?limit=${count - items.length}`
            : `?before=${firstSeq}&limit=${count - items.length}`;
        const answer = await this.request({ method: 'GET', path: '/items', query, signal: options.signal });
        const tag = answer.headers.get(ETAG);
        if (etag !== null && tag !== etag) {
          moved = true;
          break;
        }
        etag = tag;
        const page = parseJson(answer.text) as ItemPage;
        if (page.items.length === 0) {
          more = false;
          break;
        }
        items.unshift(...page.items);
        firstSeq = page.first_seq;
        more = page.has_more;
      }
      if (moved) continue;
      if (etag === null) throw new TypeError('session-memory answered a read without an ETag');
      return { items, firstSeq, etag, complete: !more };
    }
  }

  /**
   * Compare items the way they come back from the service: a JS spelling that is
   * stored in a canonical form (see the README) must not look like a lost write to
   * the Runner's persistence checks.
   */
  prepareHistoryItemsForPersistenceComparison(items: AgentInputItem[]): AgentInputItem[] {
    return canonicalItems(items);
  }

  // -- run leases ---------------------------------------------------------------------

  /**
   * Hold this session's run lease while `fn` runs, so two runs never interleave:
   * `await session.runLease({ waitMs: 10_000 }, () => run(agent, input, { session }))`.
   *
   * Acquires the lease (waiting up to `waitMs` for a run that holds it to end, else
   * `ProblemError` 409 `session-leased`), renews it every third of `ttlMs`, sends its
   * token with every write through this session inside `fn` (its async context), and
   * releases it when `fn` settles. While it is held, other writes are refused (409):
   * with another token or none, unless `unleasedWrites: 'allow'`. A write after the
   * lease was lost (`lease.lost`) is refused with 409 `lease-lost` and changes nothing.
   */
  runLease<T>(fn: (lease: RunLease) => Promise<T> | T): Promise<T>;
  runLease<T>(options: RunLeaseOptions, fn: (lease: RunLease) => Promise<T> | T): Promise<T>;
  runLease<T>(
    first: RunLeaseOptions | ((lease: RunLease) => Promise<T> | T),
    second?: (lease: RunLease) => Promise<T> | T,
  ): Promise<T> {
    const [options, fn] = typeof first === 'function' ? [{}, first] : [first, second];
    if (typeof fn !== 'function') throw new TypeError('runLease needs a function to run while the lease is held');
    return withRunLease(this, this.leaseTransport(), options, fn);
  }

  private leaseTransport() {
    return {
      sessionId: this.sessionId,
      timeoutMs: this.transport.timeoutMs,
      logger: this.transport.logger,
      send: (spec: LeaseRequest) => this.request({ ...spec, path: '/lease' }),
    };
  }

  toString(): string {
    return `RemoteSession(${JSON.stringify(this.sessionId)}, baseUrl=${JSON.stringify(this.baseUrl)})`;
  }
  // -- transport --------------------------------------------------------------------

  /**
   * Send one logical request through the session's transport (retries, aborts,
   * errors: see transport.ts). A write inside a `runLease` callback carries its
   * token; the lease's own requests set theirs.
   */
  protected request(spec: RequestSpec): Promise<Answer> {
    if (spec.method !== 'GET' && !(spec.headers && RUN_LEASE in spec.headers)) {
      const token = leaseToken(this);
      if (token !== undefined) spec = { ...spec, headers: { ...spec.headers, [RUN_LEASE]: String(token) } };
    }
    return this.transport.request(spec);
  }
}
