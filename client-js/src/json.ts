/**
 * Lossless JSON numbers. `JSON.parse` turns `1.0` into `1`, `-0.0` into `0` and
 * integers beyond 2^53 into their nearest double, so a stored item read and written
 * back would change. `parseJson` remembers the source text of every number whose
 * text a plain `JSON.stringify` would not reproduce, on the object or array that
 * holds it; `stringifyJson` writes that text again while the value is still the
 * number it was read as. Values stay plain JS numbers for the caller.
 */

type Holder = Record<string, unknown> | unknown[];

/** holder -> key -> the number's source text. */
const RAW = new WeakMap<object, Map<string, string>>();

// A JSON string (skipped as a whole) or a number token outside strings.
const TOKENS = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;

function nonce(): string {
  return Math.random().toString(36).slice(2, 12);
}

function remember(holder: object, key: string, text: string): void {
  let map = RAW.get(holder);
  if (map === undefined) RAW.set(holder, (map = new Map()));
  map.set(key, text);
}

/** `JSON.parse`, keeping the text of numbers that would not survive a round trip. */
export function parseJson(text: string): unknown {
  const tag = `\u0000num:${nonce()}:`;
  let marked = false;
  const rewritten = text.replace(TOKENS, (token) => {
    if (token.startsWith('"')) return token;
    if (JSON.stringify(Number(token)) === token) return token;
    marked = true;
    return JSON.stringify(tag + token);
  });
  if (!marked) return JSON.parse(text);
  return JSON.parse(rewritten, function (this: Holder, key: string, value: unknown) {
    if (typeof value === 'string' && value.startsWith(tag)) {
      const source = value.slice(tag.length);
      remember(this, key, source);
      return Number(source);
    }
    return value;
  });
}

/** The source text `parseJson` kept for `holder[key]`, if the value is still that number. */
function rawText(holder: unknown, key: string, value: unknown): string | undefined {
  if (typeof value !== 'number' || typeof holder !== 'object' || holder === null) return undefined;
  const text = RAW.get(holder)?.get(key);
  return text !== undefined && Object.is(Number(text), value) ? text : undefined;
}

/** Copy the kept number texts of `from`'s members to the same members of `to`. */
export function carryRaw(from: unknown, to: unknown): void {
  if (typeof from !== 'object' || from === null || typeof to !== 'object' || to === null) return;
  const map = RAW.get(from);
  if (map === undefined) return;
  for (const [key, text] of map) {
    const value = (to as Record<string, unknown>)[key];
    if (rawText(from, key, value) !== undefined) remember(to, key, text);
  }
}

/** `JSON.stringify`, writing numbers read by `parseJson` as their source text. */
export function stringifyJson(value: unknown): string {
  const tag = `\u0000raw:${nonce()}:`;
  const texts: string[] = [];
  const out = JSON.stringify(value, function (this: unknown, key: string, inner: unknown) {
    const text = rawText(this, key, inner);
    if (text === undefined) return inner;
    texts.push(text);
    return tag + (texts.length - 1);
  });
  if (texts.length === 0) return out;
  // Only a string holding this call's random tag (with its NUL) could match as well.
  const escaped = JSON.stringify(tag).slice(1, -1).replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
  return out.replace(new RegExp(`"${escaped}(\\d+)"`, 'g'), (_m, index: string) => texts[Number(index)]!);
}
