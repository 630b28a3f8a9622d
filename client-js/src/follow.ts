/**
 * Following a session live: its changes as the service's server-sent events
 * (`GET /v1/sessions/{id}/events`), resumed after a lost connection from the last
 * item seen (`Last-Event-ID`) without gaps or repeats. The Python client's
 * `RemoteSession.follow` does the same.
 */

import type { AgentInputItem } from '@openai/agents-core';

import { TransportError } from './errors.js';
import { fromStoredItems, type StoredItem } from './items.js';
import { parseJson } from './json.js';
import { LAST_EVENT_ID } from './protocol.js';
import { MAX_BACKOFF_MS, problemError, type Logger } from './transport.js';

/**
 * One change. `append`: a new item, its `seq`, as the SDK reads it (`item`) and as
 * stored (`stored`). `pop`, `replace`, `clear`: re-read the session to see what it
 * holds now (`revision` is its ETag's number). `clear` also says the session ended
 * (cleared, expired): the appends after it are a new history, numbered from 1.
 * `resync`: changes came faster than this follower read them and some notices were
 * dropped; re-read the session. `lease`: a run holds the session's lease (at the
 * stream's start, and at each acquisition and renewal), until `expiresAt` (ISO 8601)
 * unless renewed; `lease-end`: it was released or expired.
 */
export type FollowEvent =
  | { kind: 'append'; seq: number; item: AgentInputItem; stored: StoredItem }
  | { kind: 'pop' | 'replace' | 'clear' | 'resync'; revision: number | null }
  | { kind: 'lease'; token: number; expiresAt: string; ttlMs: number }
  | { kind: 'lease-end'; token: number };

export type FollowTarget = {
  /** The session's events URL. */
  url: string;
  headers: Record<string, string>;
  fetch: typeof globalThis.fetch;
  backoffMs: number;
  logger: Logger;
  /** Start after this seq (0: from the first item); undefined: from now on. */
  after?: number | undefined;
  /** Ends the iteration (quietly) when aborted. */
  signal?: AbortSignal | undefined;
};

/** The events of one session, for ever: stop with `break`, `return()` or the signal. */
export async function* followEvents(target: FollowTarget): AsyncGenerator<FollowEvent, void, undefined> {
  let cursor = target.after;
  let attempt = 0;
  while (!target.signal?.aborted) {
    const headers: Record<string, string> = { ...target.headers, Accept: 'text/event-stream' };
    if (cursor !== undefined) headers[LAST_EVENT_ID] = String(cursor);
    try {
      for await (const event of streamEvents(target, headers)) {
        attempt = 0;
        if (event === null) continue; // a comment: the stream is alive
        if (event.kind === 'append') cursor = event.seq;
        else if (event.kind === 'clear') cursor = 0; // a resumed stream starts the new history at 1
        yield event;
      }
    } catch (error) {
      if (target.signal?.aborted) return;
      if (!(error instanceof TransportError)) throw error;
      // Said once per outage: the stream is resumed until it answers.
      if (attempt === 0) target.logger.warn(`${error.message}; reconnecting until it answers`);
    }
    // The stream ended (a restart, a proxy) or the connection was lost: resume.
    await pause(Math.min(MAX_BACKOFF_MS, target.backoffMs * 2 ** attempt), target.signal);
    attempt++;
  }
}

/** One connection's events; `null` for a comment line. */
async function* streamEvents(
  target: FollowTarget,
  headers: Record<string, string>,
): AsyncGenerator<FollowEvent | null, void, undefined> {
  let response: Response;
  try {
    response = await target.fetch(target.url, { headers, signal: target.signal ?? null });
  } catch (error) {
    if (target.signal?.aborted) throw error;
    throw new TransportError(`could not follow ${target.url}: ${error}`, { url: target.url, cause: error });
  }
  if (response.status >= 400) throw problemError({ status: response.status, text: await response.text() });
  let fields: Record<string, string> = {};
  try {
    for await (const line of lines(response.body!)) {
      if (line.startsWith(':')) {
        yield null;
        continue;
      }
      if (line) {
        const colon = line.indexOf(':');
        const name = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        fields[name] = name in fields ? `${fields[name]}\n${value}` : value;
        continue;
      }
      if (Object.keys(fields).length === 0) continue;
      const event = decode(fields);
      fields = {};
      yield event;
    }
  } catch (error) {
    if (target.signal?.aborted || error instanceof TransportError) throw error;
    throw new TransportError(`the stream of ${target.url} broke: ${error}`, { url: target.url, cause: error });
  }
}

function decode(fields: Record<string, string>): FollowEvent {
  const kind = fields.event ?? 'message';
  const data = parseJson(fields.data ?? 'null');
  if (kind === 'append') {
    const stored = data as StoredItem;
    return { kind, seq: Number(fields.id), item: fromStoredItems([stored])[0]!, stored };
  }
  if (kind === 'lease') {
    const lease = data as { token: number; expires_at: string; ttl: number };
    return { kind, token: lease.token, expiresAt: lease.expires_at, ttlMs: lease.ttl * 1000 };
  }
  if (kind === 'lease-end') return { kind, token: (data as { token: number }).token };
  const revision = (data as { revision?: number } | null)?.revision;
  return { kind: kind as 'pop', revision: revision ?? null };
}

/** The lines of an event stream (LF, CRLF or CR ends a line). */
async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string, void, undefined> {
  const decoder = new TextDecoder();
  let buffer = '';
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A CR at the very end may be the first half of a CRLF still to come.
        if (buffer[end] === '\r' && end === buffer.length - 1) break;
        const width = buffer.startsWith('\r\n', end) ? 2 : 1;
        yield buffer.slice(0, end);
        buffer = buffer.slice(end + width);
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}
