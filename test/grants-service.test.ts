import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrantService, type Grant } from '../src/approvals/grants.ts';
import { AuditLog } from '../src/audit/index.ts';
import type { AuditSink } from '../src/audit/types.ts';
import { isWardenError } from '../src/errors.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';

/*
 * GrantService on its own: a real SQLite file and audit log, a manual clock.
 * What each start and end stores and audits, which grant covers a call, and
 * each way a grant ends (expiry, revocation, a halt, a reload). The end-to-end
 * path through the gateway is grants.test.ts. Found by mutation testing
 * (README, "Mutation testing").
 */

const START = Date.parse('2026-03-02T09:00:00Z');
const MIN = 60_000;
const AGENT = 'billing-bot';
const OWNER = 'U0OWNER';

const POLICY = `
servers:
  crm:
    command: node
    args: [x.js]
    tools:
      lookup_customer: { scope: read }
      refund_request: { scope: write, consequence: irreversible }
agents:
  - agent: ${AGENT}
    owner: ${OWNER}
    channel: C0BILLING
    mcp_scopes: { crm: [read, write] }
    grants: { max: 1h }
  - agent: other-bot
    owner: ${OWNER}
    channel: C0OTHER
    mcp_scopes: { crm: [read, write] }
    grants: { max: 2h }
  - agent: no-grants
    owner: ${OWNER}
    channel: C0NONE
    mcp_scopes: { crm: [read, write] }
`;

