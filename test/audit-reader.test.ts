import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApprovalStore } from '../src/approvals/store.ts';
import { AuditLog } from '../src/audit/log.ts';
import { parseQuery } from '../src/audit/query.ts';
import { AuditReader } from '../src/audit/reader.ts';
import type { AuditEntry } from '../src/audit/types.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';

const T0 = Date.parse('2026-03-02T10:00:00Z');
const MIN = 60_000;

let dir: string;
let db: Db;
let audit: AuditLog;
let reader: AuditReader;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-reader-'));
  db = openDb(await storeLocation(dir));
  audit = new AuditLog(db);
  reader = new AuditReader(db);
});
afterEach(async () => {
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const decided = (callId: string, agent: string, decision: AuditEntry['decision'], ts: number, tool = 'crm__lookup') =>
  audit.append({ event: 'call.decided', callId, agent, server: 'crm', tool, decision, ts });
const completed = (callId: string, agent: string, ts: number) =>
  audit.append({ event: 'call.completed', callId, agent, decision: 'ok', durationMs: 5, ts });

describe('AuditReader on a real SQLite file', () => {
  it('head and tail: 0 on an empty trail, then rows after a seq, oldest first, bounded', async () => {
    expect(reader.headSeq()).toBe(0);
    expect(reader.tail(0)).toEqual([]);
    await decided('c1', 'alpha', 'allow', T0);
    await completed('c1', 'alpha', T0 + 5);
    await decided('c2', 'beta', 'deny', T0 + 10);
    expect(reader.headSeq()).toBe(3);
    expect(reader.tail(1).map((r) => [r.seq, r.event, r.call_id, r.agent, r.decision, r.duration_ms])).toEqual([
      [2, 'call.completed', 'c1', 'alpha', 'ok', 5],
      [3, 'call.decided', 'c2', 'beta', 'deny', null],
    ]);
    expect(reader.tail(0, 1).map((r) => r.seq)).toEqual([1]);
  });

  it('firstDecidedAfter matches agent, decision and either spelling of the tool, after the cursor only', async () => {
    await decided('c1', 'canary', 'allow', T0, 'slow__sleep');
    await decided('c2', 'canary', 'halted', T0 + 1, 'sleep');
    await decided('c3', 'other', 'halted', T0 + 2, 'slow__sleep');
    await decided('c4', 'canary', 'halted', T0 + 3, 'slow__sleep');
    const halted = { agent: 'canary', tools: ['slow__sleep', 'sleep'] as const, decision: 'halted' };
    expect(reader.firstDecidedAfter(0, halted)).toBe(2);
    expect(reader.firstDecidedAfter(2, halted)).toBe(4);
    expect(reader.firstDecidedAfter(4, halted)).toBeUndefined();
    expect(reader.firstDecidedAfter(0, { ...halted, decision: 'allow' })).toBe(1);
    expect(reader.firstDecidedAfter(0, { ...halted, agent: 'nobody' })).toBeUndefined();
  });

  it('activitySince counts decided calls and refusals per agent in the window, or for one agent', async () => {
    await decided('old', 'alpha', 'allow', T0 - 90 * MIN);
    await decided('a1', 'alpha', 'allow', T0);
    await decided('a2', 'alpha', 'deny', T0 + 1);
    await decided('a3', 'alpha', 'halted', T0 + 2);
    await completed('a1', 'alpha', T0 + 3);
    await decided('b1', 'beta', 'approve', T0 + 4);
    const since = T0 - 60 * MIN;
    expect(reader.activitySince(since).sort((x, y) => x.agent.localeCompare(y.agent))).toEqual([
      { agent: 'alpha', calls: 3, denials: 2 },
      { agent: 'beta', calls: 1, denials: 0 },
    ]);
    expect(reader.activitySince(since, 'beta')).toEqual([{ agent: 'beta', calls: 1, denials: 0 }]);
    expect(reader.activitySince(since, 'gamma')).toEqual([]);
  });

  it('openCalls: released in the window with no completion; hasCompletion says which have one', async () => {
    await decided('done', 'alpha', 'allow', T0);
    await completed('done', 'alpha', T0 + 1);
    await decided('open', 'alpha', 'allow', T0 + 2);
    await decided('held', 'alpha', 'approve', T0 + 3);
    await decided('refused', 'alpha', 'deny', T0 + 4);
    await decided('later', 'alpha', 'allow', T0 + 10 * MIN);
    expect(reader.openCalls(T0, T0 + MIN).map((c) => [c.call_id, c.decision, c.server])).toEqual([
      ['open', 'allow', 'crm'],
      ['held', 'approve', 'crm'],
    ]);
    expect(reader.hasCompletion('done')).toBe(true);
    expect(reader.hasCompletion('open')).toBe(false);
  });

  it("haltedSince: an org-wide halt or one of this agent at or after the time, not another agent's or an earlier one", async () => {
    expect(reader.haltedSince('alpha', T0)).toBe(false);
    await audit.append({ event: 'control.halt', agent: 'beta', ts: T0 + 5 });
    await audit.append({ event: 'control.halt', ts: T0 - 1 });
    expect(reader.haltedSince('alpha', T0)).toBe(false);
    expect(reader.haltedSince('beta', T0)).toBe(true);
    expect(reader.haltedSince('beta', T0 + 5)).toBe(true);
    expect(reader.haltedSince('beta', T0 + 6)).toBe(false);
    // The org-wide halt (no agent) counts for every agent.
    expect(reader.haltedSince('alpha', T0 - 1)).toBe(true);
    await audit.append({ event: 'control.halt', agent: 'alpha', ts: T0 + 7 });
    expect(reader.haltedSince('alpha', T0 + 7)).toBe(true);
  });

  it('tail returns at most 5000 rows unless told otherwise', async () => {
    await Promise.all(
      Array.from({ length: 5001 }, (_, i) => audit.append({ event: 'call.decided', callId: `c${i}`, ts: T0 })),
    );
    const rows = reader.tail(0);
    expect(rows).toHaveLength(5000);
    expect(rows.at(-1)!.seq).toBe(5000);
    expect(reader.tail(0, 6000)).toHaveLength(5001);
  });

  it('query runs an /audit query, newest first', async () => {
    await decided('a1', 'alpha', 'allow', T0);
    await decided('b1', 'beta', 'deny', T0 + 1);
    expect(reader.query(parseQuery('agent:beta', T0 + MIN)).rows.map((r) => r.call_id)).toEqual(['b1']);
  });
});

describe('ApprovalStore counts', () => {
  const held = (id: string, callId: string, agent: string, requestedAt: number) => ({
    id,
    callId,
    agent,
    server: 'crm',
    tool: 'refund_request',
    argsHash: 'h',
    rule: 'approval_required' as const,
    consequence: 'irreversible' as const,
    approvers: ['U0OWNER'],
    requestedAt,
    expiresAt: requestedAt + 60 * MIN,
    displayArgs: {},
    requestReason: 'refunds need a human',
    processId: 'host:1:abcd',
  });

  it('pendingCountsByAgent and latestForCall read what the store holds', () => {
    const store = new ApprovalStore(db);
    store.insert(held('apr_1', 'c1', 'alpha', T0));
    store.insert(held('apr_2', 'c2', 'alpha', T0 + 1));
    store.insert(held('apr_3', 'c3', 'beta', T0 + 2));
    store.insert(held('apr_4', 'c3', 'beta', T0 + 3));
    expect(store.transition('apr_4', { status: 'approved', at: T0 + 5, by: 'U0OWNER' })).toBe(true);
    expect([...store.pendingCountsByAgent()].sort()).toEqual([
      ['alpha', 2],
      ['beta', 1],
    ]);
    expect([...store.pendingCountsByAgent('beta')]).toEqual([['beta', 1]]);
    // The newest request for the call wins.
    expect(store.latestForCall('c3')).toEqual({ status: 'approved', decidedAt: T0 + 5 });
    expect(store.latestForCall('c1')).toEqual({ status: 'pending', decidedAt: undefined });
    expect(store.latestForCall('never-held')).toBeUndefined();
  });
});
