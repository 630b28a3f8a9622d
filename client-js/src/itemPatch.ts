/**
 * The exact-read-back record of an item: what the stored (Responses) form of a JS
 * item cannot say by itself, kept as a short patch in the item's `provider_data`.
 *
 * `provider_data` is the Python SDK's own field for data that is not the OpenAI
 * API's: its Responses model removes it before sending an item, its
 * `TResponseInputItem` types ignore it, and the JS side reads the patch and removes
 * it. The patch turns the item read from the stored form into the very JS item
 * that was written: a part output given as a string, an absent `providerData`,
 * the `annotations`, id and status added so that the stored form is a valid
 * Python SDK item. A member set to `undefined` counts as absent, as in JSON.
 */

export type Path = (string | number)[];
/** d: delete; s: set to a value; w: replace an object by its member. */
export type PatchOp = ['d', Path] | ['s', Path, unknown] | ['w', Path, string];

export const PROVIDER_DATA = 'provider_data';
export const PATCH_KEY = 'agents_js';

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The ops that turn `read` into `written`. */
export function diff(read: unknown, written: unknown, path: Path = [], ops: PatchOp[] = []): PatchOp[] {
  if (read === written || Object.is(read, written)) return ops;
  if (typeof written === 'string' && isObj(read)) {
    const key = Object.keys(read).find((k) => read[k] === written);
    if (key !== undefined) {
      ops.push(['w', path, key]);
      return ops;
    }
  }
  if (Array.isArray(read) && Array.isArray(written) && read.length === written.length) {
    written.forEach((entry, index) => diff(read[index], entry, [...path, index], ops));
    return ops;
  }
  if (isObj(read) && isObj(written)) {
    for (const [key, value] of Object.entries(written)) {
      // An undefined member is an absent one, as in JSON (and in `toEqual`).
      if (value === undefined) {
        if (read[key] !== undefined) ops.push(['d', [...path, key]]);
      } else if (read[key] === undefined) {
        ops.push(['s', [...path, key], value]);
      } else {
        diff(read[key], value, [...path, key], ops);
      }
    }
    for (const key of Object.keys(read)) {
      if (read[key] !== undefined && !(key in written)) ops.push(['d', [...path, key]]);
    }
    return ops;
  }
  ops.push(['s', path, written]);
  return ops;
}

function copy(value: unknown): unknown {
  if (Array.isArray(value)) return [...value];
  if (isObj(value)) return { ...value };
  return value;
}

/** Apply `ops` to `root`, copying every container on a changed path (the input is not touched). */
export function applyPatch(root: unknown, ops: readonly PatchOp[]): unknown {
  let result = copy(root);
  for (const op of ops) {
    const path = op[1];
    if (path.length === 0) {
      if (op[0] === 's') result = op[2];
      else if (op[0] === 'w' && isObj(result)) result = result[op[2]];
      continue;
    }
    let parent = result as Obj;
    for (const step of path.slice(0, -1)) {
      const child = copy(parent[step as string]);
      parent[step as string] = child;
      parent = child as Obj;
    }
    const last = path[path.length - 1] as string;
    if (op[0] === 'd') delete parent[last];
    else if (op[0] === 's') parent[last] = op[2];
    else if (isObj(parent[last])) parent[last] = (parent[last] as Obj)[op[2]];
  }
  return result;
}

/** Attach `ops` to a stored item (next to any provider_data it already has). */
export function attachPatch(stored: Obj, ops: PatchOp[]): Obj {
  if (ops.length === 0) return stored;
  const existing = isObj(stored[PROVIDER_DATA]) ? stored[PROVIDER_DATA] : {};
  return { ...stored, [PROVIDER_DATA]: { ...existing, [PATCH_KEY]: ops } };
}

/** Split a stored item into the item without its patch, and the patch (or null). */
export function detachPatch(stored: Obj): [Obj, PatchOp[] | null] {
  const data = stored[PROVIDER_DATA];
  if (!isObj(data) || !Array.isArray(data[PATCH_KEY])) return [stored, null];
  const { [PATCH_KEY]: ops, ...rest } = data;
  const { [PROVIDER_DATA]: _data, ...item } = stored;
  if (Object.keys(rest).length > 0) item[PROVIDER_DATA] = rest;
  return [item, ops as PatchOp[]];
}
