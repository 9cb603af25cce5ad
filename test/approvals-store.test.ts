import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ApprovalStore, HeldCallStore, type NewApproval } from '../src/approvals/store.ts';
import type { HeldCallEnding, NewHeldCall } from '../src/approvals/types.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';

/*
 * The two stores on their own, on a real SQLite file: every decision out of
 * 'pending' is one compare-and-set here, so each condition of those
 * statements is held to account (found by mutation testing, README
 * "Mutation testing"). The service's behaviour on top is in
 * approvals-service.test.ts and approvals-held-calls.test.ts.
 */

const START = Date.parse('2026-03-02T09:00:00Z');
const MIN = 60_000;

let dir: string;
let db: Db;
let store: ApprovalStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-approval-store-'));
  db = openDb(join(dir, 'warden.db'));
  store = new ApprovalStore(db);
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function approval(over: Partial<NewApproval> = {}): NewApproval {
  return {
    id: 'apr_1',
    callId: 'call-1',
    agent: 'support-triage',
    owner: 'U0OWNER',
    server: 'tickets',
    tool: 'send_customer_email',
    displayArgs: { to: 'ada@example.com', api_key: '[redacted]' },
    argsHash: 'hash-1',
    rule: 'approval_required',
    consequence: 'customer-facing',
    requestReason: 'needs a human',
    approvers: ['U0OWNER', 'U0APPROVER'],
    requestedAt: START,
    expiresAt: START + 15 * MIN,
    channel: 'C0APPROVALS',
    processId: 'host:1:abcd',
    grantable: true,
    grantMaxMs: 60 * MIN,
    ...over,
  };
}

function raw(id: string): Record<string, unknown> {
  return db.prepare('SELECT * FROM approvals WHERE id = ?').get(id) as Record<string, unknown>;
}

