/**
 * The run-lease example docs/clients.md shows is client-js/examples/leases.mjs, and it
 * prints what its comments say against a live server (imported by the package's npm name).
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { API_KEY, CLIENT_ROOT, REPO_ROOT, ServerProcess } from './server.js';

const run = promisify(execFile);
const EXAMPLE = join(CLIENT_ROOT, 'examples', 'leases.mjs');

let server: ServerProcess;
before(async () => {
  server = await ServerProcess.fresh('sqlite');
});
after(async () => {
  await server?.close();
});

test('docs/clients.md shows the lease example file as it is', () => {
  const docs = readFileSync(join(REPO_ROOT, 'docs', 'clients.md'), 'utf8');
  const blocks = [...docs.matchAll(/```js\n(.*?)```/gs)].map((m) => m[1]!).filter((b) => b.startsWith('// leases:'));
  assert.deepEqual(blocks, [readFileSync(EXAMPLE, 'utf8')]);
});

test('the lease example prints what it says, the three ways', async () => {
  const source = readFileSync(EXAMPLE, 'utf8');
  const promised = [...source.matchAll(/^\/\/ ((?:interleave|wait|reject): .*)$/gm)].map((m) => m[1]!);
  assert.equal(promised.length, 3);
  const { stdout } = await run(process.execPath, [EXAMPLE], {
    cwd: CLIENT_ROOT,
    env: { ...process.env, SESSION_MEMORY_BASE_URL: server.baseUrl, SESSION_MEMORY_API_KEY: API_KEY },
  });
  assert.deepEqual(stdout.trim().split('\n'), promised);
});
