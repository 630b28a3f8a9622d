/**
 * What an aborted write did. A write's attempt in flight is never cut short (its
 * answer says whether it landed); when an abort leaves the outcome unknown (the
 * attempt failed in transit, or the call was waiting to retry), the client asks
 * the service: it sends the same request under the same Idempotency-Key with an
 * If-Match no session has. The service looks the key up before anything else, so
 * it answers with the recorded outcome when the write landed (applying nothing
 * again), 409 while the write is still running, and 412, recording nothing, when it
 * did not land. `WriteAbortedError` carries the answer.
 */

import { SessionMemoryError, TransportError } from './errors.js';
import { parseJson } from './json.js';

/** An aborted write: `landed` says whether it took effect, `outcome` is its answer when it did. */
export class WriteAbortedError extends SessionMemoryError {
  override name = 'WriteAbortedError';
  /**
   * true: the write took effect (once), and `outcome` is the service's answer to it
   * (an append's `{count, first_seq, last_seq}`, a pop's `{item}`); false: it did
   * not, and never will. undefined only when the service could not be asked within
   * the retry budget (it did not answer, or answered an unexpected error: `settleError`).
   */
  readonly landed: boolean | undefined;
  readonly outcome: unknown;
  readonly settleError: unknown;
  constructor(
    reason: unknown,
    landed: boolean | undefined,
    extra: { outcome?: unknown; settleError?: unknown } = {},
  ) {
    const said = reason instanceof Error ? reason.message : String(reason);
    const what = landed === undefined ? 'may have landed' : landed ? 'landed' : 'did not land';
    super(`write aborted (${said}); it ${what}`, { cause: reason });
    this.landed = landed;
    this.outcome = extra.outcome;
    this.settleError = extra.settleError;
  }
}

/** One exchange, as the session's transport completes it. */
export type Exchange = { status: number; text: string };

export type SettleOptions = {
  /** How long to keep asking while the write is still running or the service is away. */
  budgetMs: number;
  backoffMs: number;
  maxBackoffMs: number;
};

const WAIT = new Set([409, 502, 503, 504]);

/**
 * Ask whether an aborted write landed: `probe` sends the write again with
 * If-Match UNREACHABLE_ETAG. Never throws: the answer is the error to reject with.
 */
export async function settleAborted(
  probe: () => Promise<Exchange>,
  reason: unknown,
  options: SettleOptions,
): Promise<WriteAbortedError> {
  const started = Date.now();
  let last: unknown;
  for (let attempt = 0; ; attempt++) {
    try {
      const answer = await probe();
      if (answer.status < 400) {
        return new WriteAbortedError(reason, true, { outcome: answer.text ? parseJson(answer.text) : null });
      }
      // 412: the key is unused (nothing recorded); 422: it holds another request.
      if (answer.status === 412 || answer.status === 422) return new WriteAbortedError(reason, false);
      last = answer;
      if (!WAIT.has(answer.status)) break;
    } catch (error) {
      last = error;
      if (!(error instanceof TransportError)) break;
    }
    const delay = Math.random() * Math.min(options.maxBackoffMs, options.backoffMs * 2 ** attempt);
    if (Date.now() - started + delay > options.budgetMs) break;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  return new WriteAbortedError(reason, undefined, { settleError: last });
}
