/**
 * The shared item shape, both ways. Three oracles: stored items written by the
 * Python SDK must survive a JS read and write unchanged; the items the JS SDK makes
 * from a Responses output item (its own `convertToOutputItem`) must be stored as
 * that very Responses item and read back as the same JS item; and items the JS
 * runner builds itself must round-trip through the stored form.
 */

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import type { AgentInputItem } from '@openai/agents-core';

import { canonicalItems, fromStoredItems, toStoredItems, type StoredItem } from '../src/index.js';
import { parseJson, stringifyJson } from '../src/json.js';
import { CLIENT_ROOT } from './server.js';

type Converter = {
  convertToOutputItem(items: unknown[]): AgentInputItem[];
  getInputItems(items: AgentInputItem[]): StoredItem[];
};
// The JS SDK's own Responses converter; its package exports do not list it.
const converter = (await import(
  pathToFileURL(
    join(CLIENT_ROOT, 'node_modules', '@openai', 'agents-openai', 'dist', 'openaiResponsesConverter.mjs'),
  ).href
)) as Converter;

/** What a store sees: JSON, where an undefined member does not exist. */
function json(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

// As the Python SDK stores them (ScriptedModel run, and openai-python's model_dump
// of each Responses item type with exclude_unset).
const PYTHON_WRITTEN: Record<string, StoredItem> = {
  'user text': { content: 'Weather?', role: 'user' },
  'user parts': {
    role: 'user',
    type: 'message',
    content: [
      { type: 'input_text', text: 'look' },
      { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'auto' },
      { type: 'input_image', file_id: 'file_img', detail: 'high' },
      { type: 'input_file', file_id: 'file_1', filename: 'a.pdf' },
      { type: 'input_file', file_data: 'data:text/plain;base64,aGk=', filename: 'hi.txt' },
      { type: 'input_file', file_url: 'https://example.com/a.pdf' },
      { type: 'input_audio', input_audio: { data: 'AAA=', format: 'wav' } },
    ],
  },
  'system message': { role: 'system', content: 'Be brief.' },
  'developer message': { role: 'developer', content: [{ type: 'input_text', text: 'Rules.' }], type: 'message' },
  'assistant message': {
    id: 'scripted-message',
    content: [{ annotations: [], text: 'It is sunny.', type: 'output_text', logprobs: [] }],
    role: 'assistant',
    status: 'completed',
    type: 'message',
  },
  'assistant message with phase and refusal': {
    id: 'msg_2',
    content: [{ type: 'refusal', refusal: 'No.' }],
    role: 'assistant',
    status: 'completed',
    type: 'message',
    phase: 'final_answer',
  },
  'function call': {
    arguments: '{"city":"Oslo"}',
    call_id: 'call_1',
    name: 'get_weather',
    type: 'function_call',
    id: 'call_1',
  },
  'function call with SDK metadata': {
    arguments: '{}',
    call_id: 'call_2',
    name: 'lookup',
    type: 'function_call',
    status: 'completed',
    namespace: 'crm',
    _agents_tool_description: 'Look a customer up.',
    _agents_tool_title: 'Lookup',
  },
  'function call output': { call_id: 'call_1', output: 'sunny in Oslo', type: 'function_call_output' },
  'function call output, structured': {
    call_id: 'call_1',
    type: 'function_call_output',
    output: [
      { type: 'input_text', text: 'chart:' },
      { type: 'input_image', image_url: 'data:image/png;base64,iVBO', detail: 'low' },
    ],
  },
  'function call output with status': {
    call_id: 'call_9',
    output: 'late',
    type: 'function_call_output',
    status: 'incomplete',
    id: 'fco_1',
  },
  reasoning: {
    id: 'rs_1',
    summary: [{ text: 'Thinking about Oslo.', type: 'summary_text' }],
    type: 'reasoning',
    encrypted_content: 'gAAAA...',
    content: [{ type: 'reasoning_text', text: 'raw thoughts' }],
    status: 'completed',
  },
  'reasoning without summary text': { id: 'rs_2', summary: [], type: 'reasoning' },
  'web search call': {
    id: 'ws_1',
    action: { query: 'weather oslo', type: 'search', sources: [{ type: 'url', url: 'https://yr.no' }] },
    status: 'completed',
    type: 'web_search_call',
  },
  'file search call': {
    id: 'fs_1',
    queries: ['q'],
    status: 'completed',
    type: 'file_search_call',
    results: [{ file_id: 'f', filename: 'a.txt', score: 0.5, text: 'x', attributes: {} }],
  },
  'code interpreter call': {
    id: 'ci_1',
    code: 'print(1)',
    container_id: 'cntr_1',
    outputs: [{ type: 'logs', logs: '1\n' }],
    status: 'completed',
    type: 'code_interpreter_call',
  },
  'image generation call': { id: 'ig_1', result: 'iVBORw0KGgo=', status: 'completed', type: 'image_generation_call' },
  'image generation call, no result': { id: 'ig_2', result: null, status: 'generating', type: 'image_generation_call' },
  'mcp list tools': {
    id: 'mcpl_1',
    server_label: 'docs',
    tools: [{ name: 'search', input_schema: { type: 'object' }, description: null, annotations: null }],
    type: 'mcp_list_tools',
    error: null,
  },
  'mcp approval request': {
    id: 'mcpr_1',
    arguments: '{"q":"x"}',
    name: 'search',
    server_label: 'docs',
    type: 'mcp_approval_request',
  },
  'mcp approval response': { approval_request_id: 'mcpr_1', approve: true, type: 'mcp_approval_response' },
  'mcp call': {
    id: 'mcp_1',
    arguments: '{}',
    name: 'search',
    server_label: 'docs',
    type: 'mcp_call',
    output: 'found',
    error: null,
    status: 'completed',
  },
  compaction: { id: 'cmp_1', encrypted_content: 'enc', type: 'compaction' },
  'computer call (no JS reading)': {
    id: 'cu_1',
    call_id: 'call_c',
    action: { type: 'click', x: 1, y: 2, button: 'left' },
    pending_safety_checks: [],
    status: 'completed',
    type: 'computer_call',
  },
  'shell call (no JS reading)': {
    type: 'shell_call',
    call_id: 'call_s',
    action: { commands: ['ls'], timeout_ms: null, max_output_length: null },
    status: 'completed',
  },
  'item reference': { type: 'item_reference', id: 'msg_0' },
  'function call output, status completed': {
    call_id: 'call_1',
    output: 'done',
    type: 'function_call_output',
    status: 'completed',
  },
  'function call output with the name of its call': {
    call_id: 'call_1',
    output: 'done',
    type: 'function_call_output',
    name: 'get_weather',
  },
  'file data wrapped in lines': {
    role: 'user',
    content: [{ type: 'input_file', file_data: 'aGVsbG8g\nd29ybGQ=', filename: 'a.txt' }],
  },
};

describe('items the Python SDK stored', () => {
  for (const [name, item] of Object.entries(PYTHON_WRITTEN)) {
    test(`${name}: read by JS and written back unchanged`, () => {
      const js = fromStoredItems([item]);
      assert.deepEqual(json(toStoredItems(js)), [item]);
    });
  }

  test('status and name on an output survive next to the call they belong to', () => {
    const turn = [
      PYTHON_WRITTEN['function call']!,
      PYTHON_WRITTEN['function call output, status completed']!,
      PYTHON_WRITTEN['function call output with the name of its call']!,
    ];
    assert.deepEqual(json(toStoredItems(fromStoredItems(turn))), turn);
  });

  test('numbers of any size and form are written back as they were read', () => {
    const text =
      '[{"type":"file_search_call","id":"fs_9","queries":[],"results":' +
      '[{"score":1.0,"attributes":{"big":12345678901234567890,"neg":-0.0,"e":1e5,"n":-0,"f":0.1}}],' +
      '"status":"completed"},' +
      '{"type":"computer_call","id":"cu_9","call_id":"c","pending_safety_checks":[],' +
      '"status":"completed","action":{"type":"click","x":1.0,"y":9007199254740993,"button":"left"}},' +
      '{"role":"user","content":"n","weight":2.50}]';
    const stored = parseJson(text) as StoredItem[];
    assert.equal(stringifyJson(toStoredItems(fromStoredItems(stored))), text);
  });

  test('a whole Python turn reads in JS form', () => {
    const turn = [
      PYTHON_WRITTEN['user text']!,
      PYTHON_WRITTEN['function call']!,
      PYTHON_WRITTEN['function call output']!,
      PYTHON_WRITTEN['assistant message']!,
    ];
    const js = json(fromStoredItems(turn)) as Record<string, unknown>[];
    assert.deepEqual(js[1], {
      type: 'function_call',
      id: 'call_1',
      callId: 'call_1',
      name: 'get_weather',
      arguments: '{"city":"Oslo"}',
      providerData: { id: 'call_1', type: 'function_call' },
    });
    // The tool's name comes from its call; the text output as the JS runner spells it.
    assert.deepEqual(js[2], {
      type: 'function_call_result',
      name: 'get_weather',
      status: 'completed',
      callId: 'call_1',
      output: { type: 'text', text: 'sunny in Oslo' },
    });
    assert.deepEqual(json(toStoredItems(js as unknown as AgentInputItem[])), turn);
    // The JS OpenAI model's converter accepts them (it throws on the raw Python form).
    assert.throws(() => converter.getInputItems(turn as unknown as AgentInputItem[]));
    const request = json(converter.getInputItems(js as unknown as AgentInputItem[])) as StoredItem[];
    assert.deepEqual(request[2], { type: 'function_call_output', call_id: 'call_1', output: 'sunny in Oslo', status: 'completed' });
  });

  test('an output whose call is not in the same read is named by its call id', () => {
    const [result] = fromStoredItems([PYTHON_WRITTEN['function call output']!]);
    assert.equal((result as { name: string }).name, 'call_1');
  });
});

// Responses output items as the API returns them, for the JS SDK's own reading.
const MODEL_OUTPUTS: Record<string, StoredItem> = {
  message: {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    status: 'completed',
    content: [{ type: 'output_text', text: 'Hi.', annotations: [], logprobs: [] }],
  },
  'message with phase': {
    id: 'msg_2',
    type: 'message',
    role: 'assistant',
    status: 'completed',
    phase: 'commentary',
    content: [{ type: 'output_text', text: 'Working.', annotations: [{ type: 'url_citation', url: 'u', title: 't', start_index: 0, end_index: 1 }] }],
  },
  'function call': {
    id: 'fc_1',
    type: 'function_call',
    call_id: 'call_1',
    name: 'get_weather',
    arguments: '{"city":"Oslo"}',
    status: 'completed',
  },
  reasoning: {
    id: 'rs_1',
    type: 'reasoning',
    summary: [{ type: 'summary_text', text: 'Plan.' }],
    encrypted_content: 'enc',
  },
  'web search call': PYTHON_WRITTEN['web search call']!,
  'file search call': PYTHON_WRITTEN['file search call']!,
  'code interpreter call': PYTHON_WRITTEN['code interpreter call']!,
  'image generation call': PYTHON_WRITTEN['image generation call']!,
  'mcp list tools': PYTHON_WRITTEN['mcp list tools']!,
  'mcp approval request': PYTHON_WRITTEN['mcp approval request']!,
  'mcp call': PYTHON_WRITTEN['mcp call']!,
  compaction: PYTHON_WRITTEN['compaction']!,
  'unknown item': { id: 'x_1', type: 'future_item', payload: { a: 1 } },
};

describe('items the JS SDK made from model output', () => {
  for (const [name, output] of Object.entries(MODEL_OUTPUTS)) {
    test(`${name}: stored as the Responses item, read back as the same JS item`, () => {
      const js = converter.convertToOutputItem([structuredClone(output)]);
      const stored = toStoredItems(js);
      assert.deepEqual(json(stored), [output]);
      assert.deepEqual(json(fromStoredItems(stored)), json(js));
    });
  }
});

// Items the JS runner builds itself (input, tool results, approval answers).
const RUNNER_ITEMS: Record<string, AgentInputItem[]> = {
  'string input': [{ type: 'message', role: 'user', content: 'Hello' }],
  'user parts': [
    {
      role: 'user',
      content: [
        { type: 'input_text', text: 'see' },
        { type: 'input_image', image: 'https://example.com/x.png', detail: 'auto' },
        { type: 'input_image', image: { id: 'file_9' } },
        { type: 'input_file', file: { id: 'file_1' }, filename: 'a.pdf' },
        { type: 'input_file', file: { url: 'https://example.com/a.pdf' } },
        { type: 'input_file', file: 'data:text/plain;base64,aGk=' },
      ],
    },
  ],
  'tool call and text result': [
    { type: 'function_call', callId: 'call_7', name: 'add', arguments: '{"a":1}', status: 'completed', providerData: { id: 'fc_7', type: 'function_call' }, id: 'fc_7' },
    { type: 'function_call_result', name: 'add', callId: 'call_7', status: 'completed', output: { type: 'text', text: '2' } },
  ],
  'structured tool result': [
    { type: 'function_call', callId: 'call_8', name: 'chart', arguments: '{}' },
    {
      type: 'function_call_result',
      name: 'chart',
      callId: 'call_8',
      status: 'completed',
      output: [
        { type: 'input_text', text: 'chart' },
        { type: 'input_image', image: 'data:image/png;base64,iVBO', detail: 'low' },
      ],
    },
  ],
  'result whose call was written earlier': [
    { type: 'function_call_result', name: 'slow_tool', callId: 'call_old', status: 'completed', output: { type: 'text', text: 'done' } },
  ],
  'rejected tool result': [
    { type: 'function_call', callId: 'call_r', name: 'rm', arguments: '{}' },
    { type: 'function_call_result', name: 'rm', callId: 'call_r', status: 'incomplete', output: { type: 'text', text: 'rejected' } },
  ],
  'program caller': [
    { type: 'function_call', callId: 'call_p', name: 'f', arguments: '{}', caller: { type: 'program', callerId: 'prog_1' } },
    { type: 'function_call_result', name: 'f', callId: 'call_p', status: 'completed', output: { type: 'text', text: '1' }, caller: { type: 'program', callerId: 'prog_1' } },
  ],
  'mcp approval answer': [
    { type: 'hosted_tool_call', name: 'mcp_approval_response', providerData: { approve: false, approval_request_id: 'mcpr_1', reason: 'no' } },
  ],
};

describe('items the JS runner built', () => {
  for (const [name, items] of Object.entries(RUNNER_ITEMS)) {
    test(`${name}: round-trips through the stored form`, () => {
      const stored = toStoredItems(items);
      const back = json(fromStoredItems(json(stored) as StoredItem[])) as Record<string, unknown>[];
      const expected = json(items) as Record<string, unknown>[];
      assert.deepEqual(back, expected);
    });
  }

  test('the runner\'s items are stored the way the Python SDK stores them', () => {
    const stored = json(toStoredItems(RUNNER_ITEMS['tool call and text result']!));
    assert.deepEqual(stored, [
      { type: 'function_call', call_id: 'call_7', name: 'add', arguments: '{"a":1}', status: 'completed', id: 'fc_7' },
      { type: 'function_call_output', call_id: 'call_7', output: '2' },
    ]);
    assert.deepEqual(json(toStoredItems(RUNNER_ITEMS['result whose call was written earlier']!)), [
      { type: 'function_call_output', name: 'slow_tool', call_id: 'call_old', output: 'done' },
    ]);
  });

  test('JS spellings with no stored twin read back exactly, their stored form the Python one', () => {
    const items: AgentInputItem[] = [
      { type: 'function_call', callId: 'c', name: 'f', arguments: '{}' },
      { type: 'function_call_result', name: 'f', callId: 'c', status: 'completed', output: 'plain string' },
      { role: 'user', content: [{ type: 'input_file', file: 'https://example.com/a.pdf' }] },
      { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'hi' }] },
    ];
    const stored = json(toStoredItems(items)) as Record<string, any>[];
    assert.equal(stored[1]!.output, 'plain string');
    assert.deepEqual(stored[2]!.content[0], { type: 'input_file', file_url: 'https://example.com/a.pdf' });
    // What the stored form cannot say travels in provider_data, which the Python SDK
    // keeps out of its OpenAI requests.
    assert.deepEqual(stored[1]!.provider_data, { agents_js: [['w', ['output'], 'text']] });
    assert.deepEqual(stored[2]!.provider_data, { agents_js: [['w', ['content', 0, 'file'], 'url']] });
    assert.equal(stored[3]!.id, '__fake_id__');
    assert.deepEqual(stored[3]!.content[0].annotations, []);
    assert.deepEqual(fromStoredItems(stored as StoredItem[]), items);
    assert.deepEqual(canonicalItems(items), items);
  });
});

