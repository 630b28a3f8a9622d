/**
 * The shared item shape: translation between the JS Agents SDK's protocol items
 * (`AgentInputItem`: `callId`, `function_call_result`, `providerData`, ...) and the
 * Responses API input items that session-memory stores and the Python SDK writes
 * (`call_id`, `function_call_output`, snake_case fields at the top level).
 *
 * `toStoredItems` runs on the way out (addItems), `fromStoredItems` on the way in
 * (getItems, popItem). The mapping follows what `@openai/agents-openai` does when it
 * sends protocol items to the Responses API and turns the API's output items into
 * protocol items, with one difference: nothing is dropped. Every stored field the
 * JS protocol has no place for travels in `providerData`, and every `providerData`
 * member is stored as a top-level field, so a stored item read by JS and written
 * back is the same JSON object. A JS item whose stored form cannot say everything
 * (a string tool output, say) carries a patch (itemPatch.ts) that makes its read
 * deep-equal to what was written.
 */

import type { AgentInputItem } from '@openai/agents-core';

import { applyPatch, attachPatch, detachPatch, diff } from './itemPatch.js';
import { carryRaw } from './json.js';

/** A JSON object as stored by the service. */
export type StoredItem = Record<string, unknown>;

type Obj = Record<string, unknown>;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  }
  if (isObj(a) && isObj(b)) {
    const keys = Object.keys(a).filter((k) => a[k] !== undefined);
    const other = Object.keys(b).filter((k) => b[k] !== undefined);
    return keys.length === other.length && keys.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** Copy `providerData` members into a stored object, the item's own fields first. */
function mergeProviderData(target: Obj, providerData: unknown): Obj {
  if (isObj(providerData)) {
    for (const [key, value] of Object.entries(providerData)) {
      // A member that repeats one of the item's own fields (the model converter
      // copies `type`, `id` and `phase` there) is already stored; on a real
      // conflict the item's own field wins, as in the SDK's Responses converter.
      if (value !== undefined && !(key in target)) target[key] = value;
    }
  }
  return target;
}

/** Split a stored object: `keep` says where each known key goes; the rest is providerData. */
function withProviderData(target: Obj, rest: Obj): Obj {
  if (Object.keys(rest).length > 0) target.providerData = rest;
  return target;
}

function setIfDefined(target: Obj, key: string, value: unknown): void {
  if (value !== undefined) target[key] = value;
}

// -- tool callers: {type: 'program', callerId} <-> {type: 'program', caller_id} --

function callerToStored(caller: unknown): unknown {
  if (isObj(caller) && caller.type === 'program' && 'callerId' in caller) {
    const { callerId, ...rest } = caller;
    return { ...rest, caller_id: callerId };
  }
  return caller;
}

function callerFromStored(caller: unknown): unknown {
  if (isObj(caller) && caller.type === 'program' && 'caller_id' in caller) {
    const { caller_id, ...rest } = caller;
    return { ...rest, callerId: caller_id };
  }
  return caller;
}

// -- content parts -------------------------------------------------------------

const PART_RENAMES: Record<string, string> = { promptCacheBreakpoint: 'prompt_cache_breakpoint' };
const PART_RENAMES_BACK: Record<string, string> = { prompt_cache_breakpoint: 'promptCacheBreakpoint' };
// The fields each JS part type has at its top level (besides `providerData`).
const PART_FIELDS: Record<string, readonly string[]> = {
  input_text: ['type', 'text', 'prompt_cache_breakpoint'],
  output_text: ['type', 'text'],
  refusal: ['type', 'refusal'],
  input_image: ['type', 'detail', 'prompt_cache_breakpoint'],
  input_file: ['type', 'filename', 'prompt_cache_breakpoint'],
};

function partToStored(part: unknown): unknown {
  if (!isObj(part) || typeof part.type !== 'string' || !(part.type in PART_FIELDS)) return part;
  const out: Obj = {};
  for (const [key, value] of Object.entries(part)) {
    if (key === 'providerData' || value === undefined) continue;
    if (part.type === 'input_image' && key === 'image') {
      if (typeof value === 'string') out.image_url = value;
      else if (isObj(value) && typeof value.id === 'string') out.file_id = value.id;
      else out.image = value;
    } else if (part.type === 'input_file' && key === 'file') {
      if (typeof value === 'string') {
        // As in the SDK: data URLs and bare base64 are file data, anything else a URL.
        // Base64 may be wrapped in lines (the Python SDK stores file_data as given).
        const trimmed = value.trim();
        const isData = trimmed.startsWith('data:') || /^[A-Za-z0-9+/=\s]+$/.test(trimmed);
        out[isData ? 'file_data' : 'file_url'] = value;
      } else if (isObj(value) && typeof value.id === 'string') out.file_id = value.id;
      else if (isObj(value) && typeof value.url === 'string') out.file_url = value.url;
      else out.file = value;
    } else {
      out[PART_RENAMES[key] ?? key] = value;
    }
  }
  return mergeProviderData(out, part.providerData);
}

function partFromStored(part: unknown): unknown {
  if (!isObj(part) || typeof part.type !== 'string' || !(part.type in PART_FIELDS)) return part;
  const fields = PART_FIELDS[part.type]!;
  const out: Obj = {};
  const rest: Obj = {};
  for (const [key, value] of Object.entries(part)) {
    if (part.type === 'input_image' && key === 'image_url' && typeof value === 'string') {
      out.image = value;
    } else if (part.type === 'input_image' && key === 'file_id' && typeof value === 'string') {
      out.image = { id: value };
    } else if (part.type === 'input_file' && key === 'file_id' && typeof value === 'string') {
      out.file = { id: value };
    } else if (part.type === 'input_file' && key === 'file_url' && typeof value === 'string') {
      out.file = { url: value };
    } else if (part.type === 'input_file' && key === 'file_data' && typeof value === 'string') {
      out.file = value;
    } else if (fields.includes(key)) {
      out[PART_RENAMES_BACK[key] ?? key] = value;
    } else {
      rest[key] = value;
    }
  }
  // Two of image_url/file_id (or file_*) cannot both live in one JS field.
  const sources = ['image_url', 'file_id', 'file_url', 'file_data'].filter((k) => k in part);
  if (sources.length > 1) {
    for (const key of sources.slice(1)) rest[key] = part[key];
  }
  return withProviderData(out, rest);
}

// -- messages ------------------------------------------------------------------

const MESSAGE_FIELDS = ['type', 'id', 'role', 'status', 'phase'];

function messageToStored(item: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'providerData' || value === undefined) continue;
    out[key] = key === 'content' && Array.isArray(value) ? value.map(partToStored) : value;
  }
  return mergeProviderData(out, item.providerData);
}

