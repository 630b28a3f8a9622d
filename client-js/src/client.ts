/**
 * `SessionMemoryClient`: one service and one API key, like the Python client's
 * `SessionMemoryClient`: list the sessions, open `RemoteSession`s, and what a
 * session has beyond the SDK's Session (its record and metadata, a read with seqs
 * and the ETag, fork, follow, and its run lease: who holds it, and freeing it). Requests go through a RemoteSession's transport, so
 * they are retried, aborted and settled as the session's own are.
 */

import { ProblemError } from './errors.js';
import type { StoredItem } from './items.js';
import { parseJson, stringifyJson } from './json.js';
import { followEvents, type FollowEvent } from './follow.js';
import type { RunLease } from './lease.js';
import { API_PREFIX, ETAG, IF_MATCH, ProblemType, RUN_LEASE, sessionPath, validateSessionId } from './protocol.js';
import { RemoteSession, type CallOptions, type RemoteSessionOptions, type SessionSettings } from './session.js';
import { API_KEY_ENV, DEFAULT_BACKOFF_MS, readEnv, type Answer, type RequestSpec } from './transport.js';

/** A session's record, as `GET /v1/sessions/{id}` returns it (timestamps in ISO 8601). */
export type SessionRecord = {
  id: string;
  item_count: number;
  created_at: string;
  updated_at: string;
  /** When the session expires unless written again; null: never. */
  expires_at: string | null;
  /** What the session carries besides its items (`{}` when none). */
  metadata: Record<string, unknown>;
  /**
   * Its own time-to-live in seconds, set by a write's `Session-TTL` header (0: it
   * never expires); null: it has none, and the service's default applies.
   */
  ttl: number | null;
  /**
   * The highest seq it has ever given (0: none); above its newest item's after a pop
   * or a replace, since seqs are never reused.
   */
  last_seq: number;
};

/** One page of sessions, most recently updated first. */
export type SessionPage = {
  sessions: SessionRecord[];
  /** Pass as `cursor` for the next page; null on the last. */
  nextCursor: string | null;
};

export type ListOptions = CallOptions & {
  /** Sessions per page (the service's default is 50, at most 1000). */
  limit?: number;
  cursor?: string;
  /** Only ids that start with this. */
  prefix?: string;
  /** Only sessions whose metadata holds each of these top-level values. */
  metadata?: Record<string, string | number | boolean>;
};

/** One page of a session's items, oldest first, with their seqs and the session's ETag. */
export type ItemPage = {
  items: StoredItem[];
  firstSeq: number | null;
  lastSeq: number | null;
  /** More items lie beyond this page in the direction of travel. */
  hasMore: boolean;
  /** Send as If-Match (or its number as `ifRevision`) to write only if unchanged. */
  etag: string | null;
};

export type ReadOptions = CallOptions & { limit?: number; after?: number; before?: number };

/** The new session a fork made, what was copied into it (numbered from 1), and its revision. */
export type ForkResult = {
  sessionId: string;
  count: number;
  firstSeq: number | null;
  lastSeq: number | null;
  revision: number;
};

export type ClientOptions = Omit<RemoteSessionOptions, 'sessionSettings'>;

/** A RemoteSession whose transport the client uses for the calls the SDK has no name for. */
class Endpoint extends RemoteSession {
  call(spec: RequestSpec): Promise<Answer> {
    return this.request(spec);
  }
}

function revision(answer: Answer): number {
  return Number((answer.headers.get(ETAG) ?? '"0"').replaceAll('"', ''));
}

