import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ApprovalService,
  UNAUDITED_APPROVAL_GRACE_MS,
  argsHash,
  canonicalJson,
  haltAbortReason,
} from '../src/approvals/index.ts';
import { AuditLog } from '../src/audit/index.ts';
import type { AuditEntry, AuditSink } from '../src/audit/types.ts';
import { silentLogger } from '../src/logger.ts';
import { ApprovalStore } from '../src/approvals/store.ts';
import { openDb } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';
import {
  APPROVER,
  CHANNEL,
  OWNER,
  STRANGER,
  approvalIdOf,
  heldCall,
  startSlackHarness,
  type SlackHarness,
} from './support/slack-harness.ts';

const START = Date.parse('2026-03-02T09:00:00Z');

let h: SlackHarness | undefined;
let clock: ManualClock;

async function harness(start: number = START): Promise<SlackHarness> {
  clock = new ManualClock(start);
  h = await startSlackHarness({ clock, startApp: false, approvals: { pollMs: 500 } });
  return h;
}

afterEach(async () => {
  await h?.close();
  h = undefined;
});

function row(h: SlackHarness, id: string) {
  return h.db.prepare('SELECT * FROM approvals WHERE id = ?').get(id) as Record<string, unknown>;
}

function cardText(blocks: unknown): string {
  return JSON.stringify(blocks);
}

interface HeldAppend {
  entry: AuditEntry;
  /** Let the append through to the real audit log. */
  release(): void;
  /** Make it fail, as a full disk or a dead writer would. */
  fail(err: Error): void;
}

/** The real audit log, except that matching appends wait until the test releases or fails them. */
function holdingAudit(inner: AuditSink, hold: (e: AuditEntry) => boolean): { sink: AuditSink; held: HeldAppend[] } {
  const held: HeldAppend[] = [];
  const sink: AuditSink = {
    append(entry) {
      if (!hold(entry)) return inner.append(entry);
      return new Promise((resolve, reject) => {
        held.push({ entry, release: () => void inner.append(entry).then(resolve, reject), fail: (err) => reject(err) });
      });
    },
  };
  return { sink, held };
}

const approvedDecision = (e: AuditEntry) => e.event === 'approval.decided' && e.decision === 'approved';
const heldFor = (held: HeldAppend[], id: string) => held.find((x) => x.entry.detail?.approvalId === id)!;

/** The next Warden on the same database (its recover() is what a restart runs). */
function restartedService(h: Awaited<ReturnType<typeof harness>>): ApprovalService {
  return new ApprovalService({ db: h.db, audit: h.audit, notifier: h.notifier, clock, policy: () => h.policy });
}

describe('canonical args hash', () => {
  it('ignores key order and binds to exact values', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[1,{"x":1,"y":2}]},"b":1}',
    );
    expect(argsHash({ a: 1, b: 2 })).toBe(argsHash({ b: 2, a: 1 }));
    expect(argsHash({ a: 1, b: 2 })).not.toBe(argsHash({ a: 1, b: 3 }));
    expect(argsHash({ to: 'x' })).toBe(createHash('sha256').update('{"to":"x"}').digest('hex'));
  });
});

