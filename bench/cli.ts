/**
 * CLI start-up: how long a `warden` command takes against `node -e 0` in the same run
 * (goal: within 6×). `policy check` is a whole command; `connect` is timed from spawn
 * to its answer to `initialize` (the wait before a stdio client can speak), against a
 * closed port so the gateway's own time is not in it. The tsx (source) figures are what
 * every command cost before the CLI shipped compiled.
 *   npx tsx bench/index.ts cli
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.env.CLI_BENCH_RUNS ?? 15);
const BIN = join(ROOT, 'bin/warden.js');
const SRC = join(ROOT, 'src/cli/index.ts');
const POLICY = join(ROOT, 'examples/policy.yml');
const TOKEN = `wdn_${'A'.repeat(43)}`;

function timeExit(args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      stdio: 'ignore',
      env: { ...process.env, LOG_LEVEL: 'silent' },
    });
    child.on('error', reject);
    child.on('exit', () => resolve(performance.now() - t0));
  });
}

function timeFirstAnswer(args: string[]): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'ignore'],
      env: { ...process.env, LOG_LEVEL: 'silent', WARDEN_AGENT_TOKEN: TOKEN },
    });
    child.on('error', reject);
    child.stdout.once('data', () => {
      resolve(performance.now() - t0);
      child.kill();
    });
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
    };
    child.stdin.write(`${JSON.stringify(init)}\n`);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function sample(fn: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < RUNS; i++) out.push(await fn());
  return out;
}

export async function run(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/cli/index.js'))) throw new Error('dist/ is missing: run `npm run build` first');
  const connectArgs = ['connect', '--agent', 'bench', '--url', 'http://127.0.0.1:9/mcp'];
  const cases: [string, () => Promise<number>][] = [
    ['node -e 0 (baseline)', () => timeExit(['-e', '0'])],
    ['warden policy check (compiled)', () => timeExit([BIN, 'policy', 'check', POLICY])],
    ['warden connect → initialize answer (compiled)', () => timeFirstAnswer([BIN, ...connectArgs])],
    ['warden policy check (tsx, source)', () => timeExit(['--import', 'tsx', SRC, 'policy', 'check', POLICY])],
    [
      'warden connect → initialize answer (tsx, source)',
      () => timeFirstAnswer(['--import', 'tsx', SRC, ...connectArgs]),
    ],
  ];
  let baseline = 0;
  for (const [name, fn] of cases) {
    const xs = await sample(fn);
    const m = median(xs);
    if (baseline === 0) baseline = m;
    const ratio = (m / baseline).toFixed(1);
    process.stdout.write(
      `${name.padEnd(50)} median ${m.toFixed(0).padStart(5)} ms  (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})  ${ratio}× baseline\n`,
    );
  }
}
