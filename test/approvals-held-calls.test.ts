import { hostname } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { ApprovalService, argsHash } from '../src/approvals/index.ts';
import { AuditReader } from '../src/audit/reader.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { recoverAbandonedCalls } from '../src/control/recovery.ts';
import { DeferredCalls } from '../src/gateway/deferred.ts';
import type { HeldCallEnding } from '../src/approvals/types.ts';
import { ManualClock } from './support/manual-clock.ts';
import { OWNER, approvalIdOf, heldCall, startSlackHarness, type SlackHarness } from './support/slack-harness.ts';

/**
 * The approvals side of held calls that outlive their process (held_calls,
 * db/005): which rows a starting Warden takes over, which it abandons, and
 * that an approved call is taken to run by one process only. Real SQLite
 * file, real audit log, Slack through the local Web API server.
 */

const START = Date.parse('2026-03-02T09:00:00Z');

let h: SlackHarness | undefined;
let clock: ManualClock;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function harness(): Promise<SlackHarness> {
  clock = new ManualClock(START);
  h = await startSlackHarness({ clock, startApp: false, approvals: { pollMs: 500 } });
  return h;
}

/** Another Warden starting on the same database file (in this process, so the first one's pid reads as gone). */
function restarted(h: SlackHarness): ApprovalService {
  return new ApprovalService({ db: h.db, audit: h.audit, notifier: h.notifier, clock, policy: () => h.policy });
}

/** Holds a call in `h.approvals` (the process that will "die") and returns its approval id. */
async function hold(h: SlackHarness, body: string): Promise<{ id: string; args: Record<string, unknown> }> {
  const input = heldCall(h, {
    args: { ticket_id: 'T-1', to: 'ada@example.com', subject: 'Refund', body },
  });
  void h.approvals.request(input);
  const post = await h.slack.waitForCall('chat.postMessage', (c) => JSON.stringify(c.args.blocks).includes(body));
  return { id: approvalIdOf(post), args: input.args as Record<string, unknown> };
}

/** What the gateway stores when it tells the agent to check back. */
function keep(service: ApprovalService, id: string, args: Record<string, unknown>): void {
  const record = service.get(id)!;
  service.heldCalls.keep({
    approvalId: id,
    callId: record.callId,
    agent: record.agent,
    name: `${record.server}__${record.tool}`,
    server: record.server,
    tool: record.tool,
    argsHash: argsHash(args),
    args,
    channel: record.channel,
    answerWithinMs: 1_000,
    expiresAt: record.expiresAt,
  });
}

function heldRow(h: SlackHarness, id: string): Record<string, unknown> | undefined {
  return h.db.prepare('SELECT * FROM held_calls WHERE approval_id = ?').get(id) as Record<string, unknown> | undefined;
}

const ok: HeldCallEnding = { kind: 'result', result: { content: [{ type: 'text', text: 'sent' }] } };