describe('ApprovalService', () => {
  it('stores a redacted pending request bound to the args hash, audits it, posts the card, and an owner approval resolves it', async () => {
    const h = await harness();
    const args = { ticket_id: 'T-9', to: 'ada@example.com', body: 'hi', api_key: 'sk-live-abcdefghijklmnopqrstuvwxyz' };
    const pending = h.approvals.request(heldCall(h, { args, callId: 'call-approve-1' }));
    const post = await h.slack.waitForCall('chat.postMessage');
    expect(post.args.channel).toBe(CHANNEL);
    expect(post.authorization).toBe('Bearer xoxb-warden-test');
    const id = approvalIdOf(post);

    await vi.waitFor(() => expect(row(h, id).message_ts).toBe(post.response!.ts));
    const stored = row(h, id);
    expect(stored.status).toBe('pending');
    expect(stored.args_hash).toBe(argsHash(args));
    expect(stored.args as string).not.toContain('sk-live');
    expect(JSON.parse(stored.args as string)).toMatchObject({ ticket_id: 'T-9', api_key: '[redacted]' });
    expect(stored.expires_at).toBe(START + 15 * 60_000);
    expect(stored.channel).toBe(CHANNEL);
    expect(stored.message_ts).toBe(post.response!.ts);
    expect(cardText(post.args.blocks)).not.toContain('sk-live');

    const requested = h.auditRows('approval.requested');
    expect(requested).toHaveLength(1);
    expect(requested[0]).toMatchObject({
      call_id: 'call-approve-1',
      agent: 'support-triage',
      tool: 'send_customer_email',
      decision: 'pending',
    });
    expect(JSON.parse(requested[0]!.detail!)).toMatchObject({ approvalId: id, argsHash: argsHash(args) });

    const result = await h.approvals.decide(id, OWNER, 'approve');
    expect(result.ok).toBe(true);
    const outcome = await pending;
    expect(outcome).toMatchObject({ approvalId: id, status: 'approved', approver: OWNER });

    const decided = h.auditRows('approval.decided');
    expect(decided).toHaveLength(1);
    expect(decided[0]).toMatchObject({ decision: 'approved', approver: OWNER, call_id: 'call-approve-1' });
    const update = await h.slack.waitForCall('chat.update');
    expect(update.args.ts).toBe(post.response!.ts);
    expect(cardText(update.args.blocks)).toContain(`*Approved* by <@${OWNER}>`);
    expect(cardText(update.args.blocks)).not.toContain('approval_approve');
  });

  it('max_pending: held calls beyond the limit are refused with a clear reason and audited; the others all get cards', async () => {
    const h = await harness();
    expect(h.policy.agents['support-triage']!.maxPending).toBe(20);
    const agent = { ...h.policy.agents['support-triage']!, maxPending: 3 };
    const outcomes = Array.from({ length: 5 }, (_, i) =>
      h.approvals.request(heldCall(h, { agent, callId: `call-storm-${i}` })),
    );
    const refused = await Promise.all(outcomes.slice(3));
    for (const o of refused) {
      expect(o.status).toBe('failed');
      expect(o.status !== 'approved' && o.reason).toContain(
        'already has 3 calls waiting for approval (max_pending: 3)',
      );
    }
    // Queued posts to one channel go out a second apart (on the fake clock).
    await clock.runUntil(
      vi.waitFor(() => expect(h.slack.calls.filter((c) => c.method === 'chat.postMessage')).toHaveLength(3)),
      { stepMs: 250 },
    );
    expect(h.approvals.pending({ agent: 'support-triage' })).toHaveLength(3);
    expect(
      h
        .auditRows('approval.decided')
        .map((r) => r.call_id)
        .sort(),
    ).toEqual(['call-storm-3', 'call-storm-4']);
  });

  it('on_redacted: refuse fails a held call whose card would hide a value, audited, with no card posted; hold_and_warn holds it', async () => {
    const h = await harness();
    const strict = { ...h.policy.agents['support-triage']!, onRedacted: 'refuse' as const };
    const args = { to: 'ada@example.com', body: 'log in at https://ops:hunter2pass@db.example.com' };
    const outcome = await h.approvals.request(heldCall(h, { agent: strict, args, callId: 'call-refuse-1' }));
    expect(outcome.status).toBe('failed');
    expect(outcome.status !== 'approved' && outcome.reason).toContain('1 value in the arguments would be hidden');
    expect(outcome.status !== 'approved' && outcome.reason).toContain('on_redacted: refuse');
    const decided = h.auditRows('approval.decided');
    expect(decided).toHaveLength(1);
    expect(decided[0]).toMatchObject({ decision: 'failed', call_id: 'call-refuse-1' });
    expect(String(decided[0]!.reason)).toContain('on_redacted: refuse');
    expect(h.slack.calls.filter((c) => c.method === 'chat.postMessage')).toHaveLength(0);

    // The default holds the same call and the card says what is hidden.
    expect(h.policy.agents['support-triage']!.onRedacted).toBe('hold_and_warn');
    void h.approvals.request(heldCall(h, { args, callId: 'call-warn-1' }));
    const post = await h.slack.waitForCall('chat.postMessage');
    expect(cardText(post.args.blocks)).toContain('*1 value is hidden from you*');
    expect(cardText(post.args.blocks)).not.toContain('hunter2pass');
  });

  it('refuses and audits a decision by someone who is not an approver, then takes a listed approver’s rejection with its reason', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));

    const refused = await h.approvals.decide(id, STRANGER, 'approve');
    expect(refused).toMatchObject({ ok: false, code: 'forbidden' });
    expect(row(h, id).status).toBe('pending');
    const refusals = h.auditRows('approval.refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ approver: STRANGER, decision: 'approve', agent: 'support-triage' });

    const rejected = await h.approvals.decide(id, APPROVER, 'reject', '  wrong customer  ');
    expect(rejected.ok).toBe(true);
    expect(await pending).toMatchObject({
      status: 'rejected',
      approver: APPROVER,
      reason: `rejected by ${APPROVER}: wrong customer`,
    });
    expect(row(h, id)).toMatchObject({
      status: 'rejected',
      decided_by: APPROVER,
      decision_reason: 'wrong customer',
      decided_at: START,
    });

    const again = await h.approvals.decide(id, OWNER, 'approve');
    expect(again).toMatchObject({ ok: false, code: 'not_pending' });
    expect(h.auditRows('approval.decided')).toHaveLength(1);
  });

  it('authorises against the live policy: an approver removed from the policy can no longer decide', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    h.policy.agents['support-triage']!.approvers = [];
    expect(await h.approvals.decide(id, APPROVER, 'approve')).toMatchObject({ ok: false, code: 'forbidden' });
    expect(await h.approvals.decide(id, OWNER, 'reject', 'no')).toMatchObject({ ok: true });
    await pending;
  });

  it('expires after the agent’s approval timeout on the injected clock and redraws the card', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const post = await h.slack.waitForCall('chat.postMessage');
    const id = approvalIdOf(post);
    let settled = false;
    void pending.then(() => (settled = true));

    await clock.tick(15 * 60_000 - 1);
    expect(settled).toBe(false);
    expect(row(h, id).status).toBe('pending');
    await clock.tick(1);
    const outcome = await pending;
    expect(outcome).toMatchObject({
      status: 'expired',
      reason: 'left without a decision for 15 min and expired; the call was not made',
    });
    expect(h.auditRows('approval.decided')[0]).toMatchObject({ decision: 'expired', approver: null });
    const update = await h.slack.waitForCall('chat.update');
    expect(cardText(update.args.blocks)).toContain('*Expired*');
  });

  it('calls onWaiting periodically while it waits', async () => {
    const h = await harness();
    const seen: number[] = [];
    const pending = h.approvals.request(heldCall(h, { onWaiting: (ms) => seen.push(ms) }));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    await clock.tick(12_000);
    expect(seen).toEqual([5000, 10_000]);
    await h.approvals.decide(id, OWNER, 'approve');
    await pending;
  });

  it('cancels on a halt abort and abandons when the agent goes away', async () => {
    const h = await harness();
    const halt = new AbortController();
    const halted = h.approvals.request(heldCall(h, { signal: halt.signal }));
    const haltedCard = await h.slack.waitForCall('chat.postMessage');
    const gone = new AbortController();
    const abandoned = h.approvals.request(heldCall(h, { signal: gone.signal }));
    const goneCard = await h.slack.waitForCall('chat.postMessage', (c) => c !== haltedCard);

    halt.abort(haltAbortReason());
    gone.abort();
    expect(await halted).toMatchObject({ status: 'cancelled', reason: 'cancelled: agents halted' });
    expect(await abandoned).toMatchObject({
      status: 'abandoned',
      reason: 'abandoned: the agent went away before a decision',
    });
    const haltedUpdate = await h.slack.waitForCall('chat.update', (c) => c.args.ts === haltedCard.response!.ts);
    expect(cardText(haltedUpdate.args.blocks)).toContain('*Cancelled*: agents halted');
    await h.slack.waitForCall('chat.update', (c) => c.args.ts === goneCard.response!.ts);
    expect(
      h
        .auditRows('approval.decided')
        .map((r) => r.decision)
        .sort(),
    ).toEqual(['abandoned', 'cancelled']);
  });

  it('cancelPending cancels one agent’s or every pending request and redraws each card', async () => {
    const h = await harness();
    const a = h.approvals.request(heldCall(h));
    const b = h.approvals.request(
      heldCall(h, {
        tool: 'refund_request',
        server: 'crm',
        consequence: 'irreversible',
        args: { customer_id: 'c1', amount: 10, reason: 'x' },
      }),
    );
    // Queued posts to one channel go out a second apart (on the fake clock).
    await clock.runUntil(
      vi.waitFor(() =>
        expect(h.db.prepare('SELECT count(*) FROM approvals WHERE message_ts IS NOT NULL').pluck().get()).toBe(2),
      ),
      { stepMs: 250 },
    );
    expect(await h.approvals.cancelPending({ agent: 'other-agent' }, 'agents halted')).toBe(0);
    expect(await h.approvals.cancelPending({ agent: 'support-triage' }, 'agents halted')).toBe(2);
    expect((await a).status).toBe('cancelled');
    expect((await b).status).toBe('cancelled');
    expect(h.slack.callsOf('chat.update')).toHaveLength(2);
    expect(await h.approvals.cancelPending({}, 'agents halted')).toBe(0);
  });

  it('sees a decision made by another process sharing the database (polling)', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));

    // Another Warden process: its own connection, audit log and service.
    const otherDb = openDb(h.dbPath);
    const otherAudit = new AuditLog(otherDb);
    // Same (fake) time as this process: the decision is made before the request's deadline.
    const other = new ApprovalService({
      db: otherDb,
      audit: otherAudit,
      clock,
      policy: () => h.policy,
      logger: silentLogger(),
    });
    try {
      expect(await other.decide(id, APPROVER, 'approve')).toMatchObject({ ok: true });
      let settled = false;
      void pending.then(() => (settled = true));
      await new Promise((r) => setTimeout(r, 20));
      expect(settled).toBe(false); // nothing tells this process but its poll
      await clock.tick(500);
      expect(await pending).toMatchObject({ status: 'approved', approver: APPROVER });
      expect(h.auditRows('approval.decided')).toHaveLength(1);
      // The other process has no Slack; the process that posted the card redraws it.
      const update = await h.slack.waitForCall('chat.update');
      expect(cardText(update.args.blocks)).toContain(`*Approved* by <@${APPROVER}>`);
    } finally {
      await otherAudit.close();
      otherDb.close();
    }
  });

  it('gives exactly one decision when two processes decide the same approval concurrently', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    const otherDb = openDb(h.dbPath);
    const otherAudit = new AuditLog(otherDb);
    const other = new ApprovalService({ db: otherDb, audit: otherAudit, clock, policy: () => h.policy });
    try {
      const results = await Promise.all([
        ...Array.from({ length: 10 }, (_, i) =>
          h.approvals.decide(id, i % 2 ? OWNER : APPROVER, i % 3 ? 'approve' : 'reject', 'r'),
        ),
        ...Array.from({ length: 10 }, (_, i) =>
          other.decide(id, i % 2 ? APPROVER : OWNER, i % 3 ? 'reject' : 'approve', 'r'),
        ),
      ]);
      expect(results.filter((r) => r.ok)).toHaveLength(1);
      expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === 'not_pending')).toBe(true);
      const outcome = await pending;
      expect(h.auditRows('approval.decided')).toHaveLength(1);
      expect(h.auditRows('approval.decided')[0]!.decision).toBe(outcome.status);
    } finally {
      await otherAudit.close();
      otherDb.close();
    }
  });

  it('the compare-and-set moves a row out of pending exactly once', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    const store = new ApprovalStore(h.db);
    expect(store.transition(id, { status: 'approved', at: START + 1, by: OWNER })).toBe(true);
    expect(store.transition(id, { status: 'rejected', at: START + 2, by: APPROVER })).toBe(false);
    expect(store.transition(id, { status: 'expired', at: START + 3 })).toBe(false);
    expect(row(h, id)).toMatchObject({
      status: 'approved',
      decided_by: OWNER,
      decided_at: START + 1,
      decision_seq: null,
    });

    // The status flipped but no audit row followed (the deciding process died): that is not an approval.
    let settled = false;
    void pending.then(() => (settled = true));
    await clock.tick(500);
    expect(settled).toBe(false);
    await clock.tick(15 * 60_000); // the deadline: one grace period for an audit write still in flight
    expect(settled).toBe(false);
    await clock.tick(UNAUDITED_APPROVAL_GRACE_MS);
    expect(await pending).toMatchObject({
      status: 'failed',
      reason: expect.stringContaining('not recorded in the audit trail'),
    });
    expect(row(h, id)).toMatchObject({ status: 'failed', decision_seq: null });
    // A poll may wake the caller as soon as the status reads failed, before that row commits.
    await vi.waitFor(() => expect(h.auditRows('approval.decided')).toHaveLength(1));
    expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'failed', approver: OWNER }]);
    // The card may have been redrawn before (a poll saw the bare status flip); the last redraw says Failed.
    await h.slack.waitForCall('chat.update', (c) => cardText(c.args.blocks).includes('*Failed*'));
    expect(cardText(h.slack.callsOf('chat.update').at(-1)!.args.blocks)).toContain('*Failed*');
  });

  it('does not release an approval while its audit row is being written; when the write fails the caller gets failed, never approved', async () => {
    const h = await harness();
    const audit = holdingAudit(h.audit, approvedDecision);
    const svc = new ApprovalService({
      db: h.db,
      audit: audit.sink,
      notifier: h.notifier,
      clock,
      policy: () => h.policy,
      pollMs: 500,
    });
    try {
      const pending = svc.request(heldCall(h));
      const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
      let settled = false;
      void pending.then(() => (settled = true));

      const deciding = svc.decide(id, OWNER, 'approve');
      await vi.waitFor(() => expect(audit.held).toHaveLength(1));
      expect(row(h, id)).toMatchObject({ status: 'approved', decision_seq: null });
      // The poll and then the expiry timer's lost compare-and-set both look at the row meanwhile.
      await clock.tick(500);
      expect(settled).toBe(false);
      await clock.tick(15 * 60_000);
      expect(settled).toBe(false);

      audit.held[0]!.fail(new Error('disk I/O error'));
      expect(await pending).toMatchObject({
        status: 'failed',
        reason: 'failed: audit write failed: disk I/O error',
      });
      expect(await deciding).toMatchObject({
        ok: false,
        code: 'not_pending',
        message: 'This request failed: audit write failed: disk I/O error.',
      });
      expect(row(h, id)).toMatchObject({ status: 'failed', decision_seq: null });
      // The trail never says approved; it says the approval failed.
      const [failed] = h.auditRows('approval.decided');
      expect(failed).toMatchObject({ decision: 'failed', approver: OWNER });
      // Marked as an approval that failed, so `/audit` tells it from an ordinary failure.
      expect(JSON.parse(String(failed!.detail))).toMatchObject({ failedApproval: true });
    } finally {
      await svc.close();
    }
  });

  it('a waiter acts on another process’s approval only after that process committed its audit row', async () => {
    const h = await harness();
    const argsA = { ticket_id: 'T-1', to: 'ada@example.com', subject: 's', body: 'b' };
    const argsB = { ticket_id: 'T-2', to: 'bob@example.com', subject: 's', body: 'b' };
    const a = h.approvals.request(heldCall(h, { args: argsA }));
    const cardA = await h.slack.waitForCall('chat.postMessage');
    const b = h.approvals.request(heldCall(h, { args: argsB }));
    const cardB = await h.slack.waitForCall('chat.postMessage', (c) => c !== cardA);
    const [idA, idB] = [approvalIdOf(cardA), approvalIdOf(cardB)];
    const settled = new Set<string>();
    void a.then(() => settled.add('a'));
    void b.then(() => settled.add('b'));

    const otherDb = openDb(h.dbPath);
    const otherAudit = new AuditLog(otherDb, { clock });
    const held = holdingAudit(otherAudit, approvedDecision);
    const other = new ApprovalService({ db: otherDb, audit: held.sink, clock, policy: () => h.policy });
    try {
      const decidedA = other.decide(idA, APPROVER, 'approve');
      const decidedB = other.decide(idB, OWNER, 'approve');
      await vi.waitFor(() => expect(held.held).toHaveLength(2));
      expect(row(h, idA).status).toBe('approved');
      await clock.tick(500);
      expect(settled.size).toBe(0);

      heldFor(held.held, idA).release();
      expect(await decidedA).toMatchObject({ ok: true });
      const auditedA = h.auditRows('approval.decided').find((r) => JSON.parse(r.detail!).approvalId === idA)!;
      expect(row(h, idA).decision_seq).toBe(auditedA.seq);
      await clock.tick(500);
      expect(await a).toMatchObject({ status: 'approved', approver: APPROVER, argsHash: argsHash(argsA) });
      expect(settled.has('b')).toBe(false);

      heldFor(held.held, idB).fail(new Error('database is locked'));
      expect(await decidedB).toMatchObject({ ok: false, code: 'not_pending' });
      await clock.tick(500);
      expect(await b).toMatchObject({
        status: 'failed',
        reason: 'failed: audit write failed: database is locked',
      });
    } finally {
      await otherAudit.close();
      otherDb.close();
    }
  });

  it('an approved outcome carries the hash of the exact arguments that were held and approved', async () => {
    const h = await harness();
    const args = {
      ticket_id: 'T-7',
      to: 'ada@example.com',
      subject: 'S',
      body: 'B',
      api_key: 'sk-live-abcdefghijklmnopqrstuvwxyz',
    };
    const pending = h.approvals.request(heldCall(h, { args }));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    await h.approvals.decide(id, OWNER, 'approve');
    const outcome = await pending;
    expect(outcome.status).toBe('approved');
    const hash = outcome.status === 'approved' ? outcome.argsHash : undefined;
    // The stored binding, over the exact arguments (the secret included, though people only saw it redacted).
    expect(hash).toBe(argsHash(args));
    expect(hash).toBe(row(h, id).args_hash);
    expect(hash).not.toBe(argsHash({ ...args, to: 'attacker@evil.example' }));
    expect(hash).not.toBe(argsHash(JSON.parse(row(h, id).args as string)));
  });

  it('an expired request can no longer be approved or rejected, even before its expiry timer has run', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    const expiresAt = START + 15 * 60_000;
    const store = new ApprovalStore(h.db);
    expect(store.transition(id, { status: 'approved', at: expiresAt, by: OWNER })).toBe(false);
    expect(store.transition(id, { status: 'rejected', at: expiresAt + 1, by: OWNER, reason: 'r' })).toBe(false);
    expect(row(h, id).status).toBe('pending');

    // Another process whose clock is past the deadline; this process's timer has not fired yet.
    const late = new ManualClock(expiresAt + 1000);
    const otherDb = openDb(h.dbPath);
    const otherAudit = new AuditLog(otherDb, { clock: late });
    const other = new ApprovalService({ db: otherDb, audit: otherAudit, clock: late, policy: () => h.policy });
    try {
      expect(await other.decide(id, OWNER, 'approve')).toMatchObject({
        ok: false,
        code: 'not_pending',
        message: 'This request expired before anyone decided.',
      });
      expect(row(h, id)).toMatchObject({ status: 'expired', decided_by: null, decided_at: expiresAt + 1000 });
      expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'expired', approver: null }]);
      await clock.tick(500);
      expect(await pending).toMatchObject({ status: 'expired' });
    } finally {
      await otherAudit.close();
      otherDb.close();
    }
  });

  it('gives exactly one decision when several OS processes click at the same instant', async () => {
    // The children decide on the real clock, so the request is held from real now (it expires in 15 min).
    const h = await harness(Date.now());
    const pending = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    const src = resolve(import.meta.dirname, '../src');
    const script = join(h.dir, 'decider.mts');
    writeFileSync(
      script,
      `import { openDb } from ${JSON.stringify(join(src, 'store/db.ts'))};
import { AuditLog } from ${JSON.stringify(join(src, 'audit/index.ts'))};
import { ApprovalService } from ${JSON.stringify(join(src, 'approvals/index.ts'))};
const [dbPath, id, startAt, who] = process.argv.slice(2);
const db = openDb(dbPath);
const audit = new AuditLog(db);
const svc = new ApprovalService({ db, audit });
while (Date.now() < Number(startAt)) {}
const results = await Promise.all(Array.from({ length: 25 }, (_, i) => svc.decide(id, i % 2 ? ${JSON.stringify(OWNER)} : ${JSON.stringify(APPROVER)}, (i + Number(who)) % 2 ? 'approve' : 'reject', 'r' + who)));
process.stdout.write(JSON.stringify(results.map((r) => r.ok)));
await audit.close();
db.close();
`,
    );
    const run = promisify(execFile);
    const startAt = Date.now() + 2500;
    const outs = await Promise.all(
      [0, 1, 2, 3].map((who) =>
        run(process.execPath, ['--import', 'tsx', script, h.dbPath, id, String(startAt), String(who)], {
          cwd: resolve(import.meta.dirname, '..'),
        }),
      ),
    );
    const oks = outs.flatMap((o) => JSON.parse(o.stdout) as boolean[]);
    expect(oks).toHaveLength(100);
    expect(oks.filter(Boolean)).toHaveLength(1);
    expect(h.auditRows('approval.decided')).toHaveLength(1);
    await clock.tick(500);
    expect((await pending).status).toBe(h.auditRows('approval.decided')[0]!.decision);
  });

  it('recover() abandons pending rows of a dead process, redraws their cards, and leaves a live process’s rows alone', async () => {
    const h = await harness();
    // The "previous" Warden: its request is pending when it dies (we simply never settle it).
    const crashed = h.approvals.request(heldCall(h));
    const post = await h.slack.waitForCall('chat.postMessage');
    const orphan = approvalIdOf(post);
    // A row owned by a process that is still running on this host (our parent).
    h.db
      .prepare(
        `INSERT INTO approvals (id, call_id, agent, server, tool, args, args_hash, rule, consequence, status, requested_at, expires_at, process_id)
         VALUES ('apr_live', 'c', 'support-triage', 'tickets', 'send_customer_email', '{}', 'x', 'approval_required', 'customer-facing', 'pending', ?, ?, ?)`,
      )
      .run(START, START + 60_000, `${hostname()}:${process.ppid}:live`);

    const restarted = restartedService(h);
    expect(await restarted.recover()).toBe(1);
    expect(row(h, orphan)).toMatchObject({ status: 'abandoned', decision_reason: 'Warden restarted' });
    expect(row(h, 'apr_live').status).toBe('pending');
    const update = await h.slack.waitForCall('chat.update', (c) => c.args.ts === post.response!.ts);
    expect(cardText(update.args.blocks)).toContain('*Abandoned* (Warden restarted)');
    expect(h.auditRows('approval.decided')[0]).toMatchObject({ decision: 'abandoned', reason: 'Warden restarted' });
    // The old in-memory waiter learns it through its poll.
    await clock.tick(500);
    expect(await crashed).toMatchObject({ status: 'abandoned' });
    expect(await restarted.recover()).toBe(0);
  });

  it('recover() takes a row naming no real pid on this host for orphaned: pid 0, not a number, none', async () => {
    const h = await harness();
    const insert = h.db.prepare(
      `INSERT INTO approvals (id, call_id, agent, server, tool, args, args_hash, rule, consequence, status, requested_at, expires_at, process_id)
       VALUES (?, ?, 'support-triage', 'tickets', 'send_customer_email', '{}', 'x', 'approval_required', 'customer-facing', 'pending', ?, ?, ?)`,
    );
    // pid 0 would signal this process group and look alive; a name that is no number has no process.
    insert.run('apr_zero', 'c-zero', START, START + 60_000, `${hostname()}:0:abcd1234`);
    insert.run('apr_nan', 'c-nan', START, START + 60_000, `${hostname()}:abc:abcd1234`);
    insert.run('apr_none', 'c-none', START, START + 60_000, null);
    const starting = restartedService(h);
    expect(await starting.recover()).toBe(3);
    for (const id of ['apr_zero', 'apr_nan', 'apr_none']) expect(row(h, id).status).toBe('abandoned');
  });

  it('recover() leaves a row of a process on another host alone until it expires, then abandons it', async () => {
    const h = await harness();
    // Another Warden on another machine, sharing the database: its pid means nothing here.
    h.db
      .prepare(
        `INSERT INTO approvals (id, call_id, agent, server, tool, args, args_hash, rule, consequence, status, requested_at, expires_at, process_id)
         VALUES ('apr_remote', 'c-remote', 'support-triage', 'tickets', 'send_customer_email', '{}', 'x', 'approval_required', 'customer-facing', 'pending', ?, ?, ?)`,
      )
      // A pid that runs nowhere here: checked locally, it would look gone.
      .run(START, START + 60_000, `not-${hostname()}.example:999999999:abcd1234`);

    const starting = restartedService(h);
    expect(await starting.recover()).toBe(0);
    expect(row(h, 'apr_remote').status).toBe('pending');
    // Its own process can still decide it.
    await clock.tick(59_999);
    expect(await starting.recover()).toBe(0);
    expect(row(h, 'apr_remote').status).toBe('pending');

    // Past its deadline and still pending: its process is not coming back for it.
    await clock.tick(1);
    expect(await starting.recover()).toBe(1);
    expect(row(h, 'apr_remote')).toMatchObject({ status: 'abandoned', decision_reason: 'Warden restarted' });
    expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'abandoned', reason: 'Warden restarted' }]);
  });

  it('reportOutcome posts the result in the card’s thread and stores it', async () => {
    const h = await harness();
    const pending = h.approvals.request(heldCall(h));
    const post = await h.slack.waitForCall('chat.postMessage');
    const id = approvalIdOf(post);
    await h.approvals.decide(id, OWNER, 'approve');
    await pending;
    await h.approvals.reportOutcome(id, { ok: true, summary: 'email sent to ada@example.com (message id 42)' });
    const reply = h.slack.callsOf('chat.postMessage').find((c) => c.args.thread_ts === post.response!.ts);
    expect(reply).toBeDefined();
    expect(cardText(reply!.args.blocks)).toContain('email sent to ada@example.com');
    expect(JSON.parse(row(h, id).outcome as string)).toEqual({
      ok: true,
      summary: 'email sent to ada@example.com (message id 42)',
    });
  });

  it('fails closed when the agent has no channel to ask in', async () => {
    const h = await harness();
    const outcome = await h.approvals.request(heldCall(h, { agentName: 'no-channel-bot' }));
    expect(outcome.status).toBe('failed');
    expect(outcome.status !== 'approved' && outcome.reason).toContain('has no Slack channel');
    expect(h.auditRows('approval.decided')[0]).toMatchObject({ decision: 'failed' });
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(0);
  });

  it('fails closed when the request cannot be audited', async () => {
    const h = await harness();
    await h.audit.close();
    const outcome = await h.approvals.request(heldCall(h));
    expect(outcome).toMatchObject({ status: 'failed' });
    expect(outcome.status !== 'approved' && outcome.reason).toContain('audit write failed');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(0);
  });
});