function messageFromStored(item: Obj): Obj {
  if (item.role === 'assistant' && item.type === 'message') return assistantFromStored(item);
  const out: Obj = {};
  const rest: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'content') out.content = Array.isArray(value) ? value.map(partFromStored) : value;
    else if (MESSAGE_FIELDS.includes(key)) out[key] = value;
    else rest[key] = value;
  }
  return withProviderData(out, rest);
}

/** As the SDK reads a model's output message: the extras, and a valid phase, in providerData. */
function assistantFromStored(item: Obj): Obj {
  const { id, type, role, content, status, phase, ...rest } = item;
  const out: Obj = { type, role };
  setIfDefined(out, 'id', id);
  out.content = Array.isArray(content) ? content.map(partFromStored) : content;
  setIfDefined(out, 'status', status);
  if (phase === 'commentary' || phase === 'final_answer') {
    out.phase = phase;
    rest.phase = phase;
  } else if (phase !== undefined) {
    rest.phase = phase;
  }
  out.providerData = rest;
  return out;
}

// -- function calls and their outputs -------------------------------------------


function functionCallToStored(item: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'providerData' || value === undefined) continue;
    if (key === 'callId') out.call_id = value;
    else if (key === 'caller') out.caller = callerToStored(value);
    else out[key] = value;
  }
  return mergeProviderData(out, item.providerData);
}

/** As the SDK reads a model's function call: everything but the mapped fields in providerData. */
function functionCallFromStored(item: Obj): Obj {
  const { call_id, name, namespace, caller, status, arguments: args, ...rest } = item;
  const out: Obj = { type: 'function_call' };
  setIfDefined(out, 'id', item.id);
  out.callId = call_id;
  out.name = name;
  setIfDefined(out, 'namespace', namespace);
  setIfDefined(out, 'status', status);
  out.arguments = args;
  setIfDefined(out, 'caller', callerFromStored(caller));
  // A call the model made has an id, and the SDK keeps it and the type in
  // providerData; a call with neither (one written by hand) had no providerData.
  if (Object.keys(rest).some((key) => key !== 'type')) out.providerData = rest;
  return out;
}

