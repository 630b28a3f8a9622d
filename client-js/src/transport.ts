/**
 * The HTTP exchange under every call of the TypeScript client, as the Python
 * client's `session_memory_client/_transport.py`: one logical request, retried on
 * what is transient with capped exponential backoff and full jitter inside a time
 * budget, keyed writes settled when aborted, and errors mapped to ours.
 */

import { settleAborted } from './aborts.js';
import { ConnectError, ProblemError, RequestTimeout, TransportError, type Problem } from './errors.js';
import { UNREACHABLE_ETAG } from './history.js';
import { IDEMPOTENCY_KEY, IF_MATCH, ProblemType } from './protocol.js';
import type { WriteAbortedError } from './aborts.js';

export const DEFAULT_BASE_URL = 'http://127.0.0.1:8000';
export const DEFAULT_TIMEOUT_MS = 30_000;
/** How long transient failures are retried: long enough to outlast a server restart (as in Python). */
export const DEFAULT_RETRY_BUDGET_MS = 30_000;
export const DEFAULT_BACKOFF_MS = 100;
export const MAX_BACKOFF_MS = 2_000;
export const API_KEY_ENV = 'SESSION_MEMORY_API_KEY';
export const BASE_URL_ENV = 'SESSION_MEMORY_BASE_URL';

/** Where the client says what it is doing (a server that does not answer); `console` fits. */
export type Logger = { warn(message: string): void };

export type RequestSpec = {
  method: string;
  /** After the session's URL; after the base URL when `root` is set. */
  path: string;
  root?: boolean;
  query?: string;
  body?: string;
  /** Send an Idempotency-Key: this one (an operation id), or a fresh UUID when `true`. */
  idempotentWrite?: boolean | string;
  /** More headers, e.g. If-Match for a compare-and-swap write. */
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** A write that an abort may cut short, as a read: its caller settles it (a lease's acquisition). */
  abortable?: boolean;
};

/** A completed exchange: the body is read inside the retry loop, so a broken body is retried too. */
export type Answer = { status: number; headers: Headers; text: string };

export function readEnv(name: string): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.[name] || undefined;
}

/** The settings of a `Transport`, each defaulted as `RemoteSession`'s options say. */
export type TransportOptions = {
  baseUrl?: string | undefined;
  apiKey?: string | undefined;
  fetch?: typeof globalThis.fetch | undefined;
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
  retryBudgetMs?: number | undefined;
  backoffMs?: number | undefined;
  maxRetries?: number | undefined;
  logger?: Logger | undefined;
};

/** One service, one key, one session's URL: sends a `RequestSpec` until it is answered for good. */
export class Transport {
  readonly baseUrl: string;
  /** The session's resource, which `RequestSpec.path` follows. */
  readonly url: string;
  readonly timeoutMs: number;
  readonly logger: Logger;
  private readonly headers: Record<string, string>;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly signal: AbortSignal | undefined;
  private readonly retryBudgetMs: number;
  private readonly backoffMs: number;
  private readonly maxRetries: number;

  constructor(options: TransportOptions, sessionPath: string) {
    this.baseUrl = (options.baseUrl ?? readEnv(BASE_URL_ENV) ?? DEFAULT_BASE_URL).replace(/\/+$/, '');
    this.url = this.baseUrl + sessionPath;
    const apiKey = options.apiKey ?? readEnv(API_KEY_ENV);
    this.headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.signal = options.signal;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retryBudgetMs = options.retryBudgetMs ?? DEFAULT_RETRY_BUDGET_MS;
    this.backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
    this.maxRetries = options.maxRetries ?? Number.POSITIVE_INFINITY;
    this.logger = options.logger ?? console;
    for (const [name, value] of Object.entries({
      timeoutMs: this.timeoutMs,
      retryBudgetMs: this.retryBudgetMs,
      backoffMs: this.backoffMs,
      maxRetries: this.maxRetries,
    })) {
      if (!(value >= 0)) throw new RangeError(`${name} must be 0 or more, not ${value}`);
    }
  }