describe('ApprovalStore', () => {
  it('stores a request as pending and reads every field back', () => {
    store.insert(approval());
    expect(store.get('apr_1')).toEqual({
      id: 'apr_1',
      callId: 'call-1',
      agent: 'support-triage',
      owner: 'U0OWNER',
      server: 'tickets',
      tool: 'send_customer_email',
      args: { to: 'ada@example.com', api_key: '[redacted]' },
      argsHash: 'hash-1',
      rule: 'approval_required',
      consequence: 'customer-facing',
      requestReason: 'needs a human',
      approvers: ['U0OWNER', 'U0APPROVER'],
      status: 'pending',
      requestedAt: START,
      expiresAt: START + 15 * MIN,
      decidedAt: undefined,
      decidedBy: undefined,
      decisionReason: undefined,
      decisionSeq: undefined,
      channel: 'C0APPROVALS',
      messageTs: undefined,
      processId: 'host:1:abcd',
      outcome: undefined,
      grantable: true,
      grantMaxMs: 60 * MIN,
    });
    expect(store.status('apr_1')).toBe('pending');
    expect(store.get('apr_missing')).toBeUndefined();
    expect(store.status('apr_missing')).toBeUndefined();
  });

  it('stores absent optional fields as NULL, a grant: never request without its grant limit, and reads them back as absent', () => {
    store.insert(
      approval({
        id: 'apr_bare',
        owner: undefined,
        channel: undefined,
        displayArgs: undefined,
        rule: 'consequential',
        grantable: false,
        grantMaxMs: 60 * MIN,
      }),
    );
    expect(raw('apr_bare')).toMatchObject({
      owner: null,
      channel: null,
      args: 'null',
      rule: 'consequential',
      grantable: 0,
      grant_max_ms: null,
    });
    expect(store.get('apr_bare')).toMatchObject({
      owner: undefined,
      channel: undefined,
      args: null,
      rule: 'consequential',
      grantable: false,
      grantMaxMs: undefined,
    });
    // grantable left out means grantable; no grants in the policy means no limit.
    store.insert(approval({ id: 'apr_default', grantable: undefined, grantMaxMs: undefined }));
    expect(raw('apr_default')).toMatchObject({ grantable: 1, grant_max_ms: null });
    expect(store.get('apr_default')).toMatchObject({ grantable: true, grantMaxMs: undefined });
  });

  it('reads a row it did not write defensively: an unknown rule, unreadable JSON and NULLs', () => {
    db.prepare(
      `INSERT INTO approvals (id, call_id, agent, server, tool, args, args_hash, rule, consequence, approvers, status,
         requested_at, expires_at, outcome)
       VALUES ('apr_odd', 'c', 'a', 's', 't', '{not json', 'h', 'something-else', 'read', 'also not json', 'pending', 1, 2, '{')`,
    ).run();
    expect(store.get('apr_odd')).toMatchObject({
      rule: 'approval_required',
      args: null,
      approvers: [],
      outcome: undefined,
      requestReason: undefined,
      processId: undefined,
      grantable: true,
    });
  });

  it('a person’s approve or reject moves a pending row once, and only before its deadline', () => {
    const deadline = START + 15 * MIN;
    store.insert(approval({ id: 'apr_a' }));
    store.insert(approval({ id: 'apr_r' }));
    // At the deadline itself it is too late.
    expect(store.transition('apr_a', { status: 'approved', at: deadline, by: 'U0OWNER' })).toBe(false);
    expect(store.transition('apr_r', { status: 'rejected', at: deadline, by: 'U0OWNER' })).toBe(false);
    expect(store.status('apr_a')).toBe('pending');
    // A millisecond before, in time.
    expect(store.transition('apr_a', { status: 'approved', at: deadline - 1, by: 'U0OWNER' })).toBe(true);
    expect(store.transition('apr_r', { status: 'rejected', at: deadline - 1, by: 'U0APPROVER', reason: 'no' })).toBe(
      true,
    );
    expect(raw('apr_a')).toMatchObject({
      status: 'approved',
      decided_at: deadline - 1,
      decided_by: 'U0OWNER',
      decision_reason: null,
    });
    expect(raw('apr_r')).toMatchObject({
      status: 'rejected',
      decided_at: deadline - 1,
      decided_by: 'U0APPROVER',
      decision_reason: 'no',
    });
    // Decided: nothing moves it again, not even the expiry.
    expect(store.transition('apr_a', { status: 'rejected', at: START, by: 'U0OWNER' })).toBe(false);
    expect(store.transition('apr_a', { status: 'expired', at: deadline })).toBe(false);
    expect(store.transition('apr_r', { status: 'cancelled', at: deadline })).toBe(false);
    expect(store.status('apr_a')).toBe('approved');
  });

  it('expiry, halts, restarts and failures move a pending row whatever the time, once', () => {
    const late = START + 60 * MIN;
    const ends = ['expired', 'cancelled', 'abandoned', 'failed'] as const;
    for (const status of ends) store.insert(approval({ id: `apr_${status}` }));
    for (const status of ends) {
      expect(store.transition(`apr_${status}`, { status, at: late, reason: `why ${status}` })).toBe(true);
      expect(raw(`apr_${status}`)).toMatchObject({
        status,
        decided_at: late,
        decided_by: null,
        decision_reason: `why ${status}`,
      });
      expect(store.transition(`apr_${status}`, { status: 'failed', at: late })).toBe(false);
    }
    expect(store.transition('apr_missing', { status: 'expired', at: late })).toBe(false);
  });

  it('records the decision’s audit seq once, only for the status it was audited as', () => {
    store.insert(approval());
    store.transition('apr_1', { status: 'approved', at: START, by: 'U0OWNER' });
    expect(store.setDecisionSeq('apr_1', 'rejected', 7)).toBe(false);
    expect(store.get('apr_1')?.decisionSeq).toBeUndefined();
    expect(store.setDecisionSeq('apr_1', 'approved', 7)).toBe(true);
    expect(store.get('apr_1')?.decisionSeq).toBe(7);
    expect(store.setDecisionSeq('apr_1', 'approved', 8)).toBe(false);
    expect(store.get('apr_1')?.decisionSeq).toBe(7);
  });

  it('fails an approval only while it is approved and unaudited', () => {
    store.insert(approval({ id: 'apr_unaudited' }));
    store.insert(approval({ id: 'apr_audited' }));
    store.insert(approval({ id: 'apr_rejected' }));
    store.insert(approval({ id: 'apr_pending' }));
    store.transition('apr_unaudited', { status: 'approved', at: START, by: 'U0OWNER' });
    store.transition('apr_audited', { status: 'approved', at: START, by: 'U0OWNER' });
    store.setDecisionSeq('apr_audited', 'approved', 3);
    store.transition('apr_rejected', { status: 'rejected', at: START, by: 'U0OWNER' });
    expect(store.failUnaudited('apr_audited', 'late')).toBe(false);
    expect(store.failUnaudited('apr_rejected', 'late')).toBe(false);
    expect(store.failUnaudited('apr_pending', 'late')).toBe(false);
    expect(store.failUnaudited('apr_unaudited', 'audit write failed')).toBe(true);
    expect(raw('apr_unaudited')).toMatchObject({
      status: 'failed',
      decision_reason: 'audit write failed',
      decided_by: 'U0OWNER',
    });
    expect(store.failUnaudited('apr_unaudited', 'again')).toBe(false);
    expect(store.status('apr_audited')).toBe('approved');
    expect(store.status('apr_rejected')).toBe('rejected');
    expect(store.status('apr_pending')).toBe('pending');
  });

  it('keeps the card’s message and the call’s outcome', () => {
    store.insert(approval({ channel: undefined }));
    store.insert(approval({ id: 'apr_other' }));
    store.setMessage('apr_1', 'C0ELSEWHERE', '1700000000.000100');
    store.setOutcome('apr_1', { ok: false, summary: 'upstream said no' });
    expect(store.get('apr_1')).toMatchObject({
      channel: 'C0ELSEWHERE',
      messageTs: '1700000000.000100',
      outcome: { ok: false, summary: 'upstream said no' },
    });
    expect(store.get('apr_other')).toMatchObject({ channel: 'C0APPROVALS', messageTs: undefined, outcome: undefined });
  });

  it('a claim takes a pending row from the process named, once', () => {
    store.insert(approval({ processId: 'host:1:old' }));
    store.insert(approval({ id: 'apr_done', processId: 'host:1:old' }));
    store.transition('apr_done', { status: 'expired', at: START });
    expect(store.claim('apr_1', 'host:2:someone-else', 'host:3:new')).toBe(false);
    expect(store.claim('apr_1', undefined, 'host:3:new')).toBe(false);
    expect(store.claim('apr_done', 'host:1:old', 'host:3:new')).toBe(false);
    expect(store.claim('apr_1', 'host:1:old', 'host:3:new')).toBe(true);
    expect(store.get('apr_1')?.processId).toBe('host:3:new');
    // The second starting process read the old owner too: too late.
    expect(store.claim('apr_1', 'host:1:old', 'host:4:other')).toBe(false);
    expect(store.get('apr_1')?.processId).toBe('host:3:new');
    expect(store.get('apr_done')?.processId).toBe('host:1:old');

    // A row naming no process is claimed from "none".
    db.prepare("UPDATE approvals SET process_id = NULL WHERE id = 'apr_1'").run();
    expect(store.claim('apr_1', 'host:3:new', 'host:5:x')).toBe(false);
    expect(store.claim('apr_1', undefined, 'host:5:x')).toBe(true);
    expect(store.get('apr_1')?.processId).toBe('host:5:x');
  });

  it('lists pending rows oldest first, for everyone or one agent, and counts them per agent', () => {
    store.insert(approval({ id: 'apr_late', requestedAt: START + 2000 }));
    store.insert(approval({ id: 'apr_early', requestedAt: START }));
    store.insert(approval({ id: 'apr_other', agent: 'billing-bot', requestedAt: START + 1000 }));
    store.insert(approval({ id: 'apr_decided', requestedAt: START + 500 }));
    store.transition('apr_decided', { status: 'cancelled', at: START });
    expect(store.pending().map((r) => r.id)).toEqual(['apr_early', 'apr_other', 'apr_late']);
    expect(store.pending({ agent: 'support-triage' }).map((r) => r.id)).toEqual(['apr_early', 'apr_late']);
    expect(store.pending({ agent: 'billing-bot' })[0]).toMatchObject({ id: 'apr_other', agent: 'billing-bot' });
    expect(store.pending({ agent: 'nobody' })).toEqual([]);
    expect(store.pendingCountsByAgent()).toEqual(
      new Map([
        ['billing-bot', 1],
        ['support-triage', 2],
      ]),
    );
    expect(store.pendingCountsByAgent('support-triage')).toEqual(new Map([['support-triage', 2]]));
    expect(store.pendingCountsByAgent('nobody')).toEqual(new Map());
  });

  it('gives the newest approval of a call, with when it was decided', () => {
    store.insert(approval({ id: 'apr_first', callId: 'call-x', requestedAt: START }));
    store.insert(approval({ id: 'apr_second', callId: 'call-x', requestedAt: START + 1000 }));
    store.insert(approval({ id: 'apr_unrelated', callId: 'call-y', requestedAt: START + 5000 }));
    store.transition('apr_first', { status: 'rejected', at: START + 10, by: 'U0OWNER' });
    expect(store.latestForCall('call-x')).toEqual({ status: 'pending', decidedAt: undefined });
    store.transition('apr_second', { status: 'approved', at: START + 2000, by: 'U0OWNER' });
    expect(store.latestForCall('call-x')).toEqual({ status: 'approved', decidedAt: START + 2000 });
    expect(store.latestForCall('call-z')).toBeUndefined();
  });
});