function toolOutputToStored(output: unknown): unknown {
  if (typeof output === 'string') return output;
  if (Array.isArray(output)) return output.map(partToStored);
  if (isObj(output)) {
    // The JS runner wraps a tool's text as {type: 'text', text}; the Responses
    // API (and the Python SDK) spell it as the plain string.
    if (output.type === 'text' && typeof output.text === 'string') return output.text;
    if (output.type === 'image') {
      const image = output.image ?? output.imageUrl;
      return [partToStored({ type: 'input_image', image, detail: output.detail })];
    }
    if (output.type === 'file') {
      return [partToStored({ type: 'input_file', file: output.file, filename: output.filename })];
    }
  }
  return output;
}

function toolOutputFromStored(output: unknown): unknown {
  if (typeof output === 'string') return { type: 'text', text: output };
  if (Array.isArray(output)) return output.map(partFromStored);
  return output;
}

function functionResultToStored(item: Obj, calls: Map<string, string>): Obj {
  const out: Obj = { type: 'function_call_output' };
  for (const [key, value] of Object.entries(item)) {
    if (key === 'providerData' || key === 'type' || value === undefined) continue;
    if (key === 'callId') out.call_id = value;
    else if (key === 'caller') out.caller = callerToStored(value);
    else if (key === 'output') out.output = toolOutputToStored(value);
    // The Responses shape has no status default and no tool name; both come
    // back on the way in (see functionResultFromStored), so store them only
    // when they say more than that.
    else if (key === 'status' && value === 'completed') continue;
    else if (key === 'name' && value === (calls.get(String(item.callId)) ?? item.callId)) continue;
    else out[key] = value;
  }
  return mergeProviderData(out, item.providerData);
}

function functionResultFromStored(item: Obj, calls: Map<string, string>): Obj {
  const callId = item.call_id;
  const out: Obj = {
    type: 'function_call_result',
    name: calls.get(String(callId)) ?? callId,
    status: 'completed',
  };
  const rest: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'type') continue;
    if (key === 'call_id') out.callId = value;
    else if (key === 'caller') out.caller = callerFromStored(value);
    else if (key === 'output') out.output = toolOutputFromStored(value);
    else if (['id', 'name', 'status', 'namespace'].includes(key)) out[key] = value;
    else rest[key] = value;
    // A stored `status: 'completed'`, or a `name` its call gives again, would be left
    // out on the way back (see functionResultToStored): keep them in providerData,
    // whose members are stored, so the item is written back as it was read.
    if ((key === 'status' && value === 'completed') || (key === 'name' && value === calls.get(String(callId)))) {
      rest[key] = value;
    }
  }
  return withProviderData(out, rest);
}

// -- reasoning -------------------------------------------------------------------

function reasoningPartToStored(part: unknown, type: string): unknown {
  if (!isObj(part)) return part;
  const out: Obj = {};
  for (const [key, value] of Object.entries(part)) {
    if (key === 'providerData' || value === undefined) continue;
    out[key] = key === 'type' ? type : value;
  }
  return mergeProviderData(out, part.providerData);
}

function reasoningToStored(item: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'providerData' || value === undefined) continue;
    if (key === 'content' && Array.isArray(value)) {
      out.summary = value.map((p) => reasoningPartToStored(p, 'summary_text'));
    } else if (key === 'rawContent' && Array.isArray(value)) {
      out.content = value.map((p) => reasoningPartToStored(p, 'reasoning_text'));
    } else out[key] = value;
  }
  return mergeProviderData(out, item.providerData);
}

function reasoningFromStored(item: Obj): Obj {
  // As the SDK reads a model's reasoning item: the summary becomes `content`, and
  // everything else (id, type, encrypted_content, the raw `content`) stays in providerData.
  const { summary, ...rest } = item;
  const out: Obj = { type: 'reasoning' };
  setIfDefined(out, 'id', item.id);
  out.content = Array.isArray(summary)
    ? summary.map((part: unknown) => {
        if (!isObj(part)) return part;
        const { text, ...remaining } = part;
        return { type: 'input_text', text, providerData: remaining };
      })
    : [];
  if (!Array.isArray(summary) && summary !== undefined) rest.summary = summary;
  out.providerData = rest;
  return out;
}

// -- hosted tool calls -------------------------------------------------------------

