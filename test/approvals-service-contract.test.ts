import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ApprovalService,
  argsHash,
  haltAbortReason,
  statusSentence,
  type ApprovalOutcome,
  type ApprovalRecord,
  type ApprovalRequestInput,
} from '../src/approvals/index.ts';
import { AuditLog } from '../src/audit/index.ts';
import { isWardenError, WardenError } from '../src/errors.ts';
import type { Logger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import type { AgentPolicy, Policy } from '../src/policy/types.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';

/*
 * ApprovalService without Slack (as `warden serve` runs it with decisions
 * from the CLI), on a real SQLite file, a real audit log and a manual clock:
 * who may decide, what the agent is told for each way a call ends, grants
 * from a decision, deferred calls, and shutdown. Found by mutation testing
 * (README, "Mutation testing"); the Slack side is approvals-service.test.ts.
 */

const START = Date.parse('2026-03-02T09:00:00Z');
const MIN = 60_000;
const OWNER = 'U0OWNER';
const APPROVER = 'U0APPROVER';
const STRANGER = 'U0STRANGER';

const POLICY = `
servers:
  tickets:
    command: node
    args: [x.js]
    tools:
      send_customer_email: { scope: write, consequence: customer-facing }
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${OWNER}
    channel: C0APPROVALS
    approvers: [${APPROVER}, ${OWNER}]
    approval_timeout: 15m
    grants: { max: 1h }
  - agent: quick-bot
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${OWNER}
    channel: C0QUICK
    approval_timeout: 20s
`;

let dir: string;
let db: Db;
let audit: AuditLog;
let clock: ManualClock;
let policy: Policy;
const services: ApprovalService[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-approval-contract-'));
  db = openDb(join(dir, 'warden.db'));
  clock = new ManualClock(START);
  audit = new AuditLog(db, { clock });
  policy = parsePolicy(POLICY, 'policy.yml');
});
afterEach(async () => {
  for (const s of services.splice(0)) await s.close();
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function service(opts: { policy?: boolean; logger?: Logger } = {}): ApprovalService {
  const s = new ApprovalService({
    db,
    audit,
    clock,
    pollMs: 500,
    ...(opts.policy === false ? {} : { policy: () => policy }),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  services.push(s);
  return s;
}

function logCapture(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const raw: string[] = [];
  return {
    logger: pino({ level: 'info' }, { write: (line: string) => raw.push(line) }),
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

let seq = 0;
function input(over: Partial<ApprovalRequestInput> & { agentName?: string } = {}): ApprovalRequestInput {
  const { agentName, ...rest } = over;
  return {
    callId: `call-${++seq}`,
    agent: policy.agents[agentName ?? 'support-triage']!,
    server: 'tickets',
    tool: 'send_customer_email',
    args: { to: 'ada@example.com', body: 'hello' },
    rule: 'approval_required',
    consequence: 'customer-facing',
    reason: 'send_customer_email needs approval',
    signal: new AbortController().signal,
    ...rest,
  };
}

/** Holds a call and returns its outcome promise and approval id (once stored and audited). */
async function hold(
  svc: ApprovalService,
  over: Partial<ApprovalRequestInput> & { agentName?: string } = {},
): Promise<{ outcome: Promise<ApprovalOutcome>; id: string }> {
  let id: string | undefined;
  const outcome = svc.request(input({ ...over, onRequested: (r) => (id = r.approvalId) }));
  for (let i = 0; i < 200 && id === undefined; i++) await new Promise((r) => setTimeout(r, 5));
  if (id === undefined) throw new Error('the request was not stored');
  return { outcome, id };
}

function auditRows(event: string) {
  return (
    db
      .prepare(
        'SELECT call_id, agent, server, tool, approver, decision, reason, detail FROM audit WHERE event = ? ORDER BY seq',
      )
      .all(event) as Array<{
      call_id: string | null;
      agent: string | null;
      server: string | null;
      tool: string | null;
      approver: string | null;
      decision: string;
      reason: string | null;
      detail: string;
    }>
  ).map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
}

describe('statusSentence', () => {
  it('says, for each status, what the person clicking a card needs to know', () => {
    const record = (status: ApprovalRecord['status'], decisionReason?: string) =>
      ({ status, decidedBy: 'U0X', decisionReason }) as ApprovalRecord;
    expect(statusSentence(record('pending'))).toBe('This call is waiting for a decision.');
    expect(statusSentence(record('approved'))).toBe('This call was already approved by <@U0X>.');
    expect(statusSentence(record('rejected'))).toBe('This call was already rejected by <@U0X>.');
    expect(statusSentence(record('expired'))).toBe('This request expired before anyone decided.');
    expect(statusSentence(record('cancelled', 'halted by ops'))).toBe('This request was cancelled: halted by ops.');
    expect(statusSentence(record('cancelled'))).toBe('This request was cancelled: agents halted.');
    expect(statusSentence(record('abandoned', 'agent left'))).toBe('This request was abandoned: agent left.');
    expect(statusSentence(record('abandoned'))).toBe('This request was abandoned: Warden restarted.');
    expect(statusSentence(record('failed', 'disk full'))).toBe('This request failed: disk full.');
    expect(statusSentence(record('failed'))).toBe('This request failed: unknown reason.');
  });

  it('haltAbortReason says why a halt cancelled a waiting call', () => {
    expect(haltAbortReason()).toMatchObject({ code: 'HALTED', message: 'agents halted' });
    expect(haltAbortReason('incident 42')).toMatchObject({ code: 'HALTED', message: 'agents halted: incident 42' });
  });
});

describe('what the agent is told', () => {
  it('stores the request with its deduplicated approvers, its deadline and whether it may be granted; onRequested names it', async () => {
    const svc = service();
    const told: unknown[] = [];
    const outcome = svc.request(input({ grantable: false, onRequested: (r) => told.push(r) }));
    await new Promise((r) => setTimeout(r, 50));
    const [record] = svc.pending();
    expect(told).toEqual([{ approvalId: record!.id, expiresAt: START + 15 * MIN, channel: 'C0APPROVALS' }]);
    expect(record).toMatchObject({
      approvers: [OWNER, APPROVER],
      requestedAt: START,
      expiresAt: START + 15 * MIN,
      grantable: false,
      // grant: never: no limit is kept, as no grant may be given from it.
      grantMaxMs: undefined,
      processId: svc.processId,
      requestReason: 'send_customer_email needs approval',
    });
    expect(auditRows('approval.requested')[0]).toMatchObject({
      decision: 'pending',
      reason: 'send_customer_email needs approval',
      detail: {
        approvalId: record!.id,
        rule: 'approval_required',
        consequence: 'customer-facing',
        argsHash: argsHash({ to: 'ada@example.com', body: 'hello' }),
        expiresAt: START + 15 * MIN,
        approvers: [OWNER, APPROVER],
      },
    });
    expect(await svc.pendingCountsByAgent()).toEqual(new Map([['support-triage', 1]]));
    expect(svc.latestForCall(record!.callId)).toEqual({ status: 'pending', decidedAt: undefined });
    await svc.decide(record!.id, OWNER, 'reject', 'no');
    await outcome;
    const grantable = await hold(svc);
    expect(svc.get(grantable.id)).toMatchObject({ grantable: true, grantMaxMs: 60 * MIN });
  });

  it('an agent without an approval timeout waits the default 15 minutes', async () => {
    const svc = service();
    const agent: AgentPolicy = { ...policy.agents['support-triage']!, approvalTimeoutMs: 0 };
    const { outcome, id } = await hold(svc, { agent });
    expect(svc.get(id)!.expiresAt).toBe(START + 15 * MIN);
    await clock.tick(15 * MIN);
    expect(await outcome).toMatchObject({ status: 'expired' });
    expect(svc.get(id)).toMatchObject({ status: 'expired', decisionReason: 'no decision in time' });
  });

  it('on_redacted: refuse holds a call with nothing hidden, and counts what would be hidden', async () => {
    const svc = service();
    const agent: AgentPolicy = { ...policy.agents['support-triage']!, onRedacted: 'refuse' };
    // Nothing in these arguments is a secret: the approver sees all of it, so the call is held as usual.
    const clear = await hold(svc, { agent });
    expect(svc.get(clear.id)).toMatchObject({ status: 'pending' });
    await svc.decide(clear.id, OWNER, 'reject', 'seen');
    await clear.outcome;
    const two = await svc.request(
      input({
        agent,
        args: { to: 'ada@example.com', password: 'hunter2-hunter2', api_key: 'sk-live-0123456789abcdef' },
      }),
    );
    expect(two).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('2 values in the arguments would be hidden from the approver'),
    });
    const one = await svc.request(input({ agent, args: { to: 'ada@example.com', password: 'hunter2-hunter2' } }));
    expect(one).toMatchObject({ reason: expect.stringContaining('1 value in the arguments would be hidden') });
  });

  it('an expiry under a minute is said in seconds, not rounded up to a minute', async () => {
    const svc = service();
    const agent: AgentPolicy = { ...policy.agents['support-triage']!, approvalTimeoutMs: 30_000 };
    const { outcome } = await hold(svc, { agent });
    await clock.tick(30_000);
    expect(await outcome).toMatchObject({
      status: 'expired',
      reason: 'left without a decision for 30 s and expired; the call was not made',
    });
  });

  it('an expiry in seconds is said in seconds; a rejection without a reason names who', async () => {
    const svc = service();
    const quick = await hold(svc, { agentName: 'quick-bot' });
    await clock.tick(20_000);
    expect(await quick.outcome).toEqual({
      approvalId: quick.id,
      status: 'expired',
      approver: undefined,
      reason: 'left without a decision for 20 s and expired; the call was not made',
      at: START + 20_000,
    });
    const rejected = await hold(svc);
    await svc.decide(rejected.id, APPROVER, 'reject', '   ');
    expect(await rejected.outcome).toMatchObject({
      status: 'rejected',
      approver: APPROVER,
      reason: `rejected by ${APPROVER}`,
    });
    expect(svc.get(rejected.id)!.decisionReason).toBeUndefined();
  });

  it('a halt, the agent’s own cancel and its going away each end a waiting call with their own words', async () => {
    const svc = service();
    const cases: Array<[unknown, Partial<ApprovalOutcome>]> = [
      [
        { scope: 'org', reason: 'breach', actor: 'cli:a', at: START },
        { status: 'cancelled', reason: 'cancelled: agents halted (all agents: breach)' },
      ],
      [
        { scope: 'agent', agent: 'support-triage', reason: 'loop', actor: 'cli:a', at: START },
        { status: 'cancelled', reason: 'cancelled: agents halted (agent support-triage: loop)' },
      ],
      [haltAbortReason('incident 7'), { status: 'cancelled', reason: 'cancelled: agents halted: incident 7' }],
      [
        new WardenError('CALL_CANCELLED', 'the agent cancelled the task'),
        { status: 'cancelled', reason: 'cancelled: the agent cancelled the task' },
      ],
      [
        new WardenError('CALL_ABANDONED', 'the agent’s connection closed'),
        { status: 'abandoned', reason: 'abandoned: the agent’s connection closed' },
      ],
      [new Error('whatever'), { status: 'abandoned', reason: 'abandoned: the agent went away before a decision' }],
      [
        new WardenError('INTERNAL', 'x'),
        { status: 'abandoned', reason: 'abandoned: the agent went away before a decision' },
      ],
      [{ scope: 'org' }, { status: 'abandoned', reason: 'abandoned: the agent went away before a decision' }],
    ];
    for (const [reason, expected] of cases) {
      const controller = new AbortController();
      const { outcome, id } = await hold(svc, { signal: controller.signal });
      controller.abort(reason);
      expect(await outcome).toMatchObject({ ...expected, approvalId: id });
    }
    // Aborted before it was even asked: ended at once, no waiting.
    const early = new AbortController();
    early.abort(haltAbortReason());
    expect(await svc.request(input({ signal: early.signal }))).toMatchObject({
      status: 'cancelled',
      reason: 'cancelled: agents halted',
    });
    expect(svc.pending()).toEqual([]);
  });

  it('an onWaiting that throws is logged and the call goes on waiting', async () => {
    const log = logCapture();
    const svc = service({ logger: log.logger });
    const { outcome, id } = await hold(svc, {
      onWaiting: () => {
        throw new Error('progress failed');
      },
    });
    await clock.tick(5000);
    expect(log.lines().filter((l) => l.msg === 'onWaiting threw')).toEqual([
      expect.objectContaining({ approvalId: id, err: 'progress failed' }),
    ]);
    await svc.decide(id, OWNER, 'approve');
    expect(await outcome).toMatchObject({ status: 'approved', approver: OWNER });
  });
});

describe('who may decide', () => {
  it('without a live policy, the approvers stored with the request decide', async () => {
    const svc = service({ policy: false });
    const { outcome, id } = await hold(svc);
    expect(await svc.decide(id, STRANGER, 'approve')).toMatchObject({
      ok: false,
      code: 'forbidden',
      message: `You can't decide this call: <@${STRANGER}> is not the owner or an approver of support-triage.`,
    });
    expect(auditRows('approval.refused')).toEqual([
      {
        call_id: svc.get(id)!.callId,
        agent: 'support-triage',
        server: 'tickets',
        tool: 'send_customer_email',
        approver: STRANGER,
        decision: 'approve',
        reason: `<@${STRANGER}> is not the owner or an approver of support-triage`,
        detail: { approvalId: id, attempted: 'approve', status: 'pending' },
      },
    ]);
    expect(await svc.decide(id, APPROVER, 'approve')).toMatchObject({ ok: true });
    expect(await outcome).toMatchObject({ status: 'approved', approver: APPROVER });
  });

  it('an agent no longer in the policy cannot have its calls decided; an unknown approval is not found', async () => {
    const svc = service();
    const { outcome, id } = await hold(svc);
    const { 'support-triage': _gone, ...rest } = policy.agents;
    policy = { ...policy, agents: rest };
    expect(await svc.precheck(id, OWNER, 'reject')).toMatchObject({
      ok: false,
      code: 'forbidden',
      message: "You can't decide this call: agent support-triage is no longer in the policy.",
    });
    expect(auditRows('approval.refused')[0]).toMatchObject({
      decision: 'reject',
      detail: { attempted: 'reject' },
    });
    expect(await svc.decide('apr_nope', OWNER, 'approve')).toEqual({
      ok: false,
      code: 'not_found',
      message: 'Approval apr_nope does not exist.',
    });
    await svc.cancelPending({}, 'test over');
    expect(await outcome).toMatchObject({ status: 'cancelled', reason: 'cancelled: test over' });
  });

  it('a decision after the deadline, before the expiry timer ran, records the expiry instead', async () => {
    const svc = service();
    const { outcome, id } = await hold(svc);
    // Another process on a later clock (this one's timer has not fired).
    const late = new ManualClock(START + 15 * MIN);
    const other = new ApprovalService({ db, audit, clock: late, policy: () => policy });
    services.push(other);
    expect(await other.precheck(id, OWNER, 'approve')).toMatchObject({
      ok: false,
      code: 'not_pending',
      message: 'This request expired before anyone decided.',
      record: { status: 'expired', decisionReason: 'no decision in time' },
    });
    await clock.tick(500);
    expect(await outcome).toMatchObject({ status: 'expired' });
    expect(await svc.precheck(id, OWNER, 'approve')).toMatchObject({ ok: false, code: 'not_pending' });
  });
});

describe('grants from a decision', () => {
  it('approve for a while: the call is approved and a grant starts; reject ignores the duration', async () => {
    const svc = service();
    const first = await hold(svc);
    const decided = await svc.decide(first.id, OWNER, 'approve', undefined, { forMs: 30 * MIN });
    expect(decided).toMatchObject({
      ok: true,
      record: { status: 'approved' },
      grant: { agent: 'support-triage', server: 'tickets', tool: 'send_customer_email', approvalId: first.id },
    });
    expect(await first.outcome).toMatchObject({ status: 'approved' });
    // Covered now: the next identical request is approved at once, naming the grant.
    const args = { to: 'bob@example.com', body: 'x' };
    const covered = await svc.request(input({ args }));
    expect(covered).toEqual({
      approvalId: `grant:${decided.ok ? decided.grant?.id : ''}`,
      status: 'approved',
      approver: OWNER,
      at: START,
      argsHash: argsHash(args),
    });
    // Unless the rule says grant: never.
    const never = await hold(svc, { grantable: false });
    const rejected = await svc.decide(never.id, OWNER, 'reject', 'no');
    expect(rejected).toMatchObject({ ok: true });
    expect(rejected.ok && rejected.grant).toBeUndefined();
    expect(await never.outcome).toMatchObject({ status: 'rejected' });
  });

  it('only an approval with a duration starts a grant: not a plain approval, not a rejection with a duration', async () => {
    const svc = service();
    const plain = await hold(svc);
    const approved = await svc.decide(plain.id, OWNER, 'approve');
    expect(approved.ok && approved.grant).toBeUndefined();
    const withFor = await hold(svc);
    const rejected = await svc.decide(withFor.id, OWNER, 'reject', 'no', { forMs: 30 * MIN });
    expect(rejected).toMatchObject({ ok: true, record: { status: 'rejected' } });
    expect(rejected.ok && rejected.grant).toBeUndefined();
    // Nothing covers the next identical request: it is held again.
    const next = await hold(svc);
    expect(svc.get(next.id)).toMatchObject({ status: 'pending' });
    await svc.decide(next.id, OWNER, 'reject', 'done');
    await Promise.all([plain.outcome, withFor.outcome, next.outcome]);
  });

  it('refuses a grant that cannot be given before deciding, naming the field; the call stays pending', async () => {
    const svc = service();
    const { outcome, id } = await hold(svc);
    const refused = async (forMs: number, on = svc, which = id) => {
      const err = await on.decide(which, OWNER, 'approve', undefined, { forMs }).catch((e: unknown) => e);
      expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
      expect((err as { details?: unknown }).details).toEqual({ field: 'for' });
      return (err as Error).message;
    };
    expect(await refused(2 * 60 * MIN)).toBe('for: a grant for support-triage lasts at most 1h (grants.max), got 2h');
    expect(await refused(0)).toBe('for: a grant for support-triage lasts at most 1h (grants.max), got 0ms');
    expect(await refused(-1)).toMatch(/lasts at most 1h/);
    const quick = await hold(svc, { agentName: 'quick-bot' });
    expect(await refused(MIN, svc, quick.id)).toBe('for: agent quick-bot has no grants in the policy; approve once');
    const never = await hold(svc, { grantable: false });
    expect(await refused(MIN, svc, never.id)).toBe(
      'for: send_customer_email is held by a rule with grant: never; approve once',
    );
    // Without a live policy there is no grants: to check against.
    const bare = service({ policy: false });
    expect(await refused(MIN, bare)).toBe('for: agent support-triage has no grants in the policy; approve once');
    expect(svc.get(id)!.status).toBe('pending');
    // At the maximum it is given.
    expect(await svc.decide(id, OWNER, 'approve', undefined, { forMs: 60 * MIN })).toMatchObject({ ok: true });
    expect(await outcome).toMatchObject({ status: 'approved' });
  });

  it('a grant lookup that fails holds the call as usual, and says so in the log', async () => {
    const log = logCapture();
    const svc = service({ logger: log.logger });
    const held = await hold(svc);
    await svc.decide(held.id, OWNER, 'approve', undefined, { forMs: 30 * MIN });
    await held.outcome;
    db.exec('DROP TABLE grants');
    const again = await hold(svc);
    expect(svc.get(again.id)!.status).toBe('pending');
    expect(log.lines().filter((l) => l.msg === 'grant check failed; holding the call')).toHaveLength(1);
    await svc.decide(again.id, OWNER, 'reject', 'no');
    expect(await again.outcome).toMatchObject({ status: 'rejected' });
  });
});

describe('deferred held calls and shutdown', () => {
  it('deferred() audits that the agent was told to check back; collected() audits how it collected', async () => {
    const svc = service();
    const { id } = await hold(svc);
    const callId = svc.get(id)!.callId;
    await svc.deferred(id, { agent: 'support-triage', callId });
    expect(auditRows('approval.deferred')).toEqual([
      {
        call_id: callId,
        agent: 'support-triage',
        server: 'tickets',
        tool: 'send_customer_email',
        approver: null,
        decision: 'pending',
        reason: 'the agent was answered "not run yet" and told to check back; the approval goes on',
        detail: { approvalId: id, expiresAt: START + 15 * MIN },
      },
    ]);
    await svc.decide(id, OWNER, 'approve');
    await svc.collected(id, { agent: 'support-triage', callId, how: 'await' });
    await svc.collected(id, { agent: 'support-triage', callId, how: 'repeat' });
    await svc.collected('apr_gone', { agent: 'support-triage', callId: 'c-gone', how: 'repeat' });
    expect(auditRows('approval.collected').map((r) => [r.decision, r.reason, r.detail])).toEqual([
      ['approved', 'collected with warden__await_approval', { approvalId: id, how: 'await' }],
      ['approved', 'collected by repeating the same call', { approvalId: id, how: 'repeat' }],
      ['failed', 'collected by repeating the same call', { approvalId: 'apr_gone', how: 'repeat' }],
    ]);
  });

  it('deferred() as an MCP task says so and names the task', async () => {
    const svc = service();
    const { id } = await hold(svc);
    const callId = svc.get(id)!.callId;
    await svc.deferred(id, { agent: 'support-triage', callId, taskId: 'task-7' });
    expect(auditRows('approval.deferred')).toMatchObject([
      {
        call_id: callId,
        decision: 'pending',
        reason: 'the agent was answered with task task-7 and polls it; the approval goes on',
        detail: { approvalId: id, expiresAt: START + 15 * MIN, taskId: 'task-7' },
      },
    ]);
    await svc.decide(id, OWNER, 'reject', 'done');
  });

  it('close() abandons the calls whose agents wait on it, and leaves deferred ones pending for the next Warden', async () => {
    const svc = service();
    const waited = await hold(svc);
    const deferred = await hold(svc);
    await svc.deferred(deferred.id, { agent: 'support-triage', callId: svc.get(deferred.id)!.callId });
    await svc.close();
    expect(await waited.outcome).toMatchObject({ status: 'abandoned', reason: 'abandoned: Warden shut down' });
    expect(svc.get(waited.id)).toMatchObject({ status: 'abandoned', decisionReason: 'Warden shut down' });
    expect(svc.get(deferred.id)!.status).toBe('pending');
  });

  it('recover() after a restart abandons an orphaned request but not a deferred one, whose agent checks back', async () => {
    const before = service();
    const orphan = await hold(before);
    const deferred = await hold(before);
    const record = before.get(deferred.id)!;
    // What the gateway stores when it tells the agent "not run yet".
    before.heldCalls.keep({
      approvalId: deferred.id,
      callId: record.callId,
      agent: record.agent,
      name: `${record.server}__${record.tool}`,
      server: record.server,
      tool: record.tool,
      argsHash: record.argsHash,
      args: { to: 'ada@example.com', body: 'hello' },
      channel: record.channel,
      answerWithinMs: 1_000,
      expiresAt: record.expiresAt,
    });
    // The next Warden on this host (the same pid: the earlier life of this process is gone).
    const after = service();
    expect(await after.recover()).toBe(1);
    expect(after.get(orphan.id)).toMatchObject({ status: 'abandoned', decisionReason: 'Warden restarted' });
    expect(after.get(deferred.id)).toMatchObject({ status: 'pending' });
    // Its own requests are its own: a second recover() takes nothing more.
    const mine = await hold(after);
    expect(await after.recover()).toBe(0);
    expect(after.get(mine.id)).toMatchObject({ status: 'pending' });
    await after.decide(mine.id, OWNER, 'reject', 'done');
    await before.decide(deferred.id, OWNER, 'reject', 'done');
  });

  it('leaves no timer behind once nothing waits: neither the poll nor an expiry timer', async () => {
    const svc = service();
    const before = clock.pending;
    const a = await hold(svc);
    const b = await hold(svc);
    // Two expiry timers and one poll for both.
    expect(clock.pending).toBe(before + 3);
    await svc.decide(a.id, OWNER, 'approve');
    await a.outcome;
    expect(clock.pending).toBe(before + 2);
    await svc.decide(b.id, OWNER, 'reject', 'no');
    await b.outcome;
    expect(clock.pending).toBe(before);
  });

  it('awaitDecision on a request its maker left: the decision when it comes, or the expiry at its deadline', async () => {
    const maker = service();
    const decided = await hold(maker);
    const expiring = await hold(maker);
    for (const { id } of [decided, expiring])
      await maker.deferred(id, { agent: 'support-triage', callId: maker.get(id)!.callId });
    // The maker stops; deferred requests stay pending for whoever runs them next.
    await maker.close();
    const next = service();
    const onDecision = next.awaitDecision(decided.id, new AbortController().signal);
    const onExpiry = next.awaitDecision(expiring.id, new AbortController().signal);
    let settled = 0;
    for (const p of [onDecision, onExpiry]) void p.then(() => settled++);
    await clock.tick(MIN);
    expect(settled).toBe(0);
    await next.decide(decided.id, APPROVER, 'approve');
    expect(await onDecision).toMatchObject({ status: 'approved', approver: APPROVER });
    // Only this process's own timer can end the other one: its maker is gone.
    await clock.tick(14 * MIN - 1);
    expect(settled).toBe(1);
    await clock.tick(1);
    expect(await onExpiry).toMatchObject({ status: 'expired' });
    expect(next.get(expiring.id)).toMatchObject({ status: 'expired' });
  });

  it('awaitDecision: a missing approval fails, a decided one answers at once, an aborted wait cancels', async () => {
    const svc = service();
    expect(await svc.awaitDecision('apr_missing', new AbortController().signal)).toEqual({
      approvalId: 'apr_missing',
      status: 'failed',
      reason: 'approval failed: the approval is gone',
      at: START,
    });
    const decided = await hold(svc);
    await svc.decide(decided.id, OWNER, 'reject', 'not this one');
    await decided.outcome;
    expect(await svc.awaitDecision(decided.id, new AbortController().signal)).toMatchObject({
      status: 'rejected',
      reason: `rejected by ${OWNER}: not this one`,
    });
    const waiting = await hold(svc);
    const next = service();
    const aborted = new AbortController();
    aborted.abort(haltAbortReason('stop'));
    expect(await next.awaitDecision(waiting.id, aborted.signal)).toMatchObject({
      status: 'cancelled',
      reason: 'cancelled: agents halted: stop',
    });
    const later = await hold(svc);
    const controller = new AbortController();
    const waitingOn = next.awaitDecision(later.id, controller.signal);
    controller.abort(haltAbortReason());
    expect(await waitingOn).toMatchObject({ status: 'cancelled' });
  });
});
