import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heldCall } from './support/slack-harness.ts';
import { validateBlocks } from './support/slack-api-server.ts';
import {
  blocksText,
  LEAD,
  ONCALL_USER,
  STRANGER,
  startControlSlack,
  type ControlSlack,
} from './support/control-slack.ts';

let c: ControlSlack;

beforeAll(async () => {
  c = await startControlSlack();
});
afterAll(async () => {
  await c?.close();
});

describe('/agents over signed Slack requests', () => {
  it('halt AGENT: refuses new calls, cancels its pending approval and redraws the card, announces on-call, audits', async () => {
    const held = c.h.approvals.request(
      heldCall(c.h, {
        agentName: 'support-triage',
        server: 'slow',
        tool: 'sleep',
        args: { ms: 5 },
        rule: 'approval_required',
        consequence: 'irreversible',
      }),
    );
    const card = await c.h.slack.waitForCall('chat.postMessage', (m) => m.args.channel === 'C0OWNER');

    const sent = await c.command(ONCALL_USER, '/agents', 'halt support-triage refunds look wrong');
    expect(sent.status).toBe(200);
    const reply = await sent.next();
    expect(reply.args.response_type).toBe('ephemeral');
    expect(reply.args.text).toMatch(/Halted agent `support-triage`: refunds look wrong/);
    expect(c.ks.check('support-triage')).toMatchObject({
      scope: 'agent',
      actor: `slack:${ONCALL_USER}`,
      reason: 'refunds look wrong',
    });
    expect(c.ks.check('worker')).toBeNull();

    const outcome = await held;
    expect(outcome.status).toBe('cancelled');
    expect(outcome.status !== 'approved' && outcome.reason).toMatch(/halted by slack:U0ONCALL: refunds look wrong/);
    const update = await c.h.slack.waitForCall(
      'chat.update',
      (u) => u.args.channel === 'C0OWNER' && u.args.ts === card.response!.ts,
    );
    expect(blocksText(update.args.blocks)).toMatch(/cancel/i);

    const announce = await c.h.slack.waitForCall(
      'chat.postMessage',
      (m) => m.args.channel === 'C0ONCALL' && /halted/.test(String(m.args.text)),
    );
    expect(String(announce.args.text)).toMatch(/support-triage halted by slack:U0ONCALL: refunds look wrong/);
    expect(String(announce.args.text)).toMatch(/1 pending approval\(s\) cancelled/);

    await c.audit.flush();
    const halt = c.h.auditRows('control.halt').at(-1)!;
    expect(halt.agent).toBe('support-triage');
    expect(JSON.parse(halt.detail!)).toMatchObject({ actor: `slack:${ONCALL_USER}`, scope: 'agent' });
  });

  it('refuses a stranger’s halt and a halter’s resume (resume is stricter), and audits the refusals', async () => {
    const s = await c.command(STRANGER, '/agents', 'halt all');
    expect((await s.next()).args.text).toMatch(/Not allowed: .*not in control\.halters/);
    expect(c.ks.check('worker')).toBeNull();

    const r = await c.command(ONCALL_USER, '/agents', 'resume support-triage');
    expect((await r.next()).args.text).toMatch(/Not allowed: .*not in control\.resumers/);
    expect(c.ks.check('support-triage')).not.toBeNull();

    await c.audit.flush();
    const refused = c.h
      .auditRows('control.refused')
      .map((row) => JSON.parse(row.detail!) as { action: string; actor: string });
    expect(refused).toEqual([
      expect.objectContaining({ action: 'halt', actor: `slack:${STRANGER}` }),
      expect.objectContaining({ action: 'resume', actor: `slack:${ONCALL_USER}` }),
    ]);

    const ok = await c.command(LEAD, '/agents', 'resume support-triage');
    expect((await ok.next()).args.text).toMatch(/Resumed agent `support-triage`/);
    expect(c.ks.check('support-triage')).toBeNull();
    await c.h.slack.waitForCall(
      'chat.postMessage',
      (m) => m.args.channel === 'C0ONCALL' && /resumed by slack:U0LEAD/.test(String(m.args.text)),
    );
  });

  it('status: owner, state, calls and denials in the last hour, pending approvals, review date with overdue flagged', async () => {
    const now = Date.now();
    for (const decision of ['allow', 'allow', 'allow', 'deny'] as const)
      await c.audit.append({
        event: 'call.decided',
        agent: 'worker',
        owner: 'U0OWNER',
        server: 'slow',
        tool: 'sleep',
        decision,
        ts: now - 60_000,
      });
    await c.audit.append({
      event: 'call.decided',
      agent: 'worker',
      server: 'slow',
      tool: 'sleep',
      decision: 'allow',
      ts: now - 2 * 3_600_000,
    });
    const held = c.h.approvals.request(
      heldCall(c.h, { agentName: 'support-triage', server: 'slow', tool: 'sleep', args: { ms: 1 } }),
    );
    await c.h.slack.waitForCall(
      'chat.postMessage',
      (m) =>
        m.args.channel === 'C0OWNER' &&
        c.h.slack.callsOf('chat.postMessage').filter((x) => x.args.channel === 'C0OWNER').length >= 2,
    );
    await c.ks.halt({ scope: 'agent', agent: 'warden-canary', reason: 'parked', actor: 'cli:ops' });

    const s = await c.command(ONCALL_USER, '/agents', 'status');
    const reply = await s.next();
    const blocks = reply.args.blocks as { type: string; text?: { text: string } }[];
    expect(validateBlocks(blocks, 'message')).toEqual([]);
    const sections = blocks.filter((b) => b.type === 'section').map((b) => b.text!.text);
    const worker = sections.find((t) => t.startsWith('*worker*'))!;
    expect(worker).toMatch(/owner <@U0OWNER>/);
    expect(worker).toMatch(/running/);
    expect(worker).toMatch(/calls \(1h\): \*4\* · denied \(1h\): \*1\* · pending approvals: \*0\*/);
    expect(worker).toMatch(/review: \*2026-01-10\* :warning: \*OVERDUE\*/);
    const triage = sections.find((t) => t.startsWith('*support-triage*'))!;
    expect(triage).toMatch(/pending approvals: \*1\*/);
    const canary = sections.find((t) => t.startsWith('*warden-canary*'))!;
    expect(canary).toMatch(/halted\* by cli:ops .*: parked/);

    const one = await c.command(ONCALL_USER, '/agents', 'status worker');
    const oneBlocks = (await one.next()).args.blocks as { type: string }[];
    expect(oneBlocks.filter((b) => b.type === 'section')).toHaveLength(1);

    await c.ks.resume({ scope: 'agent', agent: 'warden-canary', actor: 'cli:ops' });
    await c.h.approvals.cancelPending({ agent: 'support-triage' }, 'test cleanup');
    await held;
  });

  it('drill canary: runs through the real gateway, answers the caller and reports to on-call', async () => {
    const s = await c.command(LEAD, '/agents', 'drill canary');
    expect((await s.next(1)).args.text).toMatch(/Starting a canary drill with `warden-canary`/);
    const report = await s.next(2);
    expect(report.args.text).toMatch(
      /Kill-switch drill \(canary\) passed: halt→refusal [\d.]+ ms, in-flight cancelled yes/,
    );
    expect(validateBlocks(report.args.blocks, 'message')).toEqual([]);
    const posted = await c.h.slack.waitForCall(
      'chat.postMessage',
      (m) => m.args.channel === 'C0ONCALL' && /Kill-switch drill/.test(String(m.args.text)),
    );
    expect(blocksText(posted.args.blocks)).toMatch(/In-flight call cancelled\*\nyes/);
    expect(c.db.prepare('SELECT ok FROM drills ORDER BY started_at DESC LIMIT 1').get()).toEqual({ ok: 1 });
  });

  it('drill needs a resumer; unknown verbs and agents get usage', async () => {
    const d = await c.command(ONCALL_USER, '/agents', 'drill');
    expect((await d.next()).args.text).toMatch(/Not allowed: .*resumers/);
    const bad = await c.command(ONCALL_USER, '/agents', 'halt nobody-here because');
    expect((await bad.next()).args.text).toMatch(
      /Unknown agent `nobody-here`: use `all` or one of `support-triage`, `warden-canary`, `worker`[\s\S]*Usage: `\/agents status/,
    );
    const verb = await c.command(ONCALL_USER, '/agents', 'explode');
    expect((await verb.next()).args.text).toMatch(/Unknown subcommand `explode`/);
    expect(c.ks.status()).toEqual([]);
  });
});