// Hosted calls with a status and an optional `result`, as the model converter reads them.
const BUILTIN_HOSTED = ['web_search_call', 'file_search_call', 'code_interpreter_call', 'image_generation_call'];
const MCP_HOSTED = ['mcp_list_tools', 'mcp_approval_request', 'mcp_approval_response', 'mcp_call'];

function hostedToStored(item: Obj): Obj {
  const providerData = isObj(item.providerData) ? item.providerData : {};
  const type = typeof providerData.type === 'string' ? providerData.type : item.name;
  const out: Obj = { ...providerData, type };
  setIfDefined(out, 'id', item.id ?? providerData.id);
  if (item.caller !== undefined) out.caller = callerToStored(item.caller);
  if (BUILTIN_HOSTED.includes(String(type))) {
    setIfDefined(out, 'status', item.status);
    if (item.output !== undefined) out.result = item.output;
  } else if (type === 'mcp_call' && item.output !== undefined) {
    out.output = item.output;
  }
  return out;
}

function hostedFromStored(item: Obj): Obj {
  const type = String(item.type);
  const { caller, ...rest } = item;
  const out: Obj = { type: 'hosted_tool_call' };
  setIfDefined(out, 'id', item.id);
  out.name = type;
  if (BUILTIN_HOSTED.includes(type)) {
    const { status, result, ...remaining } = rest;
    setIfDefined(out, 'status', status);
    if (result !== undefined && result !== null) out.output = result;
    else if (result === null) remaining.result = null;
    if (caller !== undefined) out.caller = callerFromStored(caller);
    out.providerData = remaining;
    return out;
  }
  if (type === 'mcp_approval_response') {
    // As the JS runner writes its approval answers: no status, and only the
    // answer's own fields in providerData.
    const { type: _type, id: _id, ...answer } = rest;
    if (caller !== undefined) out.caller = callerFromStored(caller);
    out.providerData = answer;
    return out;
  }
  out.status = 'completed';
  let providerData: Obj = rest;
  if (type === 'mcp_call' && rest.output !== undefined) {
    const { output, ...remaining } = rest;
    out.output = output;
    providerData = remaining;
  }
  if (caller !== undefined) out.caller = callerFromStored(caller);
  out.providerData = providerData;
  return out;
}

// -- compaction and everything else -----------------------------------------------

function plainToStored(item: Obj): Obj {
  const out: Obj = {};
  for (const [key, value] of Object.entries(item)) {
    if (key === 'providerData' || value === undefined) continue;
    out[key] = value;
  }
  return mergeProviderData(out, item.providerData);
}

function compactionFromStored(item: Obj): Obj {
  const { encrypted_content, created_by, ...rest } = item;
  const out: Obj = { type: 'compaction' };
  setIfDefined(out, 'id', item.id);
  out.encrypted_content = encrypted_content;
  setIfDefined(out, 'created_by', created_by);
  out.providerData = rest;
  return out;
}

function snakeKey(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

function snakeDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeDeep);
  if (!isObj(value)) return value;
  const out: Obj = {};
  for (const [key, inner] of Object.entries(value)) {
    if (inner !== undefined) out[snakeKey(key)] = snakeDeep(inner);
  }
  return out;
}

/** JS tool items with no JS reading of their stored form (computer, shell, apply_patch, ...). */
function otherToStored(item: Obj): Obj {
  const out = snakeDeep({ ...item, providerData: undefined }) as Obj;
  if (out.type === 'computer_call_result') out.type = 'computer_call_output';
  return mergeProviderData(out, item.providerData);
}

function isMessage(item: Obj): boolean {
  return item.type === 'message' || (item.type === undefined && typeof item.role === 'string');
}

function callNames(items: readonly Obj[], callIdKey: string): Map<string, string> {
  const names = new Map<string, string>();
  for (const item of items) {
    if (item.type === 'function_call' && typeof item.name === 'string') {
      names.set(String(item[callIdKey]), item.name);
    }
  }
  return names;
}

// -- validity as a Python SDK item ------------------------------------------------

/** The Python SDK's placeholder id for items no provider gave one; its models drop it. */
export const FAKE_ID = '__fake_id__';

function validPart(part: unknown): unknown {
  if (!isObj(part)) return part;
  // As the JS SDK's OpenAI converter sends them; the Python types require both.
  if (part.type === 'input_image' && part.detail === undefined) return { ...part, detail: 'auto' };
  if (part.type === 'output_text' && part.annotations === undefined) return { ...part, annotations: [] };
  return part;
}

