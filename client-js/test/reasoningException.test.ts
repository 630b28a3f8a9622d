/**
 * The single documented exception to "every TypeScript-written item reaches the
 * model from Python": a hand-written reasoning item whose stored form needs a patch
 * carries it in `provider_data`, and the Python SDK's OpenAI Responses model drops
 * reasoning items that carry `provider_data` (it takes them for another provider's
 * reasoning). A reasoning item the model made needs no patch and is sent.
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

import type { AgentInputItem } from '@openai/agents-core';

import { fromStoredItems, toStoredItems } from '../src/index.js';
import { PYTHON } from './server.js';

// What the Python SDK's OpenAIResponsesModel keeps of each item before sending it.
const SENT_BY_PYTHON = `
import json, sys
from openai import AsyncOpenAI
from agents.models.openai_responses import OpenAIResponsesModel
model = OpenAIResponsesModel(model="gpt-4.1", openai_client=AsyncOpenAI(api_key="unused"))
items = json.load(sys.stdin)
print(json.dumps([len(model._remove_openai_responses_api_incompatible_fields([item])) for item in items]))
`;

function keptByPython(stored: unknown[]): number[] {
  const result = spawnSync(PYTHON, ['-c', SENT_BY_PYTHON], { input: JSON.stringify(stored), encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(result.stdout) as number[];
}

test('a hand-written reasoning item needing a patch is dropped by the Python SDK OpenAI model', () => {
  const handWritten = { type: 'reasoning', content: [{ type: 'input_text', text: 'think' }] } as AgentInputItem;
  // What the JS SDK makes of a model's reasoning output: no patch needed.
  const modelMade = fromStoredItems([
    { id: 'rs_1', type: 'reasoning', summary: [{ type: 'summary_text', text: 'Plan.' }], encrypted_content: 'enc' },
  ])[0]!;
  const stored = toStoredItems([handWritten, modelMade]);
  assert.ok(stored[0]!.provider_data, 'the hand-written item carries its patch');
  assert.equal(stored[1]!.provider_data, undefined);
  // Both still read back exactly in TypeScript.
  assert.deepEqual(fromStoredItems(JSON.parse(JSON.stringify(stored))), [handWritten, modelMade]);
  assert.deepEqual(keptByPython(stored), [0, 1]);
});
