/**
 * History transactions for `RemoteSession`: the JS Agents SDK's optional
 * `applyHistoryTransaction` (append with an operation id, and `replace_suffix`
 * guarded by its expected suffix), built on the service's atomic replace
 * (`PUT .../items` with `from_seq`), If-Match and Idempotency-Key replay.
 * The Python client's `_history.py` does the same for the Python SDK.
 *
 * The helpers here are pure (no I/O): the key an operation id maps to, the
 * canonical bytes a request body is sent as, and the SDK's argument checks.
 */

import { UserError, type AgentInputItem } from '@openai/agents-core';

import { carryRaw, stringifyJson } from './json.js';

/** The SDK's own words (MemorySession), so callers see the same errors from every session. */
export const ALREADY_APPLIED =
  'Session history operation was already applied with a different transaction.';
export const SUFFIX_MISMATCH = 'Session history suffix no longer matches the transaction precondition.';

/**
 * An ETag no session ever has: revisions count up from 1, one per write across the
 * whole store, and this one (the largest If-Match the service takes) is out of reach.
 * A write sent with it changes nothing and records nothing, but its Idempotency-Key
 * is still looked up first: a replay (200) or a reuse (422) shows the key is taken.
 */
export const UNREACHABLE_ETAG = '"999999999999999999"';

export type AppendTransaction = { type: 'append_items'; items: AgentInputItem[] };
export type ReplaceSuffixTransaction = {
  type: 'replace_suffix';
  expectedSuffix: AgentInputItem[];
  replacement: AgentInputItem[];
};
export type HistoryTransaction = AppendTransaction | ReplaceSuffixTransaction;
export type HistoryTransactionArgs = { operationId: string; transaction: HistoryTransaction };

const INVALID_DATA = 'Session history transaction items contain invalid or unsupported data.';

/** Check the arguments the way the SDK's MemorySession does, before anything is sent. */
export function checkTransactionArgs(args: unknown): HistoryTransactionArgs {
  let operationId: unknown;
  let transaction: unknown;
  try {
    if (!args || typeof args !== 'object') throw new Error('no arguments');
    // A getter that throws says nothing of its own: its message may hold secrets.
    operationId = Reflect.get(args, 'operationId');
    transaction = Reflect.get(args, 'transaction');
  } catch {
    throw new UserError('Session history transaction arguments are invalid.');
  }
  if (typeof operationId !== 'string' || !operationId.trim()) {
    throw new UserError('Session history transaction operationId must be a non-empty string.');
  }
  if (!transaction || typeof transaction !== 'object') {
    throw new UserError('Session history transaction must be an object.');
  }
  let record: Record<string, unknown>;
  try {
    record = plainSnapshot(transaction, new Set()) as Record<string, unknown>;
    structuredClone(transaction);
  } catch {
    throw new UserError(INVALID_DATA);
  }
  const keys = Object.keys(record).sort().join(',');
  if (record.type === 'append_items') {
    if (keys !== 'items,type' || !Array.isArray(record.items)) {
      throw new UserError('Session history append transaction fields are invalid.');
    }
    checkItems(record.items);
  } else if (record.type === 'replace_suffix') {
    if (
      keys !== 'expectedSuffix,replacement,type' ||
      !Array.isArray(record.expectedSuffix) ||
      !Array.isArray(record.replacement)
    ) {
      throw new UserError('Session history suffix transaction fields are invalid.');
    }
    checkItems(record.expectedSuffix);
    checkItems(record.replacement);
  } else {
    throw new UserError('Unsupported session history transaction type.');
  }
  return { operationId, transaction: record as HistoryTransaction };
}

function checkItems(items: unknown[]): void {
  for (const item of items) {
    if (!item || typeof item !== 'object' || Array.isArray(item)) throw new UserError(INVALID_DATA);
  }
}

/**
 * A copy holding only what JSON stores exactly: plain objects with enumerable data
 * properties, dense plain arrays, strings, finite numbers, booleans, null. Anything
 * else (a Date, a typed array, a getter, a non-enumerable or symbol key, a sparse
 * array, a class instance) throws, as MemorySession refuses what it cannot snapshot;
 * a typed array it keeps has no JSON form, so it is refused here too.
 */
