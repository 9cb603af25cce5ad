import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../src/approvals/index.ts';
import type { ApprovalOutcome } from '../src/approvals/types.ts';
import { AuditLog } from '../src/audit/index.ts';
import { loadPolicyFile } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';

// Grants from a terminal: `approvals approve --for` in one process while the
// held call waits in another (the service, as `warden serve` runs it).
const policy = loadPolicyFile('examples/policy.yml', {});
let dir: string;
let dbPath: string;
let db: Db;
let audit: AuditLog;
let service: ApprovalService;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/index.ts', ...args],
      { env: { ...process.env, WARDEN_DB: dbPath, WARDEN_POLICY: 'examples/policy.yml', LOG_LEVEL: 'silent' } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

function hold(grantable = true): Promise<ApprovalOutcome> {
  return service.request({
    callId: `call-${Math.random()}`,
    agent: policy.agents['support-triage']!,
    server: 'crm',
    tool: 'refund_request',
    args: { customer_id: 'C-1', amount: 500 },
    rule: 'approval_required',
    consequence: 'irreversible',
    reason: 'support-triage may call refund_request on crm only with approval',
    signal: new AbortController().signal,
    grantable,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-grants-cli-'));
  dbPath = await storeLocation(dir);
  db = openDb(dbPath);
  audit = new AuditLog(db);
  service = new ApprovalService({ db, audit, policy, pollMs: 50 });
});

afterAll(async () => {
  await service.close();
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('warden approvals approve --for, warden grants', () => {
  it('approves with a grant, lists it, the next call needs no card, and revoke ends it', async () => {
    const first = hold();
    await expect.poll(() => service.pending().length).toBe(1);
    const id = service.pending()[0]!.id;

    const tooLong = await cli(['approvals', 'approve', id, '--as', 'U0123ABCD', '--for', '2h']);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toContain('for: a grant for support-triage lasts at most 1h (grants.max), got 2h');
    const bad = await cli(['approvals', 'approve', id, '--as', 'U0123ABCD', '--for', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--for: expected a duration like 15m or 1h, got "soon"');
    expect(service.pending().map((r) => r.id)).toEqual([id]);

    const ok = await cli(['approvals', 'approve', id, '--as', 'U0123ABCD', '--for', '30m']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(
      new RegExp(
        `^${id}: approved by U0123ABCD; grt_\\S+ lets support-triage call crm__refund_request without a card until \\S+Z\\n$`,
      ),
    );
    await expect(first).resolves.toMatchObject({ status: 'approved', approver: 'U0123ABCD' });

    const list = await cli(['grants', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^grt_\S+ {2}support-triage {2}crm__refund_request {2}by U0123ABCD {2}until \S+Z\n$/);

    // Covered: approved at once, by the grant's approver, without a pending row.
    await expect(hold()).resolves.toMatchObject({ status: 'approved', approver: 'U0123ABCD' });
    expect(service.pending()).toEqual([]);
    // A grant: never call is held all the same.
    const never = hold(false);
    await expect.poll(() => service.pending().length).toBe(1);
    const refusedFor = await cli([
      'approvals',
      'approve',
      service.pending()[0]!.id,
      '--as',
      'U0123ABCD',
      '--for',
      '15m',
    ]);
    expect(refusedFor.code).toBe(2);
    expect(refusedFor.stderr).toContain('grant: never');
    await service.decide(service.pending()[0]!.id, 'U0123ABCD', 'reject', 'no');
    await expect(never).resolves.toMatchObject({ status: 'rejected' });

    const revoked = await cli(['grants', 'revoke', 'support-triage', 'crm__refund_request', '--as', 'U0123ABCD']);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe('revoked 1 grant: crm__refund_request\n');
    expect((await cli(['grants', 'list'])).stdout).toBe('no grants in force\n');
    const ended = db.prepare("SELECT decision, approver FROM audit WHERE event = 'grant.ended'").all();
    expect(ended).toEqual([{ decision: 'revoked', approver: 'U0123ABCD' }]);

    const again = hold();
    await expect.poll(() => service.pending().length).toBe(1);
    await service.decide(service.pending()[0]!.id, 'U0123ABCD', 'reject', 'enough');
    await expect(again).resolves.toMatchObject({ status: 'rejected' });
    // Eight CLI processes, each loading tsx: ~30 s on SQLite on a busy 2-core machine, more on PostgreSQL.
  }, 120_000);
});