function both(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  return a && b ? AbortSignal.any([a, b]) : (a ?? b);
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) search.append(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export class SessionMemoryClient {
  readonly baseUrl: string;
  private readonly options: ClientOptions;
  private readonly root: Endpoint;

  constructor(options: ClientOptions = {}) {
    this.options = { ...options };
    // Any valid id: the root calls use its transport, not its path.
    this.root = new Endpoint('-', this.options);
    this.baseUrl = this.root.baseUrl;
  }

  /** A `RemoteSession` on this service with this client's options. */
  session(sessionId: string, sessionSettings?: SessionSettings): RemoteSession {
    return new RemoteSession(sessionId, { ...this.options, ...(sessionSettings ? { sessionSettings } : {}) });
  }

  private endpoint(sessionId: string): Endpoint {
    return new Endpoint(sessionId, this.options);
  }

  /** One page of sessions, most recently updated first; follow `nextCursor`. */
  async listSessions(options: ListOptions = {}): Promise<SessionPage> {
    const filters = Object.fromEntries(
      Object.entries(options.metadata ?? {}).map(([key, value]) => [`metadata.${key}`, value]),
    );
    const answer = await this.root.call({
      method: 'GET',
      root: true,
      path: `${API_PREFIX}/sessions`,
      query: query({ limit: options.limit, cursor: options.cursor, prefix: options.prefix, ...filters }),
      signal: options.signal,
    });
    const body = parseJson(answer.text) as { sessions: SessionRecord[]; next_cursor?: string | null };
    return { sessions: body.sessions, nextCursor: body.next_cursor ?? null };
  }

  /** Every session this key sees (with the same filters), page after page. */
  async *iterSessions(options: Omit<ListOptions, 'cursor'> = {}): AsyncGenerator<SessionRecord, void, undefined> {
    let cursor: string | undefined;
    do {
      const page = await this.listSessions({ ...options, ...(cursor ? { cursor } : {}) });
      yield* page.sessions;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  /** The session's record; `ProblemError` 404 when it does not exist. */
  async getRecord(sessionId: string, options: CallOptions = {}): Promise<SessionRecord> {
    const answer = await this.endpoint(sessionId).call({ method: 'GET', path: '', signal: options.signal });
    return parseJson(answer.text) as SessionRecord;
  }

  /**
   * Change the session's metadata with a JSON merge patch (RFC 7396): a key set to
   * null goes, an object merges into an object; `null` removes all of it. Returns the
   * new record. With `ifRevision`, only if the session is still at that revision
   * (else `ProblemError` 412). `ProblemError` 404 when the session does not exist.
   */
  async patchMetadata(
    sessionId: string,
    patch: Record<string, unknown> | null,
    options: CallOptions & { ifRevision?: number } = {},
  ): Promise<SessionRecord> {
    const answer = await this.endpoint(sessionId).call({
      method: 'PATCH',
      path: '',
      body: stringifyJson({ metadata: patch }),
      ...(options.ifRevision === undefined ? {} : { headers: { [IF_MATCH]: `"${options.ifRevision}"` } }),
      signal: options.signal,
    });
    return parseJson(answer.text) as SessionRecord;
  }

  /**
   * One page of items with their seqs and the ETag. No cursor: the latest `limit`
   * (all when absent); `after`: the oldest `limit` above it, walking forward;
   * `before`: the latest `limit` below it, walking back.
   */
  async readItems(sessionId: string, options: ReadOptions = {}): Promise<ItemPage> {
    const answer = await this.endpoint(sessionId).call({
      method: 'GET',
      path: '/items',
      query: query({ limit: options.limit, after: options.after, before: options.before }),
      signal: options.signal,
    });
    const body = parseJson(answer.text) as {
      items: StoredItem[];
      first_seq: number | null;
      last_seq: number | null;
      has_more: boolean;
    };
    return {
      items: body.items,
      firstSeq: body.first_seq,
      lastSeq: body.last_seq,
      hasMore: body.has_more,
      etag: answer.headers.get(ETAG),
    };
  }

  /**
   * Copy the session's items through `throughSeq` (all when absent) into a new
   * session, numbered from 1. `ProblemError` 409 (`session-exists`) when the new id
   * exists, 404 when this session does not. Retried under one Idempotency-Key.
   */
  async fork(
    sessionId: string,
    newSessionId: string,
    options: CallOptions & { throughSeq?: number } = {},
  ): Promise<ForkResult> {
    const body: Record<string, unknown> = { session_id: validateSessionId(newSessionId) };
    if (options.throughSeq !== undefined) body.through_seq = options.throughSeq;
    const answer = await this.endpoint(sessionId).call({
      method: 'POST',
      path: '/fork',
      body: stringifyJson(body),
      idempotentWrite: true,
      signal: options.signal,
    });
    const result = parseJson(answer.text) as {
      session_id: string;
      count: number;
      first_seq: number | null;
      last_seq: number | null;
    };
    return {
      sessionId: result.session_id,
      count: result.count,
      firstSeq: result.first_seq,
      lastSeq: result.last_seq,
      revision: revision(answer),
    };
  }

  /**
   * The session's run lease as held now (its token, expiry and TTL), or null when no
   * run holds it. `lost` is always false: this is a look, not a callback holding it.
   */
  async getLease(sessionId: string, options: CallOptions = {}): Promise<RunLease | null> {
    let answer: Answer;
    try {
      answer = await this.endpoint(sessionId).call({ method: 'GET', path: '/lease', signal: options.signal });
    } catch (error) {
      if (error instanceof ProblemError && error.type === ProblemType.LEASE_NOT_HELD) return null;
      throw error;
    }
    const held = parseJson(answer.text) as { token: number; expires_at: string; ttl: number };
    return { sessionId, token: held.token, expiresAt: held.expires_at, ttlMs: held.ttl * 1000, lost: false };
  }

  /**
   * Free the session's lease `token` now: an operator's way out of a lease a crashed
   * run left held (its holder's writes are refused from then on). `ProblemError` 409
   * `lease-lost` when `token` is not the lease held (it ended, or another run's
   * followed it): nothing was freed. A release retried after its answer was lost may
   * say so too, having freed it.
   */
  async releaseLease(sessionId: string, token: number, options: CallOptions = {}): Promise<void> {
    await this.endpoint(sessionId).call({
      method: 'DELETE',
      path: '/lease',
      headers: { [RUN_LEASE]: String(token) },
      signal: options.signal,
    });
  }

  /**
   * The session's changes as they happen, after seq `after` (0: from the first
   * item; absent: from now on). Never ends by itself: stop with `break` or the
   * signal. A lost connection is resumed after the last item seen, without gaps or
   * repeats (after a `clear`, from the new history's start). An error answer (401;
   * 503 when the server follows too many streams) is thrown as `ProblemError`.
   */
  follow(sessionId: string, options: CallOptions & { after?: number } = {}): AsyncGenerator<FollowEvent, void, undefined> {
    validateSessionId(sessionId);
    const apiKey = this.options.apiKey ?? readEnv(API_KEY_ENV);
    return followEvents({
      url: `${this.baseUrl}${sessionPath(sessionId)}/events`,
      headers: apiKey ? { Authorization: `Bearer ${apiKey}` } : {},
      fetch: this.options.fetch ?? globalThis.fetch.bind(globalThis),
      backoffMs: this.options.backoffMs ?? DEFAULT_BACKOFF_MS,
      logger: this.options.logger ?? console,
      after: options.after,
      signal: both(options.signal, this.options.signal),
    });
  }
}
