/**
 * `getItems`: a session's latest items, read incrementally through a `ReadCache`, as
 * the Python client's `_reads.py` and `_cache.py` do.
 *
 * Every read sends a `limit` (the caller's, or `PAGE_ITEMS` per page for "all"), so
 * it takes the service's fast path, and pages back (`before`) while the service says
 * there is more. With a cache it also sends the read token of what it holds
 * (`known`); the service answers, from one snapshot, that nothing changed, or with
 * only the items appended since, or with a full page when anything else happened (a
 * pop, a replace, a clear, an expiry, the session made again). A read is never stale:
 * the check is the service's, within the read.
 *
 * Every read hands out new objects, so a caller changing them changes nothing kept:
 * an item whose values are all strings, numbers, booleans or null is kept as is and
 * handed out as a spread copy (its values are immutable); any other item is kept as
 * its JSON text and parsed again.
 */

import type { StoredItem } from './items.js';
import { parseJson, stringifyJson } from './json.js';

/** Enough for a few long conversations (a 1,000-item history of 1 KB items is 1 MB). */
export const DEFAULT_CACHE_BYTES = 8 * 1024 * 1024;
/** Items per request when every item is asked for (a page is also bounded by bytes). */
export const PAGE_ITEMS = 10_000;
/** A read stitched from several pages starts over when a write lands between them. */
const ATTEMPTS = 3;

type Kept = StoredItem | string;

function keep(item: StoredItem): Kept {
  // Kept as text, written by stringifyJson: it keeps numbers' own text (1.0, big
  // integers) that a copy of the object would lose, and each read gets new objects.
  return stringifyJson(item);
}

function fresh(kept: Kept): StoredItem {
  return typeof kept === 'string' ? (parseJson(kept) as StoredItem) : { ...kept };
}

/**
 * One session's latest items as last read: the first `count` of two arrays. An entry
 * never changes once made; what was appended since extends the arrays in place when
 * this entry ends where they do (each read's entry follows the last), so a newer
 * entry costs what was added, not the history; an older one still sees its own
 * `count`. Otherwise the new entry copies.
 */
export class CacheEntry {
  readonly count: number;
  readonly nbytes: number;

  constructor(
    readonly token: string,
    private readonly items: Kept[],
    private readonly sizes: number[],
    /** The items start at the session's first item. */
    readonly complete: boolean,
    count?: number,
    nbytes?: number,
  ) {
    this.count = count ?? items.length;
    this.nbytes = nbytes ?? sizes.slice(0, this.count).reduce((sum, size) => sum + size, 0);
  }

  static read(token: string, items: StoredItem[], bytes: number, complete: boolean): CacheEntry {
    // Each item's share of the bytes read; a page's envelope is small beside its items.
    const share = Math.max(1, Math.floor(bytes / Math.max(1, items.length)));
    return new CacheEntry(token, items.map(keep), items.map(() => share), complete);
  }

  /** This entry with `added` (what was appended since) after it, at its token. */
  followedBy(added: CacheEntry): CacheEntry {
    const newItems = added.items.slice(0, added.count);
    const newSizes = added.sizes.slice(0, added.count);
    let items = this.items;
    let sizes = this.sizes;
    if (items.length === this.count) {
      for (const item of newItems) items.push(item);
      for (const size of newSizes) sizes.push(size);
    } else {
      items = [...items.slice(0, this.count), ...newItems];
      sizes = [...sizes.slice(0, this.count), ...newSizes];
    }
    return new CacheEntry(added.token, items, sizes, this.complete, this.count + added.count, this.nbytes + added.nbytes);
  }

  /** Whether the latest `limit` items (all: undefined) can come from this entry plus what was appended. */
  covers(limit: number | undefined): boolean {
    return this.complete || (limit !== undefined && this.count >= limit);
  }

  /** New copies of the latest `limit` items (all: undefined). */
  latest(limit: number | undefined): StoredItem[] {
    const start = limit === undefined || limit >= this.count ? 0 : this.count - limit;
    return this.items.slice(start, this.count).map(fresh);
  }

  /**
   * This entry within `maxBytes`: when over it, its oldest items dropped down to three
   * quarters of it (so a long history is not trimmed again on every read); undefined
   * when not even the newest item fits.
   */
  trimmed(maxBytes: number): CacheEntry | undefined {
    if (this.nbytes <= maxBytes) return this;
    const target = Math.floor((maxBytes * 3) / 4);
    let total = this.nbytes;
    let start = 0;
    while (total > target && start < this.count) total -= this.sizes[start++]!;
    if (start === this.count) return undefined;
    return new CacheEntry(
      this.token,
      this.items.slice(start, this.count),
      this.sizes.slice(start, this.count),
      false,
      undefined,
      total,
    );
  }
}

/** Sessions' latest items within `maxBytes` of JSON, the least recently read out first. */
export class ReadCache {
  private readonly entries = new Map<string, CacheEntry>();
  private bytes = 0;