// Items as tests and applications write them by hand, in every JS spelling.
const HAND_WRITTEN: AgentInputItem[] = [
  { role: 'user', content: 'plain' },
  { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'a' }] },
  { role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'b' }], providerData: {} },
  { type: 'message', role: 'assistant', id: 'msg_1', status: 'in_progress', content: [{ type: 'refusal', refusal: 'no' }] },
  { role: 'user', content: [{ type: 'input_image', image: { id: 'file_1' } }] },
  { role: 'user', content: [{ type: 'input_file', file: 'https://example.com/x.pdf', filename: 'x.pdf' }] },
  { type: 'function_call', callId: 'c1', name: 'f', arguments: '{}', status: 'completed' },
  { type: 'function_call_result', callId: 'c1', name: 'f', status: 'completed', output: 'text' },
  { type: 'function_call_result', callId: 'c2', name: 'g', status: 'completed', output: { type: 'text', text: 't' } },
  { type: 'function_call_result', callId: 'c3', name: 'h', status: 'incomplete', output: 'x', providerData: { note: 1 } },
  { type: 'reasoning', content: [{ type: 'input_text', text: 'think' }] },
  { type: 'hosted_tool_call', name: 'web_search_call', status: 'completed' },
  { type: 'compaction', encrypted_content: 'enc' },
  { type: 'function_call', callId: 'c4', name: 'k', arguments: '{}', providerData: { type: 'function_call', extra: { a: [1, 2] } } },
] as AgentInputItem[];

describe('items written by hand', () => {
  HAND_WRITTEN.forEach((item, index) => {
    test(`#${index} (${(item as { type?: string }).type ?? 'message'}) reads back deep-equal`, () => {
      const stored = json(toStoredItems([item])) as StoredItem[];
      assert.deepEqual(fromStoredItems(stored), [item]);
    });
  });

  test('the whole list in one write reads back deep-equal', () => {
    const stored = json(toStoredItems(HAND_WRITTEN)) as StoredItem[];
    assert.deepEqual(fromStoredItems(stored), HAND_WRITTEN);
  });

  test('an input image by file id is stored with the detail the JS SDK sends', () => {
    const [stored] = json(toStoredItems([HAND_WRITTEN[4]!])) as Record<string, any>[];
    assert.deepEqual(stored!.content[0], { type: 'input_image', file_id: 'file_1', detail: 'auto' });
  });
});
