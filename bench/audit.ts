import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AuditLog, verifyChain, type AuditEntry } from '../src/audit/index.ts';
import type { AuditWriter } from '../src/audit/log.ts';
import { writerReady } from '../src/audit/writer-thread.ts';
import { openDb } from '../src/store/db.ts';

/**
 * Audit append throughput on a real file (WAL, synchronous=FULL):
 * - sequential: one caller awaiting each append (one commit, one fsync per row);
 * - concurrent: many callers in flight at once, so group commit batches them.
 * Each case runs with commits on the calling thread (inline, the default)
 * and on the audit writer thread (`writer: 'worker'`), back to back, so the
 * two are compared under the same machine load. The main thread's busy share
 * (event loop utilisation, which counts time blocked in fsync) shows what is
 * left for serving requests.
 */

function entry(i: number): AuditEntry {
  return {
    event: 'call.decided',
    callId: `call-${i}`,
    agent: 'support-triage',
    owner: 'U012OWNER',
    server: 'tickets',
    tool: 'read_ticket',
    args: { id: `T-${i}`, authorization: 'Bearer abc.def', note: 'customer asked about invoice 42' },
    result: { content: [{ type: 'text', text: `ticket ${i}: printer on fire` }] },
    decision: 'allow',
    reason: 'tickets:read granted',
    durationMs: 3,
  };
}

async function measure(
  label: string,
  writer: AuditWriter,
  rows: number,
  body: (log: AuditLog) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-audit-'));
  const db = openDb(join(dir, 'audit.db'));
  try {
    const log = new AuditLog(db, { writer });
    // Time the steady state, not the thread's start-up (rows are written inline until it is up).
    if (writer === 'worker' && !(await writerReady()))
      throw new Error(`${label}: the audit writer thread did not start`);
    if (log.writer !== writer) throw new Error(`${label}: expected the ${writer} writer, got ${log.writer}`);
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    await body(log);
    await log.flush();
    const ms = performance.now() - t0;
    const elu = performance.eventLoopUtilization(elu0);
    await log.close();
    const report = verifyChain(db);
    if (!report.ok || report.count !== rows)
      throw new Error(`${label}: chain not intact after bench (${JSON.stringify(report)})`);
    const name = `${label} [${writer}]`;
    process.stdout.write(
      `audit ${name.padEnd(49)} ${String(rows).padStart(7)} rows  ${ms.toFixed(0).padStart(6)} ms  ${Math.round(
        (rows / ms) * 1000,
      )
        .toLocaleString('en-US')
        .padStart(9)} rows/s  main loop ${(elu.utilization * 100).toFixed(0).padStart(3)}% busy\n`,
    );
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const WRITERS: readonly AuditWriter[] = ['inline', 'worker'];

export async function run(): Promise<void> {
  const seq = 2_000;
  for (const writer of WRITERS) {
    await measure('sequential await (1 caller)', writer, seq, async (log) => {
      for (let i = 0; i < seq; i++) await log.append(entry(i));
    });
  }

  const callers = 64;
  const perCaller = 500;
  for (const writer of WRITERS) {
    await measure(`concurrent (${callers} callers, each awaiting)`, writer, callers * perCaller, async (log) => {
      await Promise.all(
        Array.from({ length: callers }, async (_, c) => {
          for (let i = 0; i < perCaller; i++) await log.append(entry(c * perCaller + i));
        }),
      );
    });
  }

  const burst = 50_000;
  for (const writer of WRITERS) {
    await measure('concurrent burst (all in flight)', writer, burst, async (log) => {
      await Promise.all(Array.from({ length: burst }, (_, i) => log.append(entry(i))));
    });
  }

  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-verify-'));
  const db = openDb(join(dir, 'audit.db'));
  try {
    const log = new AuditLog(db);
    await Promise.all(Array.from({ length: burst }, (_, i) => log.append(entry(i))));
    const t0 = performance.now();
    const report = verifyChain(db);
    const ms = performance.now() - t0;
    await log.close();
    process.stdout.write(
      `audit ${'verifyChain'.padEnd(49)} ${String(report.count).padStart(7)} rows  ${ms.toFixed(0).padStart(6)} ms  ${Math.round(
        (report.count / ms) * 1000,
      )
        .toLocaleString('en-US')
        .padStart(9)} rows/s\n`,
    );
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