/**
 * Fill in what the Python SDK's types require and a hand-written JS item may lack:
 * an assistant message's id, status and output_text annotations, an input image's
 * detail, a reasoning item's id. The item's patch removes them again on a JS read.
 */
function pythonValid(item: Obj): Obj {
  const out: Obj = { ...item };
  if (Array.isArray(out.content)) out.content = out.content.map(validPart);
  if (Array.isArray(out.output)) out.output = out.output.map(validPart);
  if (isMessage(item) && item.role === 'assistant' && Array.isArray(item.content)) {
    out.type = 'message';
    if (out.id === undefined) out.id = FAKE_ID;
    if (out.status === undefined) out.status = 'completed';
  }
  if (item.type === 'reasoning' && out.id === undefined) out.id = FAKE_ID;
  return out;
}

function toStoredItem(item: Obj, calls: Map<string, string>): Obj {
  if (isMessage(item)) return messageToStored(item);
  switch (item.type) {
    case 'function_call':
      return functionCallToStored(item);
    case 'function_call_result':
      return functionResultToStored(item, calls);
    case 'reasoning':
      return reasoningToStored(item);
    case 'hosted_tool_call':
      return hostedToStored(item);
    case 'compaction':
      return plainToStored(item);
    case 'unknown': {
      const out: Obj = isObj(item.providerData) ? { ...item.providerData } : {};
      setIfDefined(out, 'id', item.id);
      return out;
    }
    default:
      return otherToStored(item);
  }
}

function fromStoredItem(item: Obj, calls: Map<string, string>): Obj {
  if (isMessage(item)) return messageFromStored(item);
  const type = String(item.type);
  if (type === 'function_call') return functionCallFromStored(item);
  if (type === 'function_call_output') return functionResultFromStored(item, calls);
  if (type === 'reasoning') return reasoningFromStored(item);
  if (BUILTIN_HOSTED.includes(type) || MCP_HOSTED.includes(type)) return hostedFromStored(item);
  if (type === 'compaction') return compactionFromStored(item);
  const out: Obj = { type: 'unknown' };
  setIfDefined(out, 'id', item.id);
  out.providerData = item;
  return out;
}

/** Numbers read losslessly (json.ts) keep their text through the translation. */
function carryNumbers(from: Obj, to: Obj): Obj {
  carryRaw(from, to);
  if (isObj(from.providerData)) carryRaw(from.providerData, to);
  if (isObj(to.providerData)) carryRaw(from, to.providerData);
  return to;
}

/**
 * JS protocol items -> the Responses input items the service stores. Each is a
 * valid Python SDK input item (see pythonValid); what its stored form cannot say
 * (see itemPatch.ts) travels in its `provider_data`, so it reads back exactly.
 */
export function toStoredItems(items: readonly AgentInputItem[]): StoredItem[] {
  const objects = items as unknown as Obj[];
  const calls = callNames(objects, 'callId');
  const stored = objects.map((item) => {
    if (!isObj(item)) throw new TypeError(`a session item must be an object, not ${JSON.stringify(item)}`);
    return carryNumbers(item, pythonValid(toStoredItem(item, calls)));
  });
  const storedCalls = callNames(stored, 'call_id');
  return stored.map((item, index) => {
    // What the store gives back: JSON, where an undefined member does not exist.
    const read = fromStoredItem(JSON.parse(JSON.stringify(item)) as Obj, storedCalls);
    return carryNumbers(item, attachPatch(item, diff(read, objects[index])));
  });
}

/** Stored Responses input items -> JS protocol items. */
export function fromStoredItems(items: readonly StoredItem[]): AgentInputItem[] {
  const calls = callNames(items, 'call_id');
  return items.map((stored) => {
    if (!isObj(stored)) return { type: 'unknown', providerData: { value: stored } };
    const [item, patch] = detachPatch(stored);
    const read = carryNumbers(item, fromStoredItem(item, calls));
    return patch === null ? read : carryNumbers(read, applyPatch(read, patch) as Obj);
  }) as unknown as AgentInputItem[];
}

/** One item through both directions: the form a stored item takes when read back. */
export function canonicalItems(items: readonly AgentInputItem[]): AgentInputItem[] {
  return fromStoredItems(toStoredItems(items));
}