describe('HeldCallStore', () => {
  let clock: ManualClock;
  let book: HeldCallStore;
  const ran: HeldCallEnding = { kind: 'result', result: { content: [{ type: 'text', text: 'sent' }] } };
  const refused: HeldCallEnding = { kind: 'error', code: -32001, message: 'no', data: { why: 'x' } };

  beforeEach(() => {
    clock = new ManualClock(START);
    book = new HeldCallStore(db, clock, 'host:1:me');
  });

  function call(over: Partial<NewHeldCall> = {}): NewHeldCall {
    return {
      approvalId: 'apr_1',
      callId: 'call-1',
      agent: 'support-triage',
      name: 'tickets__send_customer_email',
      server: 'tickets',
      tool: 'send_customer_email',
      argsHash: 'hash-1',
      args: { to: 'ada@example.com', api_key: 'sk-live-secret' },
      tokenId: 'tok_1',
      channel: 'C0APPROVALS',
      answerWithinMs: 1000,
      expiresAt: START + 15 * MIN,
      ...over,
    };
  }

  function rawHeld(id: string): Record<string, unknown> | undefined {
    return db.prepare('SELECT * FROM held_calls WHERE approval_id = ?').get(id) as Record<string, unknown> | undefined;
  }

  it('keeps a call with its exact arguments and reads it back until its expiry', async () => {
    book.keep(call());
    expect(book.get('apr_1')).toEqual({
      approvalId: 'apr_1',
      callId: 'call-1',
      agent: 'support-triage',
      name: 'tickets__send_customer_email',
      server: 'tickets',
      tool: 'send_customer_email',
      argsHash: 'hash-1',
      args: { to: 'ada@example.com', api_key: 'sk-live-secret' },
      tokenId: 'tok_1',
      channel: 'C0APPROVALS',
      runner: undefined,
      answerWithinMs: 1000,
      expiresAt: START + 15 * MIN,
      endedAt: undefined,
      ending: undefined,
    });
    book.keep(call({ approvalId: 'apr_bare', tokenId: undefined, channel: undefined, args: undefined }));
    expect(rawHeld('apr_bare')).toMatchObject({ token_id: null, channel: null, args: 'null' });
    expect(book.get('apr_bare')).toMatchObject({ tokenId: undefined, channel: undefined, args: null });
    expect(book.get('apr_missing')).toBeUndefined();
    await clock.advanceTo(START + 15 * MIN - 1);
    expect(book.get('apr_1')).toBeDefined();
    await clock.tick(1);
    // At its expiry it is gone, deleted or not.
    expect(book.get('apr_1')).toBeUndefined();
    expect(rawHeld('apr_1')).toBeDefined();
  });

  it('finds a repeat of the same call (agent, name and arguments), the one expiring first', async () => {
    book.keep(call({ approvalId: 'apr_later', expiresAt: START + 20 * MIN }));
    book.keep(call({ approvalId: 'apr_sooner', expiresAt: START + 10 * MIN }));
    book.keep(call({ approvalId: 'apr_other_args', argsHash: 'hash-2' }));
    expect(book.findRepeat('support-triage', 'tickets__send_customer_email', 'hash-1')?.approvalId).toBe('apr_sooner');
    expect(book.findRepeat('billing-bot', 'tickets__send_customer_email', 'hash-1')).toBeUndefined();
    expect(book.findRepeat('support-triage', 'crm__refund_request', 'hash-1')).toBeUndefined();
    expect(book.findRepeat('support-triage', 'tickets__send_customer_email', 'hash-3')).toBeUndefined();
    await clock.advanceTo(START + 10 * MIN);
    expect(book.findRepeat('support-triage', 'tickets__send_customer_email', 'hash-1')?.approvalId).toBe('apr_later');
    await clock.advanceTo(START + 20 * MIN);
    expect(book.findRepeat('support-triage', 'tickets__send_customer_email', 'hash-1')).toBeUndefined();
  });

  it('knows whether an agent has any held call left', async () => {
    expect(book.hasAny('support-triage')).toBe(false);
    book.keep(call({ expiresAt: START + 1000 }));
    expect(book.hasAny('support-triage')).toBe(true);
    expect(book.hasAny('billing-bot')).toBe(false);
    await clock.tick(1000);
    expect(book.hasAny('support-triage')).toBe(false);
  });

  it('lets one process take a call to run, never one that ended', () => {
    book.keep(call());
    book.keep(call({ approvalId: 'apr_ended' }));
    book.end('apr_ended', ran);
    const other = new HeldCallStore(db, clock, 'host:2:other');
    expect(book.claimRun('apr_ended')).toBe(false);
    expect(book.claimRun('apr_1')).toBe(true);
    expect(book.get('apr_1')?.runner).toBe('host:1:me');
    expect(other.claimRun('apr_1')).toBe(false);
    expect(book.claimRun('apr_1')).toBe(false);
    expect(book.get('apr_1')?.runner).toBe('host:1:me');
    expect(book.claimRun('apr_missing')).toBe(false);
  });

  it('ends a call once, erasing its arguments, and hands the ending out once', async () => {
    book.keep(call());
    book.keep(call({ approvalId: 'apr_2', callId: 'call-2' }));
    await clock.tick(500);
    expect(book.take('apr_1')).toBeUndefined();
    expect(book.end('apr_1', refused)).toBe(true);
    expect(book.end('apr_1', ran)).toBe(false);
    expect(rawHeld('apr_1')).toMatchObject({ args: null, ended_at: START + 500 });
    expect(book.get('apr_1')).toMatchObject({ ending: refused, endedAt: START + 500 });
    expect(book.get('apr_1')).not.toHaveProperty('args');
    // The other call is untouched.
    expect(book.get('apr_2')).toMatchObject({ ending: undefined, args: { to: 'ada@example.com' } });

    const other = new HeldCallStore(db, clock, 'host:2:other');
    expect(book.take('apr_1')).toEqual(refused);
    expect(other.take('apr_1')).toBeUndefined();
    expect(rawHeld('apr_1')).toBeUndefined();
    expect(book.end('apr_missing', ran)).toBe(false);
  });

  it('does not hand out an ending past the call’s expiry', async () => {
    book.keep(call({ expiresAt: START + 1000 }));
    book.end('apr_1', ran);
    await clock.tick(1000);
    expect(book.take('apr_1')).toBeUndefined();
  });

  it('an ending that does not read back as one is handed out as an error, never as a result', () => {
    book.keep(call());
    book.keep(call({ approvalId: 'apr_garbled' }));
    db.prepare(
      `UPDATE held_calls SET ending = '{"kind":"result","result":"not an object"}' WHERE approval_id = 'apr_1'`,
    ).run();
    db.prepare(`UPDATE held_calls SET ending = '{garbled' WHERE approval_id = 'apr_garbled'`).run();
    const unreadable = {
      kind: 'error',
      code: -32603,
      message: 'the stored result of this held call could not be read',
    };
    expect(book.get('apr_1')?.ending).toEqual(unreadable);
    expect(book.get('apr_garbled')?.ending).toEqual(unreadable);
  });

  it('a halt replaces kept endings (of one agent, or everyone), not calls still waiting', () => {
    const halted: HeldCallEnding = { kind: 'result', result: { content: [{ type: 'text', text: 'halted' }] } };
    book.keep(call({ approvalId: 'apr_mine_ended' }));
    book.keep(call({ approvalId: 'apr_mine_waiting' }));
    book.keep(call({ approvalId: 'apr_theirs_ended', agent: 'billing-bot' }));
    book.end('apr_mine_ended', ran);
    book.end('apr_theirs_ended', ran);
    expect(book.discard({ agent: 'support-triage' }, halted)).toBe(1);
    expect(book.get('apr_mine_ended')?.ending).toEqual(halted);
    expect(book.get('apr_theirs_ended')?.ending).toEqual(ran);
    expect(book.get('apr_mine_waiting')?.ending).toBeUndefined();
    expect(book.get('apr_mine_waiting')?.args).toBeDefined();
    expect(book.discard({}, refused)).toBe(2);
    expect(book.get('apr_theirs_ended')?.ending).toEqual(refused);
    expect(book.get('apr_mine_waiting')?.ending).toBeUndefined();
  });

  it('forgets a call, sweeps those past expiry, and lists those still to run or waiting', async () => {
    book.keep(call({ approvalId: 'apr_soon', callId: 'call-soon', expiresAt: START + 1000 }));
    book.keep(call({ approvalId: 'apr_late', callId: 'call-late', expiresAt: START + 5000 }));
    book.keep(call({ approvalId: 'apr_mid', callId: 'call-mid', expiresAt: START + 3000 }));
    book.keep(call({ approvalId: 'apr_gone', callId: 'call-gone' }));
    book.forget('apr_gone');
    expect(rawHeld('apr_gone')).toBeUndefined();
    expect(book.waiting().map((c) => c.approvalId)).toEqual(['apr_soon', 'apr_mid', 'apr_late']);
    expect(book.stillToRun('call-mid')).toBe(true);
    book.claimRun('apr_mid');
    expect(book.stillToRun('call-mid')).toBe(false);
    expect(book.waiting().map((c) => c.approvalId)).toEqual(['apr_soon', 'apr_mid', 'apr_late']);
    book.end('apr_late', ran);
    expect(book.stillToRun('call-late')).toBe(false);
    expect(book.waiting().map((c) => c.approvalId)).toEqual(['apr_soon', 'apr_mid']);
    expect(book.stillToRun('call-soon')).toBe(true);
    expect(book.stillToRun('call-unknown')).toBe(false);

    await clock.tick(999);
    expect(book.sweep()).toBe(0);
    await clock.tick(1);
    expect(book.stillToRun('call-soon')).toBe(false);
    expect(book.waiting().map((c) => c.approvalId)).toEqual(['apr_mid']);
    expect(book.sweep()).toBe(1);
    expect(rawHeld('apr_soon')).toBeUndefined();
    expect(rawHeld('apr_mid')).toBeDefined();
  });
});
