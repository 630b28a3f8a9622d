/** The README's TypeScript example type-checks against this package, imported by its npm name. */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { CLIENT_ROOT, REPO_ROOT } from './server.js';

test("the README's TypeScript example compiles", () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n(.*?)```/gs)].map((m) => m[1]!);
  assert.equal(blocks.length, 1);
  assert.match(blocks[0]!, /from 'session-memory-client'/);
  // Inside the package folder, so 'session-memory-client' resolves to this package
  // (a self-reference through its "exports") and '@openai/agents' to node_modules.
  const dir = mkdtempSync(join(CLIENT_ROOT, '.readme-'));
  try {
    writeFileSync(join(dir, 'example.ts'), blocks[0]!);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: '../tsconfig.json',
        compilerOptions: { noEmit: true, rootDir: '.' },
        include: ['example.ts'],
      }),
    );
    execFileSync(join(CLIENT_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.json')], {
      stdio: 'pipe',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
