import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { AuditLog } from '../src/audit/index.ts';
import { wireHaltEffects } from '../src/control/halt-effects.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { openDb } from '../src/store/db.ts';
import { isWardenError } from '../src/errors.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';

/**
 * A time-boxed grant end to end through the real gateway and helpdesk
 * fixture: approved "for 30 min", a second call runs without a card and names
 * the grant; it ends at expiry (Date faked forward), on revocation and on a
 * halt, and a later call is held again. `grant: never` calls cannot be granted.
 */

const AGENT = 'billing-bot';
const OWNER = 'U0123ABCD';
const MIN = 60_000;

const POLICY = `${helpdeskServersYaml(['crm'])}
agents:
  - agent: ${AGENT}
    mcp_scopes: { crm: [read, write] }
    owner: ${OWNER}
    channel: C0123ABCD
    answer_within: never
    grants: { max: 1h }
    rules:
      - tool: refund_request
        when: "args.amount > 1000"
        then: approve
        grant: never
        reason: large refunds are seen every time
`;

let h: Harness;
let offHalt: () => void;
let client: Client;

beforeAll(async () => {
  h = await startHarness(POLICY);
  offHalt = wireHaltEffects({ killSwitch: h.killSwitch, approvals: h.approvals, alerts: h.alerts });
  client = await h.connect(AGENT);
});
afterAll(async () => {
  offHalt?.();
  await h?.close();
});
afterEach(() => {
  vi.useRealTimers();
});

const refund = (amount: number) =>
  client.callTool({ name: 'crm__refund_request', arguments: { customer_id: 'C-1', amount, reason: 'late' } });

/** Starts a held call and returns it with its pending approval. */
async function held(amount: number) {
  const before = new Set(h.approvals.pending({ agent: AGENT }).map((r) => r.id));
  const call = refund(amount);
  const approval = await waitFor(
    () => h.approvals.pending({ agent: AGENT }).find((r) => !before.has(r.id)),
    'a pending approval',
  );
  return { call, approval };
}

async function runsWithoutCard(amount: number): Promise<string> {
  const cards = h.rows({ event: 'approval.requested', agent: AGENT }).length;
  const res = await refund(amount);
  expect(res.isError).toBeFalsy();
  expect(textOf(res)).toContain('"refunded":true');
  await h.flush();
  expect(h.rows({ event: 'approval.requested', agent: AGENT })).toHaveLength(cards);
  const used = h.rows({ event: 'grant.used', agent: AGENT }).at(-1)!;
  // The covered call's own rows carry the same call id as the grant.used row.
  expect(h.rows({ callId: used.call_id! }).map((r) => r.event)).toEqual([
    'call.decided',
    'grant.used',
    'call.completed',
  ]);
  return JSON.parse(used.detail!).grantId as string;
}

async function grantFor30m(): Promise<string> {
  const { call, approval } = await held(20);
  const result = await h.approvals.decide(approval.id, OWNER, 'approve', undefined, { forMs: 30 * MIN });
  expect(result.ok).toBe(true);
  const grant = result.ok ? result.grant : undefined;
  expect(grant).toMatchObject({ agent: AGENT, server: 'crm', tool: 'refund_request', grantedBy: OWNER });
  expect((await call).isError).toBeFalsy();
  return grant!.id;
}