let dir: string;
let db: Db;
let audit: AuditLog;
let clock: ManualClock;
let grants: GrantService;
const policy = parsePolicy(POLICY, 'policy.yml');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-grants-'));
  db = openDb(join(dir, 'warden.db'));
  clock = new ManualClock(START);
  audit = new AuditLog(db, { clock });
  grants = new GrantService(db, { audit, clock, logger: silentLogger() });
});
afterEach(async () => {
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const refund = { agent: AGENT, server: 'crm', tool: 'refund_request', by: OWNER };

interface TrailRow {
  ts: number;
  call_id: string | null;
  agent: string | null;
  server: string | null;
  tool: string | null;
  approver: string | null;
  decision: string;
  reason: string | null;
  detail: Record<string, unknown>;
}

function rows(event: string): TrailRow[] {
  return (
    db
      .prepare(
        'SELECT ts, call_id, agent, server, tool, approver, decision, reason, detail FROM audit WHERE event = ? ORDER BY seq',
      )
      .all(event) as Array<Omit<TrailRow, 'detail'> & { detail: string }>
  ).map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
}

function grantRow(id: string): Record<string, unknown> {
  return db.prepare('SELECT * FROM grants WHERE id = ?').get(id) as Record<string, unknown>;
}

async function refused(promise: Promise<unknown>): Promise<string> {
  const err = await promise.catch((e: unknown) => e);
  expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
  expect((err as { details?: unknown }).details).toEqual({ field: 'for' });
  return (err as Error).message;
}

describe('GrantService.create', () => {
  it('starts a grant: stored, audited as grant.created, returned with its times', async () => {
    const grant = await grants.create(policy, { ...refund, forMs: 30 * MIN, approvalId: 'apr_1' });
    expect(grant).toEqual({
      id: expect.stringMatching(/^grt_[0-9a-f-]{36}$/),
      agent: AGENT,
      server: 'crm',
      tool: 'refund_request',
      approvalId: 'apr_1',
      grantedBy: OWNER,
      createdAt: START,
      expiresAt: START + 30 * MIN,
    });
    expect(grantRow(grant.id)).toEqual({
      id: grant.id,
      agent: AGENT,
      server: 'crm',
      tool: 'refund_request',
      approval_id: 'apr_1',
      granted_by: OWNER,
      created_at: START,
      expires_at: START + 30 * MIN,
      ended_at: null,
      ended_by: null,
      end_reason: null,
    });
    expect(rows('grant.created')).toEqual([
      {
        ts: START,
        call_id: null,
        agent: AGENT,
        server: 'crm',
        tool: 'refund_request',
        approver: OWNER,
        decision: 'created',
        reason: `${OWNER} granted crm__refund_request to ${AGENT} for 30m`,
        detail: { grantId: grant.id, approvalId: 'apr_1', expiresAt: START + 30 * MIN },
      },
    ]);
    // Without an approval (the CLI): stored as NULL.
    const bare = await grants.create(policy, { ...refund, forMs: MIN });
    expect(grantRow(bare.id).approval_id).toBeNull();
    expect(bare.approvalId).toBeUndefined();
  });

  it('refuses an agent without grants:, and a duration that is not positive or beyond grants.max, naming the field', async () => {
    expect(await refused(grants.create(policy, { ...refund, agent: 'no-grants', forMs: MIN }))).toBe(
      'for: agent no-grants has no grants in the policy; approve once',
    );
    expect(await refused(grants.create(policy, { ...refund, agent: 'not-in-policy', forMs: MIN }))).toBe(
      'for: agent not-in-policy has no grants in the policy; approve once',
    );
    expect(await refused(grants.create(policy, { ...refund, forMs: 60 * MIN + 1 }))).toBe(
      `for: a grant for ${AGENT} lasts at most 1h (grants.max), got 3600001ms`,
    );
    expect(await refused(grants.create(policy, { ...refund, forMs: 0 }))).toBe(
      `for: a grant for ${AGENT} lasts at most 1h (grants.max), got 0ms`,
    );
    expect(await refused(grants.create(policy, { ...refund, forMs: -MIN }))).toMatch(/lasts at most 1h/);
    expect(await refused(grants.create(policy, { ...refund, forMs: Number.NaN }))).toMatch(/lasts at most 1h/);
    expect(db.prepare('SELECT count(*) FROM grants').pluck().get()).toBe(0);
    expect(rows('grant.created')).toEqual([]);
    // Exactly the maximum is allowed.
    expect((await grants.create(policy, { ...refund, forMs: 60 * MIN })).expiresAt).toBe(START + 60 * MIN);
  });

  it('a grant whose grant.created row cannot be written is ended at once and covers nothing', async () => {
    const failing: AuditSink = {
      append: (entry) =>
        entry.event === 'grant.created' ? Promise.reject(new Error('disk full')) : audit.append(entry),
    };
    const service = new GrantService(db, { audit: failing, clock, logger: silentLogger() });
    await expect(service.create(policy, { ...refund, forMs: 30 * MIN })).rejects.toThrow('disk full');
    const [row] = db.prepare('SELECT * FROM grants').all() as Record<string, unknown>[];
    expect(row).toMatchObject({ ended_at: START, ended_by: 'warden', end_reason: 'revoked' });
    expect(await service.covering(AGENT, 'crm', 'refund_request')).toBeUndefined();
    expect(await service.list()).toEqual([]);
  });
});

describe('GrantService.covering and list', () => {
  it('covers only its own agent, server and tool, until its expiry', async () => {
    const grant = await grants.create(policy, { ...refund, forMs: 30 * MIN });
    expect(await grants.covering(AGENT, 'crm', 'refund_request')).toEqual(grant);
    expect(await grants.covering('other-bot', 'crm', 'refund_request')).toBeUndefined();
    expect(await grants.covering(AGENT, 'crm', 'lookup_customer')).toBeUndefined();
    expect(await grants.covering(AGENT, 'tickets', 'refund_request')).toBeUndefined();
    await clock.tick(30 * MIN - 1);
    expect((await grants.covering(AGENT, 'crm', 'refund_request'))?.id).toBe(grant.id);
    await clock.tick(1);
    // At its expiry it covers nothing, and is ended (at its expiry) and audited.
    expect(await grants.covering(AGENT, 'crm', 'refund_request')).toBeUndefined();
    expect(grantRow(grant.id)).toMatchObject({ ended_at: START + 30 * MIN, ended_by: 'warden', end_reason: 'expired' });
    expect(rows('grant.ended')).toEqual([
      {
        ts: START + 30 * MIN,
        call_id: null,
        agent: AGENT,
        server: 'crm',
        tool: 'refund_request',
        approver: 'warden',
        decision: 'expired',
        reason: `grant of crm__refund_request to ${AGENT} ended: expired`,
        detail: { grantId: grant.id, approvalId: null, endReason: 'expired', expiresAt: START + 30 * MIN },
      },
    ]);
  });

  it('of two grants for one tool, the one lasting longest covers', async () => {
    const long = await grants.create(policy, { ...refund, forMs: 60 * MIN });
    await clock.tick(MIN);
    await grants.create(policy, { ...refund, forMs: 15 * MIN });
    expect((await grants.covering(AGENT, 'crm', 'refund_request'))?.id).toBe(long.id);
  });

  it('a halt of the agent or the org since the grant was made ends it; one before it does not', async () => {
    await audit.append({ event: 'control.halt', agent: AGENT, decision: 'halted', reason: 'old incident' });
    await clock.tick(1000);
    const grant = await grants.create(policy, { ...refund, forMs: 30 * MIN });
    const other = await grants.create(policy, { ...refund, agent: 'other-bot', forMs: 30 * MIN });
    expect((await grants.covering(AGENT, 'crm', 'refund_request'))?.id).toBe(grant.id);
    // Another agent's halt is not this one's.
    await audit.append({ event: 'control.halt', agent: 'other-bot', decision: 'halted', reason: 'r' });
    expect((await grants.covering(AGENT, 'crm', 'refund_request'))?.id).toBe(grant.id);
    expect(await grants.covering('other-bot', 'crm', 'refund_request')).toBeUndefined();
    expect(grantRow(other.id)).toMatchObject({ ended_by: 'warden', end_reason: 'halted', ended_at: START + 1000 });
    // At the very millisecond it was made: a halt then counts.
    await audit.append({ event: 'control.halt', decision: 'halted', reason: 'everyone', ts: START + 1000 });
    expect(await grants.covering(AGENT, 'crm', 'refund_request')).toBeUndefined();
    expect(grantRow(grant.id)).toMatchObject({ end_reason: 'halted' });
    expect(rows('grant.ended').map((r) => [r.agent, r.decision, r.reason])).toEqual([
      ['other-bot', 'halted', 'grant of crm__refund_request to other-bot ended: halted'],
      [AGENT, 'halted', `grant of crm__refund_request to ${AGENT} ended: halted`],
    ]);
  });

  it('list() gives the grants in force, oldest first, and ends those past their expiry at their expiry', async () => {
    const first = await grants.create(policy, { ...refund, forMs: 10 * MIN });
    await clock.tick(MIN);
    const second = await grants.create(policy, { ...refund, tool: 'lookup_customer', forMs: 60 * MIN });
    await clock.tick(MIN);
    const third = await grants.create(policy, { ...refund, agent: 'other-bot', forMs: 60 * MIN });
    expect((await grants.list()).map((g) => g.id)).toEqual([first.id, second.id, third.id]);
    // Noticed late, but ended at its expiry.
    await clock.tick(20 * MIN);
    expect((await grants.list()).map((g) => g.id)).toEqual([second.id, third.id]);
    expect(grantRow(first.id)).toMatchObject({ ended_at: START + 10 * MIN, end_reason: 'expired' });
    expect(rows('grant.ended')).toHaveLength(1);
    expect(rows('grant.ended')[0]!.ts).toBe(START + 22 * MIN);
  });
});

describe('GrantService.used', () => {
  it('names the grant and its approver on the call it covered', async () => {
    const grant = await grants.create(policy, { ...refund, forMs: 30 * MIN, approvalId: 'apr_9' });
    await grants.used(grant, 'call-42');
    expect(rows('grant.used')).toEqual([
      {
        ts: START,
        call_id: 'call-42',
        agent: AGENT,
        server: 'crm',
        tool: 'refund_request',
        approver: OWNER,
        decision: 'approved',
        reason: `covered by ${OWNER}'s grant until 2026-03-02T09:30:00.000Z`,
        detail: { grantId: grant.id, approvalId: 'apr_9', expiresAt: START + 30 * MIN },
      },
    ]);
  });
});

describe('ending grants', () => {
  async function three(): Promise<{ refundGrant: Grant; lookupGrant: Grant; otherGrant: Grant }> {
    const refundGrant = await grants.create(policy, { ...refund, forMs: 30 * MIN });
    await clock.tick(1000);
    const lookupGrant = await grants.create(policy, { ...refund, tool: 'lookup_customer', forMs: 30 * MIN });
    await clock.tick(1000);
    const otherGrant = await grants.create(policy, { ...refund, agent: 'other-bot', forMs: 30 * MIN });
    await clock.tick(5 * MIN - 2000);
    return { refundGrant, lookupGrant, otherGrant };
  }

  it('revoke ends one tool’s grant (bare or qualified name), or all of an agent’s, once, audited with who', async () => {
    const { refundGrant, lookupGrant, otherGrant } = await three();
    expect((await grants.revoke({ agent: AGENT, tool: 'crm__refund_request' }, 'U0LEAD')).map((g) => g.id)).toEqual([
      refundGrant.id,
    ]);
    expect(grantRow(refundGrant.id)).toMatchObject({
      ended_at: START + 5 * MIN,
      ended_by: 'U0LEAD',
      end_reason: 'revoked',
    });
    expect(rows('grant.ended')).toEqual([
      {
        ts: START + 5 * MIN,
        call_id: null,
        agent: AGENT,
        server: 'crm',
        tool: 'refund_request',
        approver: 'U0LEAD',
        decision: 'revoked',
        reason: `grant of crm__refund_request to ${AGENT} ended: revoked`,
        detail: { grantId: refundGrant.id, approvalId: null, endReason: 'revoked', expiresAt: START + 30 * MIN },
      },
    ]);
    // Ended already: a second revoke ends (and audits) nothing.
    expect(await grants.revoke({ agent: AGENT, tool: 'refund_request' }, 'U0LEAD')).toEqual([]);
    expect(rows('grant.ended')).toHaveLength(1);
    expect(await grants.revoke({ agent: AGENT, tool: 'crm__nothing' }, 'U0LEAD')).toEqual([]);
    expect((await grants.revoke({ tool: 'lookup_customer' }, 'U0LEAD')).map((g) => g.id)).toEqual([lookupGrant.id]);
    expect((await grants.list()).map((g) => g.id)).toEqual([otherGrant.id]);
  });

  it('revoke without a tool ends every grant of the agent; without an agent, everyone’s', async () => {
    const { refundGrant, lookupGrant, otherGrant } = await three();
    expect((await grants.revoke({ agent: AGENT }, OWNER)).map((g) => g.id)).toEqual([refundGrant.id, lookupGrant.id]);
    expect((await grants.list()).map((g) => g.id)).toEqual([otherGrant.id]);
    expect((await grants.revoke({}, OWNER)).map((g) => g.id)).toEqual([otherGrant.id]);
    expect(await grants.list()).toEqual([]);
  });

  it('a halt ends the halted agent’s grants, or everyone’s', async () => {
    const { refundGrant, lookupGrant, otherGrant } = await three();
    expect((await grants.halted('other-bot', 'slack:U0HALT')).map((g) => g.id)).toEqual([otherGrant.id]);
    expect(grantRow(otherGrant.id)).toMatchObject({ ended_by: 'slack:U0HALT', end_reason: 'halted' });
    expect(rows('grant.ended')[0]).toMatchObject({ decision: 'halted', approver: 'slack:U0HALT' });
    expect((await grants.halted(undefined, 'cli:ops')).map((g) => g.id)).toEqual([refundGrant.id, lookupGrant.id]);
    expect(await grants.list()).toEqual([]);
  });

  it('a reload ends grants whose agent lost grants: or whose tool it may no longer call; others stay', async () => {
    const { refundGrant, lookupGrant, otherGrant } = await three();
    const narrowed = parsePolicy(
      POLICY.replace(
        'mcp_scopes: { crm: [read, write] }\n    grants: { max: 1h }',
        'mcp_scopes: { crm: [read] }\n    grants: { max: 1h }',
      ).replace('grants: { max: 2h }', ''),
      'narrowed.yml',
    );
    expect(narrowed.agents[AGENT]!.grantMaxMs).toBe(60 * MIN);
    expect(narrowed.agents['other-bot']!.grantMaxMs).toBeUndefined();
    const ended = await grants.policyChanged(narrowed);
    expect(ended.map((g) => g.id).sort()).toEqual([refundGrant.id, otherGrant.id].sort());
    expect((await grants.list()).map((g) => g.id)).toEqual([lookupGrant.id]);
    expect(grantRow(refundGrant.id)).toMatchObject({ ended_by: 'warden', end_reason: 'policy_changed' });
    expect(rows('grant.ended').map((r) => [r.decision, r.reason, r.detail.endReason])).toEqual([
      ['revoked', `grant of crm__refund_request to ${AGENT} ended: policy changed`, 'policy_changed'],
      ['revoked', 'grant of crm__refund_request to other-bot ended: policy changed', 'policy_changed'],
    ]);
    // The same policy again: nothing more ends.
    expect(await grants.policyChanged(narrowed)).toEqual([]);
    // An agent removed from the policy altogether.
    const without = parsePolicy(POLICY.replace(/ {2}- agent: billing-bot[\s\S]*?grants: \{ max: 1h \}\n/, ''), 'p.yml');
    expect(without.agents[AGENT]).toBeUndefined();
    expect((await grants.policyChanged(without)).map((g) => g.id)).toEqual([lookupGrant.id]);
  });

  it('an end whose grant.ended row cannot be written still ends the grant, and says so in the log', async () => {
    const lines: string[] = [];
    const failing: AuditSink = {
      append: (entry) => (entry.event === 'grant.ended' ? Promise.reject(new Error('disk full')) : audit.append(entry)),
    };
    const service = new GrantService(db, {
      audit: failing,
      clock,
      logger: pino({ level: 'info' }, { write: (line: string) => lines.push(line) }),
    });
    const grant = await service.create(policy, { ...refund, forMs: 30 * MIN });
    expect((await service.revoke({ agent: AGENT }, OWNER)).map((g) => g.id)).toEqual([grant.id]);
    expect(grantRow(grant.id)).toMatchObject({ end_reason: 'revoked', ended_by: OWNER });
    expect(await service.covering(AGENT, 'crm', 'refund_request')).toBeUndefined();
    expect(lines.map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      expect.objectContaining({
        level: 50,
        msg: 'grant.ended could not be audited',
        err: 'disk full',
        grantId: grant.id,
      }),
    ]);
  });
});
