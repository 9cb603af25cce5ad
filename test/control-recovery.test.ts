import type { AuditDecision } from '../src/audit/types.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit/log.ts';
import { verifyChain } from '../src/audit/verify.ts';
import { startWarden } from '../src/cli/runtime.ts';
import { loadConfig } from '../src/config/index.ts';
import {
  ABANDONED_CALL_REASON,
  DEFAULT_RECOVERY_GRACE_MS,
  recoverAbandonedCalls,
  recoveryGraceMs,
} from '../src/control/recovery.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';
import { ManualClock } from './support/manual-clock.ts';
import { AuditReader } from '../src/audit/reader.ts';
import { ApprovalStore } from '../src/approvals/store.ts';

const MIN = 60_000;
const START = Date.parse('2026-03-02T10:00:00Z');

let dir: string;
let dbPath: string;
let db: Db;
let audit: AuditLog;
/** What recovery reads, each from the module that owns the table. */
const readers = () => ({ auditReader: new AuditReader(db), approvals: new ApprovalStore(db) });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-recovery-'));
  dbPath = await storeLocation(dir);
  db = openDb(dbPath);
  audit = new AuditLog(db);
});
afterEach(async () => {
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A call as the gateway records it: decided (durable, before forwarding), and completed unless its process died. */
async function call(callId: string, decision: AuditDecision, ts: number, completed?: AuditDecision): Promise<void> {
  await audit.append({
    event: 'call.decided',
    callId,
    agent: 'support-triage',
    owner: 'U0OWNER',
    server: 'crm',
    tool: 'refund_request',
    args: { amount: 5 },
    decision,
    ts,
  });
  if (completed)
    await audit.append({
      event: 'call.completed',
      callId,
      agent: 'support-triage',
      server: 'crm',
      tool: 'refund_request',
      decision: completed,
      durationMs: 20,
      ts: ts + 20,
    });
}

function approval(callId: string, status: string, decidedAt: number | null): void {
  db.prepare(
    `INSERT INTO approvals (id, call_id, agent, server, tool, args, args_hash, rule, consequence, status, requested_at, expires_at, decided_at, process_id)
     VALUES (?, ?, 'support-triage', 'crm', 'refund_request', '{}', 'h', 'approval_required', 'irreversible', ?, ?, ?, ?, 'otherhost:4242:abcd1234')`,
  ).run(`apr_${callId}`, callId, status, START - 60 * MIN, START + 60 * MIN, decidedAt);
}

interface Completion {
  decision: string;
  reason: string | null;
  agent: string | null;
  server: string | null;
  tool: string | null;
  duration_ms: number | null;
  detail: string | null;
}

function completions(callId: string): Completion[] {
  return db
    .prepare(
      "SELECT decision, reason, agent, server, tool, duration_ms, detail FROM audit WHERE event = 'call.completed' AND call_id = ? ORDER BY seq",
    )
    .all(callId) as Completion[];
}

describe('recoverAbandonedCalls on a real SQLite file', () => {
  it('closes allowed and approved calls left dangling by a dead process, and nothing else; a second run adds nothing', async () => {
    const old = START - 30 * MIN;
    await call('dead-allow', 'allow', old);
    await call('done-allow', 'allow', old, 'ok');
    await call('recent-allow', 'allow', START - 2 * MIN); // maybe still running in another process
    await call('refused', 'deny', old); // never forwarded: no completion by design
    await call('halted', 'halted', old);
    // Held calls.
    await call('dead-approved', 'approve', old);
    approval('dead-approved', 'approved', old + MIN);
    await call('late-approved', 'approve', old);
    approval('late-approved', 'approved', START - MIN); // released a minute ago: may be running now
    await call('waiting', 'approve', old);
    approval('waiting', 'pending', null); // a live process still waits for a human
    await call('abandoned-wait', 'approve', old);
    approval('abandoned-wait', 'abandoned', START); // ApprovalService.recover() just gave up on it
    await call('no-approval-row', 'approve', old); // died between call.decided and the approvals insert
    await call('before-lookback', 'allow', START - 40 * 86_400_000);

    const clock = new ManualClock(START);
    const recovered = await recoverAbandonedCalls({ ...readers(), audit, clock, logger: silentLogger() });
    expect(recovered.map((r) => r.callId).sort()).toEqual([
      'abandoned-wait',
      'dead-allow',
      'dead-approved',
      'no-approval-row',
    ]);

    const [row] = completions('dead-allow');
    expect(completions('dead-allow')).toHaveLength(1);
    expect(row).toMatchObject({
      decision: 'abandoned',
      reason: ABANDONED_CALL_REASON,
      agent: 'support-triage',
      server: 'crm',
      tool: 'refund_request',
      duration_ms: null,
    });
    expect(JSON.parse(row!.detail!)).toMatchObject({
      recovered: true,
      decidedAt: old,
      graceMs: DEFAULT_RECOVERY_GRACE_MS,
    });
    expect(completions('done-allow')).toEqual([expect.objectContaining({ decision: 'ok' })]);
    for (const id of ['recent-allow', 'refused', 'halted', 'late-approved', 'waiting', 'before-lookback'])
      expect(completions(id)).toEqual([]);
    expect(completions('no-approval-row')).toEqual([
      expect.objectContaining({ decision: 'abandoned', reason: ABANDONED_CALL_REASON }),
    ]);
    // The rows join the hash chain like any other.
    expect(verifyChain(db)).toMatchObject({ ok: true });

    // Idempotent: the same start again, or a later one, finds nothing new to close.
    const rowsBefore = (db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
    expect(await recoverAbandonedCalls({ ...readers(), audit, clock })).toEqual([]);
    expect(await recoverAbandonedCalls({ ...readers(), audit, clock, startedAt: START + 5 * MIN })).toEqual([]);
    expect((db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n).toBe(rowsBefore);

    // Once it is past the grace window, the call that may have been running is presumed dead too.
    const later = await recoverAbandonedCalls({ ...readers(), audit, clock, startedAt: START + 20 * MIN });
    expect(later.map((r) => r.callId).sort()).toEqual(['late-approved', 'recent-allow']);
    expect(completions('waiting')).toEqual([]);
  });

  it('sees dangling rows written by another connection (another process sharing the file)', async () => {
    const otherDb = openDb(dbPath);
    const other = new AuditLog(otherDb);
    try {
      await other.append({
        event: 'call.decided',
        callId: 'from-other',
        agent: 'a',
        server: 's',
        tool: 't',
        decision: 'allow',
        ts: START - 11 * MIN,
      });
      await other.close();
    } finally {
      otherDb.close();
    }
    const recovered = await recoverAbandonedCalls({ ...readers(), audit, startedAt: START });
    expect(recovered).toEqual([
      { callId: 'from-other', agent: 'a', server: 's', tool: 't', decidedSeq: expect.any(Number) },
    ]);
    expect(completions('from-other')).toEqual([expect.objectContaining({ decision: 'abandoned' })]);
  });

  it('widens the grace window to the longest upstream timeout in the policy', async () => {
    const policy = parsePolicy(
      `
servers:
  crm:
    command: node
    args: [x.js]
    timeout_ms: 1800000
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
`,
      'policy.yml',
    );
    expect(recoveryGraceMs()).toBe(DEFAULT_RECOVERY_GRACE_MS);
    expect(recoveryGraceMs(policy)).toBe(30 * MIN);
    await call('twenty-min', 'allow', START - 20 * MIN);
    expect(await recoverAbandonedCalls({ ...readers(), audit, policy, startedAt: START })).toEqual([]);
    expect(await recoverAbandonedCalls({ ...readers(), audit, policy, startedAt: START + 11 * MIN })).toEqual([
      expect.objectContaining({ callId: 'twenty-min' }),
    ]);
  });
});

describe('startWarden', () => {
  it('records a call a previous process left running as abandoned, once, at start-up', async () => {
    const now = Date.now();
    await call('left-running', 'allow', now - 60 * MIN);
    await call('just-decided', 'allow', now - MIN);
    // The seed form: no upstream to start, so this checks start-up wiring only.
    const policyPath = 'examples/seed-policy.yml';
    const config = loadConfig({
      WARDEN_DB: dbPath,
      WARDEN_POLICY: policyPath,
      WARDEN_HOST: '127.0.0.1',
      WARDEN_PORT: '0',
      LOG_LEVEL: 'silent',
    });
    for (let i = 0; i < 2; i++) {
      const warden = await startWarden(config, { logger: silentLogger(), env: {} });
      await warden.close();
    }
    expect(completions('left-running')).toEqual([
      expect.objectContaining({ decision: 'abandoned', reason: ABANDONED_CALL_REASON }),
    ]);
    expect(completions('just-decided')).toEqual([]);
    expect(verifyChain(db)).toMatchObject({ ok: true });
  });

  it('looks again once the grace window has passed, closing calls a crash left just before this start', async () => {
    const clock = new ManualClock(Date.now());
    const t0 = clock.now();
    await call('left-just-before', 'allow', t0 - MIN);
    const config = loadConfig({
      WARDEN_DB: dbPath,
      WARDEN_POLICY: 'examples/seed-policy.yml',
      WARDEN_HOST: '127.0.0.1',
      WARDEN_PORT: '0',
      LOG_LEVEL: 'silent',
    });
    const warden = await startWarden(config, { logger: silentLogger(), env: {}, clock });
    try {
      // Too recent at start-up: it might still be running in another process.
      expect(completions('left-just-before')).toEqual([]);
      // This process's own call, decided after it started, must never be touched.
      await call('mine', 'allow', t0 + MIN);
      await clock.advanceTo(t0 + DEFAULT_RECOVERY_GRACE_MS + 2_000);
      await expect
        .poll(() => completions('left-just-before'))
        .toEqual([expect.objectContaining({ decision: 'abandoned', reason: ABANDONED_CALL_REASON })]);
      expect(completions('mine')).toEqual([]);
    } finally {
      await warden.close();
    }
    expect(verifyChain(db)).toMatchObject({ ok: true });
  });
});