describe('held calls across a restart (ApprovalService)', () => {
  it('recover() abandons a pending approval whose agent waited on the request, not a deferred one; the new process adopts that', async () => {
    const h = await harness();
    const waited = await hold(h, 'request still open');
    const deferred = await hold(h, 'told to check back');
    keep(h.approvals, deferred.id, deferred.args);

    const next = restarted(h);
    expect(await next.recover()).toBe(1);
    expect(next.get(waited.id)?.status).toBe('abandoned');
    expect(next.get(deferred.id)?.status).toBe('pending');

    const adopted = await next.adoptHeldCalls();
    expect(adopted.map((c) => c.approvalId)).toEqual([deferred.id]);
    expect(adopted[0]!.args).toEqual(deferred.args);
    expect(next.get(deferred.id)?.processId).toBe(next.processId);
    // Claimed: it is this process's now, and a second look does not adopt it again.
    expect(await next.adoptHeldCalls()).toEqual([]);

    const decision = next.awaitDecision(deferred.id, new AbortController().signal);
    expect((await next.decide(deferred.id, OWNER, 'approve')).ok).toBe(true);
    await expect(decision).resolves.toMatchObject({ status: 'approved', argsHash: argsHash(deferred.args) });
    await next.close();
  });

  it('the adopted expiry is re-armed: nobody decides, the approval expires in the new process', async () => {
    const h = await harness();
    const call = await hold(h, 'expires later');
    keep(h.approvals, call.id, call.args);
    const next = restarted(h);
    await next.adoptHeldCalls();
    const decision = next.awaitDecision(call.id, new AbortController().signal);
    await clock.advanceTo(next.get(call.id)!.expiresAt + 1);
    await expect(decision).resolves.toMatchObject({ status: 'expired' });
    await next.close();
  });

  it('an approved call is taken to run once; if its runner died it is ended as unknown, never run again', async () => {
    const h = await harness();
    const call = await hold(h, 'approved then crashed');
    keep(h.approvals, call.id, call.args);
    await h.approvals.decide(call.id, OWNER, 'approve');
    expect(h.approvals.heldCalls.claimRun(call.id)).toBe(true);
    // Nobody else may take it, in this process or another.
    expect(h.approvals.heldCalls.claimRun(call.id)).toBe(false);

    const next = restarted(h);
    expect(next.heldCalls.claimRun(call.id)).toBe(false);
    expect(await next.adoptHeldCalls()).toEqual([]);
    expect(heldRow(h, call.id)).toMatchObject({ args: null });
    expect(String(heldRow(h, call.id)?.ending)).toMatch(/whether it ran is unknown/);
  });

  it('approved while its process was gone and not taken by anyone: the next process adopts it to run', async () => {
    const h = await harness();
    const call = await hold(h, 'approved while down');
    keep(h.approvals, call.id, call.args);
    await h.approvals.decide(call.id, OWNER, 'approve');
    const next = restarted(h);
    const adopted = await next.adoptHeldCalls();
    expect(adopted.map((c) => c.approvalId)).toEqual([call.id]);
    await expect(next.awaitDecision(call.id, new AbortController().signal)).resolves.toMatchObject({
      status: 'approved',
    });
    expect(next.heldCalls.claimRun(call.id)).toBe(true);
  });

  it('start-up recovery does not close a held call that is approved but still to run, however old its decision', async () => {
    const h = await harness();
    const call = await hold(h, 'approved long ago');
    keep(h.approvals, call.id, call.args);
    const callId = h.approvals.get(call.id)!.callId;
    await h.audit.append({ event: 'call.decided', callId, agent: 'support-triage', decision: 'approve', ts: START });
    await h.approvals.decide(call.id, OWNER, 'approve');
    const next = restarted(h);
    // Started long after the decision (past any grace), as after a night with Warden down.
    const late = {
      auditReader: new AuditReader(h.db),
      approvals: next,
      audit: h.audit,
      clock,
      startedAt: START + 60 * 60_000,
    };
    const stillToRun = (id: string) => next.heldCalls.stillToRun(id);
    expect(await recoverAbandonedCalls({ ...late, stillToRun })).toEqual([]);
    // Taken to run: from then on it is an ordinary approved call, closed as abandoned if its runner dies.
    expect(next.heldCalls.claimRun(call.id)).toBe(true);
    expect(next.heldCalls.stillToRun(callId)).toBe(false);
    expect((await recoverAbandonedCalls({ ...late, stillToRun })).map((r) => r.callId)).toEqual([callId]);
  });

  it('a deferred call of a live process on another host is left to it until its expiry', async () => {
    const h = await harness();
    const call = await hold(h, 'another host');
    keep(h.approvals, call.id, call.args);
    h.db.prepare('UPDATE approvals SET process_id = ? WHERE id = ?').run(`not-${hostname()}.example:1:x`, call.id);
    expect(await restarted(h).adoptHeldCalls()).toEqual([]);
    expect(h.approvals.get(call.id)?.status).toBe('pending');
  });

  it('an ending is handed out once; a halt replaces kept endings; rows past expiry are gone', async () => {
    const h = await harness();
    const first = await hold(h, 'one');
    const second = await hold(h, 'two');
    keep(h.approvals, first.id, first.args);
    keep(h.approvals, second.id, second.args);
    const book = h.approvals.heldCalls;
    expect(book.take(first.id)).toBeUndefined();
    expect(book.end(first.id, ok)).toBe(true);
    expect(book.end(first.id, ok)).toBe(false);
    expect(heldRow(h, first.id)).toMatchObject({ args: null });
    expect(book.findRepeat('support-triage', 'tickets__send_customer_email', argsHash(first.args))?.approvalId).toBe(
      first.id,
    );

    const halted: HeldCallEnding = { kind: 'result', result: { content: [{ type: 'text', text: 'halted' }] } };
    expect(book.discard({ agent: 'support-triage' }, halted)).toBe(1);
    expect(book.take(first.id)).toEqual(halted);
    expect(book.take(first.id)).toBeUndefined();
    expect(heldRow(h, first.id)).toBeUndefined();

    // The second is still waiting (its arguments kept) until its approval's expiry; then it is gone.
    expect(heldRow(h, second.id)?.args).not.toBeNull();
    await clock.advanceTo(h.approvals.get(second.id)!.expiresAt);
    expect(book.get(second.id)).toBeUndefined();
    expect(book.hasAny('support-triage')).toBe(false);
  });

  it('a result kept through a halt no Warden saw (a terminal halt, then resume) is not handed out; one ended after it is', async () => {
    const h = await harness();
    const before = await hold(h, 'before the halt');
    const after = await hold(h, 'after the halt');
    keep(h.approvals, before.id, before.args);
    keep(h.approvals, after.id, after.args);
    const book = h.approvals.heldCalls;
    expect(book.end(before.id, ok)).toBe(true);
    await clock.tick(1000);
    // No gateway is listening, so nothing discards the kept ending: only the trail knows.
    const terminal = new KillSwitch({ db: h.db, audit: h.audit, clock });
    await terminal.halt({ scope: 'org', reason: 'from a terminal', actor: 'cli:ops' });
    await terminal.resume({ scope: 'org', actor: 'cli:ops' });
    await clock.tick(1000);
    expect(book.end(after.id, ok)).toBe(true);

    const reader = new AuditReader(h.db);
    const deferred = new DeferredCalls(clock, book, (agent, since) => reader.haltedSince(agent, since));
    const withheld = deferred.take(before.id);
    expect(withheld).toMatchObject({ kind: 'result', result: { isError: true } });
    expect(JSON.stringify(withheld)).toContain('agents were halted after this call ended');
    expect(deferred.take(before.id)).toBeUndefined();
    expect(deferred.take(after.id)).toEqual(ok);
  });
});
