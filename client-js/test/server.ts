/**
 * Real session-memory servers for the tests: `session-memory serve` from the
 * repository's Python venv, as its own process group on a free loopback port,
 * on a fresh SQLite file or a fresh PostgreSQL schema.
 */

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as client-js/dist/test/server.js). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLIENT_ROOT = join(REPO_ROOT, 'client-js');
const VENV = process.env.SESSION_MEMORY_VENV ?? join(REPO_ROOT, '.venv');
export const PYTHON = join(VENV, 'bin', 'python');
export const SERVE = join(VENV, 'bin', 'session-memory');

export const API_KEY = 'js-client-test-key';
const POSTGRES_URL =
  process.env.SESSION_MEMORY_TEST_POSTGRES_URL ?? 'postgresql://postgres@127.0.0.1:5432/test';
const POSTGRES_REQUIRED = process.env.SESSION_MEMORY_REQUIRE_POSTGRES === '1';

export type Backend = 'sqlite' | 'postgres';

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** Run SQL on the test PostgreSQL through the venv's asyncpg; '' when it worked, else the error. */
function postgresExecute(sql: string): string {
  const script =
    'import asyncio, sys, asyncpg\n' +
    'async def main():\n' +
    '    conn = await asyncpg.connect(sys.argv[1], timeout=5)\n' +
    '    try:\n' +
    '        await conn.execute(sys.argv[2])\n' +
    '    finally:\n' +
    '        await conn.close()\n' +
    'asyncio.run(main())\n';
  const result = spawnSync(PYTHON, ['-c', script, POSTGRES_URL, sql], { encoding: 'utf8' });
  return result.status === 0 ? '' : (result.stderr.trim().split('\n').pop() ?? 'failed');
}

let postgresProblem: string | undefined;

/** Why PostgreSQL tests cannot run here, or undefined when they can (CI: they must). */
export function postgresUnavailable(): string | undefined {
  if (postgresProblem === undefined) postgresProblem = postgresExecute('SELECT 1');
  if (!postgresProblem) return undefined;
  const message = `PostgreSQL not reachable at ${POSTGRES_URL} (${postgresProblem})`;
  if (POSTGRES_REQUIRED) throw new Error(message);
  return message;
}

export class ServerProcess {
  readonly port: number;
  readonly databaseUrl: string;
  private child: ChildProcess | undefined;
  private readonly cleanup: () => void;
  /** Extra settings for the server process, as SESSION_MEMORY_* variables. */
  env: Record<string, string> = {};

  private constructor(port: number, databaseUrl: string, cleanup: () => void) {
    this.port = port;
    this.databaseUrl = databaseUrl;
    this.cleanup = cleanup;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A server on a fresh, empty store of the given backend. */
  static async fresh(backend: Backend, env: Record<string, string> = {}): Promise<ServerProcess> {
    const port = await freePort();
    if (backend === 'sqlite') {
      const dir = mkdtempSync(join(tmpdir(), 'sm-js-'));
      const server = new ServerProcess(port, `sqlite:///${join(dir, 'sessions.db')}`, () =>
        rmSync(dir, { recursive: true, force: true }),
      );
      server.env = env;
      return server.start();
    }
    const schema = `sm_js_${crypto.randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const problem = postgresExecute(`CREATE SCHEMA ${schema}`);
    if (problem) throw new Error(`could not create schema ${schema}: ${problem}`);
    const separator = POSTGRES_URL.includes('?') ? '&' : '?';
    const server = new ServerProcess(port, `${POSTGRES_URL}${separator}search_path=${schema}`, () => {
      postgresExecute(`DROP SCHEMA ${schema} CASCADE`);
    });
    server.env = env;
    return server.start();
  }

  /** Another server on this one's database (a replica behind a load balancer); its close leaves the database. */
  async replica(): Promise<ServerProcess> {
    const server = new ServerProcess(await freePort(), this.databaseUrl, () => {});
    server.env = this.env;
    return server.start();
  }

  /** Start (or restart) the process; resolves once /readyz answers 200. */
  async start(timeoutMs = 30_000): Promise<this> {
    const child = spawn(
      SERVE,
      ['serve', '--port', String(this.port), '--database-url', this.databaseUrl, '--log-level', 'warning'],
      {
        detached: true, // its own process group, ended whole by stop()
        stdio: ['ignore', 'ignore', 'inherit'],
        env: { ...process.env, SESSION_MEMORY_API_KEYS: `js:${API_KEY}`, ...this.env },
      },
    );
    this.child = child;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
      try {
        const response = await fetch(`${this.baseUrl}/readyz`, { signal: AbortSignal.timeout(1000) });
        await response.body?.cancel();
        if (response.status === 200) return this;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    this.stop();
    throw new Error(`server did not become ready within ${timeoutMs} ms`);
  }

  /** End the whole process group and wait for the server to exit. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
    await exited;
  }

  async close(): Promise<void> {
    await this.stop();
    this.cleanup();
  }
}

/** The backends to run against; PostgreSQL only when reachable (always in CI). */
export function backends(): Backend[] {
  return postgresUnavailable() === undefined ? ['sqlite', 'postgres'] : ['sqlite'];
}