  constructor(readonly maxBytes: number = DEFAULT_CACHE_BYTES) {
    if (!(maxBytes >= 0)) throw new RangeError(`cacheBytes must be 0 or more, not ${maxBytes}`);
  }

  /** The JSON bytes of the items held now. */
  get nbytes(): number {
    return this.bytes;
  }

  get(key: string): CacheEntry | undefined {
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      // A Map keeps insertion order: re-inserting makes it the most recently read.
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return entry;
  }

  /** Keep `entry` for `key` (undefined: forget it), then evict down to the bound. */
  put(key: string, entry: CacheEntry | undefined): void {
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old.nbytes;
    }
    const kept = entry?.trimmed(this.maxBytes);
    if (kept === undefined) return;
    this.entries.set(key, kept);
    this.bytes += kept.nbytes;
    for (const [oldest, evicted] of this.entries) {
      if (this.bytes <= this.maxBytes || oldest === key) break;
      this.entries.delete(oldest);
      this.bytes -= evicted.nbytes;
    }
  }
}

/** One GET of the session's items with this query; its ETag and body. */
export type FetchPage = (query: string) => Promise<{ etag: string | null; text: string }>;

type Page = {
  items: StoredItem[];
  first_seq?: number | null;
  has_more?: boolean;
  since?: number | null;
  unchanged?: boolean;
  read_token?: string;
};

class Moved extends Error {}

type Pages = { items: StoredItem[]; complete: boolean; bytes: number; consistent: boolean };

/**
 * The latest `limit` items (all: undefined) from a first page (`first`, read here when
 * undefined) and the pages before it, while the service says there is more. The pages
 * must come from one revision (one ETag), else `Moved`; with `anyway` they are taken
 * as they come.
 */
async function full(
  get: FetchPage,
  limit: number | undefined,
  first: { etag: string | null; text: string } | undefined,
  anyway: boolean,
): Promise<Pages> {
  const pageSize = limit ?? PAGE_ITEMS;
  const answer = first ?? (await get(`?limit=${pageSize}`));
  let page = parseJson(answer.text) as Page;
  const items = page.items;
  let bytes = answer.text.length;
  let consistent = true;
  while (page.has_more && (limit === undefined || items.length < limit)) {
    const wanted = limit === undefined ? pageSize : limit - items.length;
    const older = await get(`?limit=${wanted}&before=${page.first_seq}`);
    if (older.etag !== answer.etag) {
      if (!anyway) throw new Moved();
      consistent = false;
    }
    page = parseJson(older.text) as Page;
    items.unshift(...page.items);
    bytes += older.text.length;
  }
  return { items, complete: !page.has_more, bytes, consistent };
}

/**
 * What changed since `base` (nothing known: undefined), as the next entry; or the items
 * alone when they are not to be kept (no read token: a service without incremental
 * reads; or pages of several revisions, taken `anyway`).
 */
async function since(
  get: FetchPage,
  limit: number | undefined,
  base: CacheEntry | undefined,
  anyway: boolean,
): Promise<CacheEntry | StoredItem[]> {
  const answer = await get(`?limit=${limit ?? PAGE_ITEMS}&known=${base?.token ?? ''}`);
  const page = parseJson(answer.text) as Page;
  const token = page.read_token ?? '';
  if (base !== undefined && token) {
    if (page.unchanged) return base;
    if (page.since !== undefined && page.since !== null) {
      if (!page.has_more) return base.followedBy(CacheEntry.read(token, page.items, answer.text.length, false));
      if (limit !== undefined && page.items.length >= limit) {
        return CacheEntry.read(token, page.items, answer.text.length, false);
      }
      // More was appended than one page holds, and all of it is needed.
      return since(get, limit, undefined, anyway);
    }
  }
  const pages = await full(get, limit, answer, anyway);
  if (!token || !pages.consistent) return pages.items;
  return CacheEntry.read(token, pages.items, pages.bytes, pages.complete);
}

/** The latest `limit` items (all: undefined), oldest first, new objects; `cache` undefined: off. */
export async function readLatest(
  get: FetchPage,
  cache: ReadCache | undefined,
  key: string,
  limit: number | undefined,
): Promise<StoredItem[]> {
  const entry = cache?.get(key);
  let base = entry?.covers(limit) ? entry : undefined;
  for (let attempt = 0; ; attempt++) {
    // The last attempt takes the pages as they come, as a read of pages does.
    const anyway = attempt === ATTEMPTS - 1;
    try {
      if (cache === undefined || limit === 0) return (await full(get, limit, undefined, anyway)).items;
      const got = await since(get, limit, base, anyway);
      if (Array.isArray(got)) {
        cache.put(key, undefined); // nothing to keep: the parsed items are the caller's
        return got;
      }
      cache.put(key, got);
      return got.latest(limit);
    } catch (error) {
      if (!(error instanceof Moved)) throw error;
      base = undefined;
    }
  }
}