  /**
   * Send one logical request, retrying transient failures; map errors to ours.
   *
   * Reads and clears are idempotent by nature. Writes carry one fresh
   * Idempotency-Key for all their attempts, so a retried append lands once and a
   * retried pop removes one item, even when an earlier attempt reached the server.
   * A history transaction passes its own key (derived from its operation id).
   */
  async request(spec: RequestSpec): Promise<Answer> {
    let signal = combine(this.signal, spec.signal);
    const headers: Record<string, string> = { ...this.headers, ...spec.headers };
    if (spec.body !== undefined) headers['Content-Type'] = 'application/json';
    if (spec.idempotentWrite) {
      headers[IDEMPOTENCY_KEY] =
        typeof spec.idempotentWrite === 'string' ? spec.idempotentWrite : crypto.randomUUID();
    }
    const url = (spec.root ? this.baseUrl : this.url) + spec.path + (spec.query ?? '');
    // A write's attempt is never cut short by an abort: its answer says whether it landed.
    const write = spec.method !== 'GET' && !spec.abortable;
    let reached = false;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) {
        if (!write || !reached) throw signal.reason;
        if (spec.idempotentWrite) throw await this.settleAborted(spec, url, headers, signal.reason);
        // A clear or a metadata patch is idempotent by nature: finish it instead.
        signal = undefined;
      }
      let failure: Error;
      try {
        const answer = await this.send(spec.method, url, headers, spec.body, write ? undefined : signal);
        reached = true;
        if (answer.status < 400) return answer;
        failure = problemError(answer);
        if (!retryable(failure as ProblemError)) throw failure;
      } catch (error) {
        if (!(error instanceof TransportError) || (!write && signal?.aborted)) throw error;
        reached ||= !(error instanceof ConnectError);
        failure = error;
      }
      if (signal?.aborted) continue;
      // Full jitter: spread retries of many clients over the whole interval.
      const delay = Math.random() * Math.min(MAX_BACKOFF_MS, this.backoffMs * 2 ** attempt);
      if (attempt >= this.maxRetries || Date.now() - started + delay > this.retryBudgetMs) {
        throw failure;
      }
      if (attempt === 0 && failure instanceof TransportError) this.warnRetrying(failure, started);
      await sleep(delay, signal);
    }
  }

  /** The error an aborted keyed write rejects with, once the service said whether it landed. */
  private settleAborted(
    spec: RequestSpec,
    url: string,
    headers: Record<string, string>,
    reason: unknown,
  ): Promise<WriteAbortedError> {
    const probeHeaders = { ...headers, [IF_MATCH]: UNREACHABLE_ETAG };
    return settleAborted(() => this.send(spec.method, url, probeHeaders, spec.body, undefined), reason, {
      budgetMs: this.retryBudgetMs,
      backoffMs: this.backoffMs,
      maxBackoffMs: MAX_BACKOFF_MS,
    });
  }

  /** Once per call: its retries may take the whole budget, and the caller should know why. */
  private warnRetrying(failure: TransportError, started: number): void {
    const left = Math.max(0, this.retryBudgetMs - (Date.now() - started)) / 1000;
    let budget = `retrying for up to ${left.toFixed(1)} s more`;
    if (Number.isFinite(this.maxRetries)) {
      budget += ` (at most ${this.maxRetries} more attempt${this.maxRetries === 1 ? '' : 's'})`;
    }
    this.logger.warn(`${failure.message}; ${budget}`);
  }

  private async send(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Answer> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      const response = await this.fetchImpl(url, {
        method,
        headers,
        body,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      // The answers are small JSON documents (a page of items at most).
      const text = await response.text();
      return { status: response.status, headers: response.headers, text };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) {
        throw new RequestTimeout(
          `session-memory at ${this.baseUrl} did not answer within ${this.timeoutMs} ms`,
          { url, cause: error },
        );
      }
      const code = (error as { cause?: { code?: string } }).cause?.code;
      if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
        throw new ConnectError(`could not connect to session-memory at ${this.baseUrl}: ${code}`, {
          url,
          cause: error,
        });
      }
      throw new TransportError(`request to session-memory at ${this.baseUrl} failed: ${error}`, {
        url,
        cause: error,
      });
    }
  }
}

function combine(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (a && b) return AbortSignal.any([a, b]);
  return a ?? b;
}

/** Wait `ms`, or less when `signal` aborts (the caller then sees it aborted). */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const STATUS_PHRASES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  428: 'Precondition Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

function retryable(error: ProblemError): boolean {
  // 502-504: a proxy or the store is briefly away. 409: an earlier attempt of this
  // same write is still running (it answers with the outcome once it is done).
  return [502, 503, 504].includes(error.status) || error.type === ProblemType.IDEMPOTENCY_KEY_IN_FLIGHT;
}

export function problemError({ status, text }: { status: number; text: string }): ProblemError {
  let problem: Problem = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      problem = parsed as Problem;
    }
  } catch {
    // Not JSON (a proxy's HTML page, say): the status and text still say enough.
  }
  const phrase = STATUS_PHRASES[status] ?? 'Error';
  return new ProblemError(status, {
    title: String(problem.title || phrase),
    detail: String(problem.detail || text.slice(0, 500) || phrase),
    type: String(problem.type || 'about:blank'),
    problem,
  });
}
