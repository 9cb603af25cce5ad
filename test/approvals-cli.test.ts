import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApprovalService } from '../src/approvals/index.ts';
import type { ApprovalOutcome } from '../src/approvals/types.ts';
import { AuditLog } from '../src/audit/index.ts';
import { loadPolicyFile } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';

// Warden without Slack: a held call waits in one process (the service, as
// `warden serve` runs it) and is decided from a terminal (another process).
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
      { env: { ...process.env, WARDEN_DB: dbPath, WARDEN_POLICY: 'examples/policy.yml' } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

function hold(args: Record<string, unknown>): Promise<ApprovalOutcome> {
  return service.request({
    callId: `call-${Math.random()}`,
    agent: policy.agents['support-triage']!,
    server: 'tickets',
    tool: 'send_customer_email',
    args,
    rule: 'approval_required',
    consequence: 'customer-facing',
    reason: 'support-triage may call send_customer_email only with approval',
    signal: new AbortController().signal,
  });
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-approvals-cli-'));
  dbPath = await storeLocation(dir);
  db = openDb(dbPath);
  audit = new AuditLog(db);
  service = new ApprovalService({ db, audit, policy, pollMs: 50 });
});

afterEach(async () => {
  await service.close();
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('warden approvals', () => {
  it('lists a held call and approves it as the owner; the waiting call is released', async () => {
    const outcome = hold({ ticket_id: 'T-1', to: 'ada@example.com', subject: 'Hi', body: 'Fixed' });
    await expect.poll(() => service.pending().length).toBe(1);
    const id = service.pending()[0]!.id;

    const list = await cli(['approvals', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(id);
    expect(list.stdout).toContain('support-triage  tickets__send_customer_email');
    expect(list.stdout).toContain('ada@example.com');

    const ok = await cli(['approvals', 'approve', id, '--as', 'U0123ABCD']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe(`${id}: approved by U0123ABCD\n`);
    await expect(outcome).resolves.toMatchObject({ status: 'approved', approver: 'U0123ABCD' });
    const row = db.prepare("SELECT approver FROM audit WHERE event = 'approval.decided'").get() as { approver: string };
    expect(row.approver).toBe('U0123ABCD');
    const cliRow = db.prepare("SELECT approver, decision, detail FROM audit WHERE event = 'approval.cli'").get() as {
      approver: string;
      decision: string;
      detail: string;
    };
    expect(cliRow).toMatchObject({ approver: 'U0123ABCD', decision: 'approve' });
    expect(JSON.parse(cliRow.detail)).toMatchObject({ approvalId: id, osUser: expect.any(String) });
  });

  it('refuses someone who is not an owner or approver, and a reject without a reason', async () => {
    const outcome = hold({ ticket_id: 'T-2', to: 'grace@example.com', subject: 'Hi', body: 'x' });
    await expect.poll(() => service.pending().length).toBe(1);
    const id = service.pending()[0]!.id;

    const stranger = await cli(['approvals', 'approve', id, '--as', 'U0STRANGER']);
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toMatch(/FORBIDDEN/);
    // Terminal text, not Slack markup.
    expect(stranger.stderr).toContain('U0STRANGER is not the owner or an approver');
    expect(stranger.stderr).not.toContain('<@');
    const noReason = await cli(['approvals', 'reject', id, '--as', 'U0123ABCD']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/--reason is required/);
    expect(service.pending().map((r) => r.id)).toEqual([id]);

    const rejected = await cli(['approvals', 'reject', id, '--as', 'U0456EFGH', '--reason', 'wrong customer']);
    expect(rejected.code).toBe(0);
    await expect(outcome).resolves.toMatchObject({ status: 'rejected', approver: 'U0456EFGH' });
    const why = ((await outcome) as { reason: string }).reason;
    expect(why).toContain('wrong customer');
    // The OS user is audited, not shown to the agent.
    expect(why).not.toMatch(/OS user/);
    const refusedRows = db
      .prepare("SELECT count(*) FROM audit WHERE event = 'approval.cli' AND decision = 'refused'")
      .pluck()
      .get();
    expect(refusedRows).toBe(1);

    const again = await cli(['approvals', 'approve', id, '--as', 'U0123ABCD']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/APPROVAL_CONFLICT/);
    expect(again.stderr).toContain('already rejected by U0456EFGH');
  });
});
