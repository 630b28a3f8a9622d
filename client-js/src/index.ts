/** session-memory-client: a shared, server-kept history for the OpenAI Agents SDK (JavaScript). */

export {
  MAX_SUFFIX_ATTEMPTS,
  RemoteSession,
  type CallOptions,
  type RemoteSessionOptions,
  type SessionSettings,
} from './session.js';
export {
  API_KEY_ENV,
  BASE_URL_ENV,
  DEFAULT_BACKOFF_MS,
  DEFAULT_BASE_URL,
  DEFAULT_RETRY_BUDGET_MS,
  DEFAULT_TIMEOUT_MS,
  MAX_BACKOFF_MS,
  type Logger,
} from './transport.js';
export { WriteAbortedError } from './aborts.js';
export { DEFAULT_LEASE_TTL_MS, type RunLease, type RunLeaseOptions, type UnleasedWrites } from './lease.js';
export {
  SessionMemoryClient,
  type ClientOptions,
  type ForkResult,
  type ItemPage,
  type ListOptions,
  type ReadOptions,
  type SessionPage,
  type SessionRecord,
} from './client.js';
export { type FollowEvent } from './follow.js';
export {
  ConnectError,
  ProblemError,
  RequestTimeout,
  SessionMemoryError,
  TransportError,
  type Problem,
} from './errors.js';
export {
  ALREADY_APPLIED,
  canonicalJson,
  operationKey,
  SUFFIX_MISMATCH,
  type HistoryTransaction,
  type HistoryTransactionArgs,
} from './history.js';
export { canonicalItems, fromStoredItems, toStoredItems, type StoredItem } from './items.js';
export { CacheEntry, DEFAULT_CACHE_BYTES, PAGE_ITEMS, ReadCache } from './reads.js';
export {
  API_PREFIX,
  ETAG,
  IDEMPOTENCY_KEY,
  IF_MATCH,
  LAST_EVENT_ID,
  MAX_SEQ,
  PROBLEM_MEDIA_TYPE,
  PROBLEM_TYPE_PREFIX,
  REQUEST_ID,
  RUN_LEASE,
  SESSION_METADATA,
  SESSION_TTL,
  MAX_SESSION_ID_LENGTH,
  ProblemType,
  sessionIdError,
  sessionPath,
  validateSessionId,
} from './protocol.js';
