/**
 * Kill switch → agent process: from `halt()` returning in this process to the
 * SIGTERM arriving in a `warden run` sandbox (another process, polling the
 * same database), and to that run's process being gone. The goal is 1 s p99.
 *   npx tsx bench/index.ts run-halt        (RUN_HALT_ITERATIONS, default 20)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditLog } from '../src/audit/log.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { openDb } from '../src/store/db.ts';

const ITERATIONS = Number(process.env.RUN_HALT_ITERATIONS ?? 20);
const ROOT = resolve(import.meta.dirname, '..');

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable with `date +%s%N` in the sandbox. */
const wallNow = () => performance.timeOrigin + performance.now();

async function waitFor(path: string, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!existsSync(path)) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${path}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-run-'));
  const workspace = join(dir, 'workspace');
  mkdirSync(workspace);
  const policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, 'agent: bench-run\nsandbox: { stop_grace: 5s }\nmcp_scopes: { tickets: [read] }\n');
  const dbPath = join(dir, 'warden.db');
  const db = openDb(dbPath);
  const audit = new AuditLog(db);
  const ks = new KillSwitch({ db, audit });
  const toSignal: number[] = [];
  const toGone: number[] = [];
  try {
    for (let i = 0; i < ITERATIONS; i++) {
      const ready = join(workspace, `ready-${i}`);
      const term = join(workspace, `term-${i}`);
      // The trap writes when SIGTERM arrives; `wait` returns at once on a signal, so nothing delays it.
      const script = `trap 'date +%s%N > "$2"; exit 0' TERM; sleep 60 & touch "$1"; wait`;
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'src/cli/index.ts', 'run', '--agent', 'bench-run', '--workspace', workspace, '--'].concat([
          'sh',
          '-c',
          script,
          'sh',
          ready,
          term,
        ]),
        {
          cwd: ROOT,
          env: { ...process.env, WARDEN_DB: dbPath, WARDEN_POLICY: policyPath, LOG_LEVEL: 'error' },
          stdio: 'inherit',
        },
      );
      const gone = new Promise<number>((done) => child.once('exit', () => done(wallNow())));
      await waitFor(ready);
      const t0 = wallNow();
      await ks.halt({ scope: 'agent', agent: 'bench-run', reason: 'bench', actor: 'bench' });
      const goneAt = await gone;
      await waitFor(term);
      toSignal.push(Number(readFileSync(term, 'utf8').trim()) / 1e6 - t0);
      toGone.push(goneAt - t0);
      await ks.resume({ scope: 'agent', agent: 'bench-run', actor: 'bench' });
      // Spread halts over the supervisor's 50 ms poll rather than locking onto it.
      await new Promise((r) => setTimeout(r, 7 + (i % 5) * 11));
    }
  } finally {
    ks.stop();
    await audit.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const line = (name: string, samples: number[]) => {
    const sorted = [...samples].sort((a, b) => a - b);
    return `${name.padEnd(36)} n=${sorted.length}  p50=${pct(sorted, 50).toFixed(1)} ms  p99=${pct(sorted, 99).toFixed(1)} ms  max=${sorted.at(-1)!.toFixed(1)} ms  (goal p99 ≤ 1000 ms)\n`;
  };
  process.stdout.write(line('halt → SIGTERM in the sandbox', toSignal));
  process.stdout.write(line('halt → warden run process gone', toGone));
}