describe('time-boxed grants', () => {
  it('approve for 30 min: the next call runs without a card, naming the grant, until it expires', async () => {
    const id = await grantFor30m();
    await h.flush();
    expect(h.rows({ event: 'grant.created', agent: AGENT }).at(-1)).toMatchObject({
      decision: 'created',
      approver: OWNER,
    });
    expect(await runsWithoutCard(30)).toBe(id);
    expect((await h.approvals.grants.list()).map((g) => g.id)).toEqual([id]);

    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() + 31 * MIN);
    const { call, approval } = await held(40);
    await h.flush();
    const ended = h.rows({ event: 'grant.ended', agent: AGENT }).at(-1)!;
    expect(ended).toMatchObject({ decision: 'expired' });
    expect(JSON.parse(ended.detail!)).toMatchObject({ grantId: id, endReason: 'expired' });
    await h.approvals.decide(approval.id, OWNER, 'approve');
    expect((await call).isError).toBeFalsy();
    expect(await h.approvals.grants.list()).toEqual([]);
  });

  it('a revoked grant covers nothing more', async () => {
    const id = await grantFor30m();
    await runsWithoutCard(25);
    const ended = await h.approvals.grants.revoke({ agent: AGENT, tool: 'crm__refund_request' }, OWNER);
    expect(ended.map((g) => g.id)).toEqual([id]);
    await h.flush();
    expect(h.rows({ event: 'grant.ended', agent: AGENT }).at(-1)).toMatchObject({
      decision: 'revoked',
      approver: OWNER,
    });
    const { call, approval } = await held(26);
    await h.approvals.decide(approval.id, OWNER, 'reject', 'enough');
    expect((await call).isError).toBe(true);
  });

  it('a halt ends the agent’s grants; after resume calls are held again', async () => {
    await grantFor30m();
    await h.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'investigating', actor: OWNER });
    await waitFor(async () => (await h.approvals.grants.list()).length === 0 || undefined, 'the grant to end');
    await h.flush();
    expect(h.rows({ event: 'grant.ended', agent: AGENT }).at(-1)).toMatchObject({ decision: 'halted' });
    await h.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: OWNER });
    const { call, approval } = await held(27);
    await h.approvals.decide(approval.id, OWNER, 'approve');
    expect((await call).isError).toBeFalsy();
  });

  it('a halt made where no halt effects ran (a terminal, then a resume) still ends the grant before it covers a call', async () => {
    const id = await grantFor30m();
    // Another process, as `warden agents halt` / `resume` from a terminal; this one does not act on remote halts.
    const otherDb = openDb(h.dbPath);
    const otherAudit = new AuditLog(otherDb);
    const terminal = new KillSwitch({ db: otherDb, audit: otherAudit });
    await terminal.halt({ scope: 'org', reason: 'from a terminal', actor: 'cli:ops' });
    await terminal.resume({ scope: 'org', actor: 'cli:ops' });
    await otherAudit.close();
    otherDb.close();
    await waitFor(() => h.killSwitch.check(AGENT) === null || undefined, 'the resume to be seen');
    expect((await h.approvals.grants.list()).map((g) => g.id)).toEqual([id]);
    // Held again, not covered: the trail shows a halt since the grant was made.
    const { call, approval } = await held(29);
    await h.flush();
    const ended = h.rows({ event: 'grant.ended', agent: AGENT }).at(-1)!;
    expect(ended).toMatchObject({ decision: 'halted' });
    expect(JSON.parse(ended.detail!)).toMatchObject({ grantId: id });
    await h.approvals.decide(approval.id, OWNER, 'reject', 'not now');
    expect((await call).isError).toBe(true);
  });

  it('refuses a grant longer than grants.max, and any grant for a grant: never call', async () => {
    const long = await held(28);
    const tooLong = await h.approvals
      .decide(long.approval.id, OWNER, 'approve', undefined, { forMs: 2 * 60 * MIN })
      .catch((e) => e);
    expect(isWardenError(tooLong, 'INVALID_INPUT')).toBe(true);
    expect((tooLong as Error).message).toBe('for: a grant for billing-bot lasts at most 1h (grants.max), got 2h');
    // Refused before deciding: the call is still pending and can be approved once.
    await h.approvals.decide(long.approval.id, OWNER, 'approve');
    expect((await long.call).isError).toBeFalsy();

    const big = await held(5000);
    const never = await h.approvals
      .decide(big.approval.id, OWNER, 'approve', undefined, { forMs: 15 * MIN })
      .catch((e) => e);
    expect(isWardenError(never, 'INVALID_INPUT')).toBe(true);
    expect((never as Error).message).toContain('grant: never');
    await h.approvals.decide(big.approval.id, OWNER, 'reject', 'no');
    expect((await big.call).isError).toBe(true);
  });

  it('a grant: never call is held even while a grant for the tool is in force', async () => {
    await grantFor30m();
    const big = await held(5000);
    await h.approvals.decide(big.approval.id, OWNER, 'reject', 'no');
    expect((await big.call).isError).toBe(true);
    await h.approvals.grants.revoke({ agent: AGENT }, OWNER);
  });

  it('a reload that takes the tool away ends the grant', async () => {
    await grantFor30m();
    const narrowed = parsePolicy(POLICY.replace('{ crm: [read, write] }', '{ crm: [read] }'), 'narrowed.yml', {});
    const ended = await h.approvals.grants.policyChanged(narrowed);
    expect(ended).toHaveLength(1);
    await h.flush();
    expect(JSON.parse(h.rows({ event: 'grant.ended', agent: AGENT }).at(-1)!.detail!)).toMatchObject({
      endReason: 'policy_changed',
    });
  });
});
