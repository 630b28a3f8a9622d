/**
 * The session-id rule and path encoding agree with the Python client's
 * session_memory_client.protocol, checked by running the Python code on the same ids.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

import { MAX_SESSION_ID_LENGTH, sessionIdError, sessionPath, validateSessionId } from '../src/index.js';
import * as protocol from '../src/protocol.js';
import { PYTHON } from './server.js';

const IDS = [
  'user-42',
  '',
  'a'.repeat(MAX_SESSION_ID_LENGTH),
  'a'.repeat(MAX_SESSION_ID_LENGTH + 1),
  '😀'.repeat(MAX_SESSION_ID_LENGTH), // 256 code points, 512 UTF-16 units
  '😀'.repeat(MAX_SESSION_ID_LENGTH + 1),
  'a/b',
  'tab\there',
  'nul\u0000',
  'del\u007f',
  'c1\u0085',
  'line\u2028sep',
  'para\u2029sep',
  'lone \ud800 high',
  'lone \udc00 low',
  '😀 then lone \udfff',
  '.',
  '..',
  '...',
  'a.b',
  "sp ace?q#f%25&=+;:@,$!'()*~_-",
  '👩‍👩‍👧',
  'ü',
  '\u00a0nbsp',
];

test('session ids are judged and encoded exactly as the Python client does', () => {
  const script =
    'import json, sys\n' +
    'from session_memory_client.protocol import session_id_error, session_path\n' +
    'ids = json.loads(sys.stdin.read())\n' +
    'out = [[session_id_error(i), None if session_id_error(i) else session_path(i)] for i in ids]\n' +
    'print(json.dumps(out))\n';
  const python = JSON.parse(execFileSync(PYTHON, ['-c', script], { input: JSON.stringify(IDS) }).toString()) as [
    string | null,
    string | null,
  ][];
  const js = IDS.map((id) => {
    const error = sessionIdError(id);
    return [error, error ? null : sessionPath(id)];
  });
  assert.deepEqual(js, python);
});

test('validateSessionId returns the id or throws saying why', () => {
  assert.equal(validateSessionId('ok'), 'ok');
  assert.throws(() => validateSessionId('a/b'), { name: 'RangeError', message: /index 1 \(U\+002F\)/ });
  assert.throws(() => validateSessionId(42 as unknown as string), TypeError);
});

test('every constant of the Python protocol module has the same value here', () => {
  // Every upper-case name the Python module exports, and every problem type.
  const script =
    'import json\n' +
    'from session_memory_client import protocol as p\n' +
    'names = [n for n in p.__all__ if n.isupper() and n != "SESSION_ID_PATTERN"]\n' +
    'types = {k: v for k, v in vars(p.ProblemType).items() if k.isupper()}\n' +
    'print(json.dumps({"constants": {n: str(getattr(p, n)) for n in names}, "problems": types}))\n';
  const python = JSON.parse(execFileSync(PYTHON, ['-c', script]).toString()) as {
    constants: Record<string, string>;
    problems: Record<string, string>;
  };
  const constants = Object.fromEntries(
    Object.keys(python.constants).map((name) => [name, String((protocol as Record<string, unknown>)[name])]),
  );
  assert.deepEqual(constants, python.constants);
  assert.deepEqual({ ...protocol.ProblemType }, python.problems);
});
