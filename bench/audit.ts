import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AuditLog, verifyChain, type AuditEntry } from '../src/audit/index.ts';
import { openDb } from '../src/store/db.ts';

/**
 * Audit append throughput on a real file (WAL, synchronous=FULL):
 * - sequential: one caller awaiting each append (one commit, one fsync per row);
 * - concurrent: many callers in flight at once, so group commit batches them.
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

async function measure(label: string, rows: number, body: (log: AuditLog) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-audit-'));
  const db = openDb(join(dir, 'audit.db'));
  try {
    const log = new AuditLog(db);
    const t0 = performance.now();
    await body(log);
    await log.close();
    const ms = performance.now() - t0;
    const report = verifyChain(db);
    if (!report.ok || report.count !== rows) throw new Error(`${label}: chain not intact after bench (${JSON.stringify(report)})`);
    process.stdout.write(`audit ${label.padEnd(40)} ${String(rows).padStart(7)} rows  ${ms.toFixed(0).padStart(6)} ms  ${Math.round((rows / ms) * 1000).toLocaleString('en-US').padStart(9)} rows/s\n`);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  const seq = 2_000;
  await measure('sequential await (1 caller)', seq, async (log) => {
    for (let i = 0; i < seq; i++) await log.append(entry(i));
  });

  const callers = 64;
  const perCaller = 500;
  await measure(`concurrent (${callers} callers, each awaiting)`, callers * perCaller, async (log) => {
    await Promise.all(
      Array.from({ length: callers }, async (_, c) => {
        for (let i = 0; i < perCaller; i++) await log.append(entry(c * perCaller + i));
      }),
    );
  });

  const burst = 50_000;
  await measure('concurrent burst (all in flight)', burst, async (log) => {
    await Promise.all(Array.from({ length: burst }, (_, i) => log.append(entry(i))));
  });

  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-verify-'));
  const db = openDb(join(dir, 'audit.db'));
  try {
    const log = new AuditLog(db);
    await Promise.all(Array.from({ length: burst }, (_, i) => log.append(entry(i))));
    const t0 = performance.now();
    const report = verifyChain(db);
    const ms = performance.now() - t0;
    process.stdout.write(`audit ${'verifyChain'.padEnd(40)} ${String(report.count).padStart(7)} rows  ${ms.toFixed(0).padStart(6)} ms  ${Math.round((report.count / ms) * 1000).toLocaleString('en-US').padStart(9)} rows/s\n`);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await run();
}