function plainSnapshot(value: unknown, ancestors: Set<object>): unknown {
  if (value === null || value === undefined || typeof value === 'string' || typeof value === 'boolean') {
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('not a JSON number');
    return value;
  }
  if (typeof value !== 'object') throw new TypeError('unsupported value');
  if (ancestors.has(value)) throw new TypeError('cyclic value');
  ancestors.add(value);
  try {
    const array = Array.isArray(value);
    const prototype = Object.getPrototypeOf(value);
    if (array ? prototype !== Array.prototype : prototype !== Object.prototype && prototype !== null) {
      throw new TypeError('unsupported object');
    }
    const keys = Reflect.ownKeys(value).filter((key) => !(array && key === 'length'));
    if (array && keys.length !== (value as unknown[]).length) throw new TypeError('sparse array');
    const out: Record<string, unknown> | unknown[] = array ? [] : {};
    for (const key of keys) {
      const descriptor = typeof key === 'string' ? Object.getOwnPropertyDescriptor(value, key) : undefined;
      if (!descriptor?.enumerable || !('value' in descriptor)) throw new TypeError('unsupported property');
      (out as Record<string, unknown>)[key as string] = plainSnapshot(descriptor.value, ancestors);
    }
    carryRaw(value, out);
    return out;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * JSON with every object's keys sorted: the same transaction gives the same bytes
 * however its objects were built, and the service fingerprints a request by its
 * bytes, so a repeated operation replays instead of being taken for another one.
 */
export function canonicalJson(value: unknown): string {
  return stringifyJson(sortKeys(value, new Set()));
}

function sortKeys(value: unknown, ancestors: Set<object>): unknown {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new TypeError(`${value} cannot be stored as JSON`);
    }
    if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') {
      throw new TypeError(`a ${typeof value} cannot be stored as JSON`);
    }
    return value;
  }
  if (ancestors.has(value)) throw new TypeError('a cyclic value cannot be stored as JSON');
  ancestors.add(value);
  try {
    if (Array.isArray(value)) {
      const copy = value.map((entry) => sortKeys(entry, ancestors));
      carryRaw(value, copy);
      return copy;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const entry = (value as Record<string, unknown>)[key];
      if (entry !== undefined) out[key] = sortKeys(entry, ancestors);
    }
    carryRaw(value, out);
    return out;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * The Idempotency-Key for an operation id on one session: `op-` and the base64url
 * SHA-256 of both (47 visible ASCII characters, whatever the id holds). The service
 * keeps keys per credential, not per session, so the session id is part of it:
 * the same operation id on two sessions is two operations, as in the SDK.
 */
export async function operationKey(sessionId: string, operationId: string): Promise<string> {
  const data = new TextEncoder().encode(JSON.stringify([sessionId, operationId]));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return 'op-' + btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The body that records an empty append's operation id: a replace of the items from
 * the largest seq on (there are none) by none. The service records no key for an
 * empty append (it writes nothing), and MemorySession does record the operation id;
 * this write changes no item, creates no session, and is keyed like any operation.
 * It counts as a write on an existing session (its revision, a `replace` event).
 */
export const EMPTY_APPEND_BODY = '{"from_seq":9223372036854775807,"items":[]}';

/**
 * How many places in the history a repeated `replace_suffix` is looked for: each
 * costs a read and a replayed request, and a repeat is found at the newest one
 * unless the history was rewritten since.
 */
export const MAX_REPLAY_PROBES = 16;

/**
 * Where an earlier run of an operation could have put `replacement`: the indexes of
 * `history` it starts at (every index when it is empty), newest first; then, as it
 * may have been popped or replaced since, every other index from the end; at most
 * MAX_REPLAY_PROBES in all.
 */
export function replacementPositions(
  history: readonly AgentInputItem[],
  replacement: readonly AgentInputItem[],
): number[] {
  const found: number[] = [];
  const others: number[] = [];
  const wanted = canonicalJson(replacement);
  for (let index = history.length; index >= 0; index--) {
    const at = index + replacement.length <= history.length;
    const fits = at && canonicalJson(history.slice(index, index + replacement.length)) === wanted;
    (fits ? found : others).push(index);
  }
  return [...found, ...others].slice(0, MAX_REPLAY_PROBES);
}

/** Whether two item lists are the same once each is in the form the service gives back. */
export function sameItems(left: readonly AgentInputItem[], right: readonly AgentInputItem[]): boolean {
  return left.length === right.length && canonicalJson(left) === canonicalJson(right);
}
