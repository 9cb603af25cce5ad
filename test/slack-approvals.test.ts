import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApprovalService } from '../src/approvals/index.ts';
import type { ApprovalOutcome } from '../src/approvals/types.ts';
import { silentLogger } from '../src/logger.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { SlackNotifier } from '../src/slack/notifier.ts';
import { ManualClock } from './support/manual-clock.ts';
import type { RecordedCall } from './support/slack-api-server.ts';
import {
  APPROVER,
  BOT_TOKEN,
  CHANNEL,
  OWNER,
  STRANGER,
  approvalIdOf,
  heldCall,
  startSlackHarness,
  type SlackHarness,
} from './support/slack-harness.ts';
import { signRequest, payloadBody, blockActionPayload } from './support/slack-sign.ts';

const START = Date.parse('2026-03-02T09:00:00Z');
let h: SlackHarness;
let clock: ManualClock;

beforeEach(async () => {
  clock = new ManualClock(START);
  h = await startSlackHarness({ clock });
});

afterEach(async () => {
  await h.close();
});

interface Held {
  outcome: Promise<ApprovalOutcome>;
  card: RecordedCall;
  id: string;
  ts: string;
}

async function hold(overrides: Parameters<typeof heldCall>[1] = {}): Promise<Held> {
  const before = h.slack.callsOf('chat.postMessage').length;
  const outcome = h.approvals.request(heldCall(h, overrides));
  const card = await h.slack.waitForCall('chat.postMessage', () => h.slack.callsOf('chat.postMessage').length > before);
  const posted = h.slack.callsOf('chat.postMessage')[before]!;
  const id = approvalIdOf(posted);
  await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBeDefined());
  void card;
  return { outcome, card: posted, id, ts: posted.response!.ts as string };
}

function blocksText(call: RecordedCall | undefined): string {
  return JSON.stringify(call?.args.blocks ?? call?.args.view ?? null);
}

function status(id: string): string | undefined {
  return h.approvals.get(id)?.status;
}

describe('approval card', () => {
  it('is posted to the agent’s channel with who, what, why, the redacted arguments, times and the two buttons', async () => {
    const { card, id } = await hold({
      args: {
        ticket_id: 'T-1001',
        to: 'ada@example.com',
        subject: 'Refund',
        body: 'Hi <!channel> & team',
        password: 'hunter2',
      },
    });
    expect(card.args.channel).toBe(CHANNEL);
    expect(card.args.text).toBe('Approval needed: support-triage → tickets__send_customer_email');
    const blocks = card.args.blocks as any[];
    // header, who, why, arguments heading, the arguments, the redaction notice, times, buttons, status.
    expect(blocks.map((b) => b.type)).toEqual([
      'header',
      'section',
      'section',
      'section',
      'section',
      'section',
      'context',
      'actions',
      'section',
    ]);
    expect(blocks[0].text).toMatchObject({ type: 'plain_text', text: 'Approval needed: tickets__send_customer_email' });
    expect(blocks[1].fields.map((f: any) => f.text)).toEqual([
      '*Agent*\nsupport-triage',
      `*Owner*\n<@${OWNER}>`,
      '*Server*\ntickets',
      '*Tool*\nsend_customer_email',
    ]);
    expect(blocks[2].text.text).toContain('send_customer_email is in approval_required for support-triage');
    expect(blocks[2].text.text).toContain('Consequence: *customer-facing*');
    expect(blocks[2].text.text).toContain('approval_required');
    // Every key with its own value, redacted, and escaped so an argument cannot ping the channel.
    expect(blocks[3].text.text).toBe('*Arguments* — 5 keys (secrets redacted)');
    expect(blocks[4].text.text).toContain('`ticket_id`\n```T-1001```');
    expect(blocks[4].text.text).toContain('`to`\n```ada@example.com```');
    expect(blocks[4].text.text).toContain('`password` :lock: _redacted: sent to the tool, not shown_');
    expect(blocks[4].text.text).toContain('Hi &lt;!channel&gt; &amp; team');
    expect(blocks[5].text.text).toBe(
      ':warning: *1 value is hidden from you*: 1 under a secret-named key. The tool receives what the agent sent, unredacted.\n' +
        ':lock: *Redacted* — sent to the tool but not shown here: `password`',
    );
    expect(JSON.stringify(blocks)).not.toContain('hunter2');
    // Everything fitted: no warning, no thread.
    expect(JSON.stringify(blocks)).not.toContain('Not every argument');
    const context = blocks[6].elements[0].text as string;
    expect(context).toContain(`Requested <!date^${START / 1000}^{date_short_pretty} {time}|2026-03-02 09:00 UTC>`);
    expect(context).toContain(`Expires <!date^${START / 1000 + 900}^`);
    const [approve, reject] = blocks[7].elements;
    expect(approve).toMatchObject({
      type: 'button',
      action_id: 'approval_approve',
      style: 'primary',
      value: id,
      text: { type: 'plain_text', text: 'Approve' },
    });
    expect(reject).toMatchObject({
      type: 'button',
      action_id: 'approval_reject',
      style: 'danger',
      value: id,
      text: { type: 'plain_text', text: 'Reject' },
    });
  });

  it('stays within Block Kit limits for huge arguments (the local Slack rejects anything over)', async () => {
    const huge: Record<string, string> = {};
    for (let i = 0; i < 2000; i++) huge[`field_${i}_${'k'.repeat(50)}`] = `<@U123> & ${'v'.repeat(500)}`;
    const { card, id } = await hold({ args: huge, reason: 'r'.repeat(10_000), callId: 'c'.repeat(5000) });
    expect(card.response).toMatchObject({ ok: true });
    const blocks = card.args.blocks as any[];
    expect(blocks.length).toBeLessThanOrEqual(50);
    for (const b of blocks) {
      if (b.type === 'section' && b.text) expect(b.text.text.length).toBeLessThanOrEqual(3000);
      for (const f of b.fields ?? []) expect(f.text.length).toBeLessThanOrEqual(2000);
    }
    // The warning says exactly how many keys are missing; the thread carries what Slack can hold, and says the rest is not shown.
    const shownKeys = JSON.stringify(blocks).match(/`field_\d+_k+`\\n```/g)!.length;
    expect(blocks[1].text.text).toContain(`*${2000 - shownKeys} of 2000 keys are not shown at all*`);
    expect(blocks[1].text.text).toContain('Do not approve what you could not read.');
    const thread = await vi.waitFor(() => {
      const replies = h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === card.response!.ts);
      expect(replies.length).toBeGreaterThan(0);
      expect(JSON.stringify(replies.at(-1)!.args.blocks)).toContain('The rest is not posted');
      return replies;
    });
    expect(thread.every((c) => c.response?.ok === true)).toBe(true);
    expect(status(id)).toBe('pending');
    // And the redraw after a decision fits too.
    await h.approvals.decide(id, OWNER, 'reject', 'x'.repeat(5000));
    const update = await h.slack.waitForCall('chat.update');
    expect(update.response).toMatchObject({ ok: true });
  });
});

describe('arguments the card cannot show in full', () => {
  /** Thread replies to a card, in order. */
  const replies = (ts: string) => h.slack.callsOf('chat.postMessage').filter((c) => c.args.thread_ts === ts);
  const unfence = (calls: RecordedCall[]) =>
    calls
      .flatMap((c) => (c.args.blocks as Array<{ text?: { text: string } }>).map((b) => b.text?.text ?? ''))
      .filter((t) => t.startsWith('```'))
      .map((t) => t.slice(3, -3))
      .join('')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>')
      .replace(/&amp;/g, '&');

  it('a short `to` after a long body is on the card, under a warning, and the full arguments are in the card’s thread', async () => {
    const args = {
      ticket_id: 'T-1001',
      subject: 'Your refund',
      body: 'Hello '.repeat(500),
      to: 'attacker@evil.example',
    };
    const { card, ts, id, outcome } = await hold({ args });
    const text = blocksText(card);
    expect(text).toContain('`to`\\n```attacker@evil.example```');
    expect(text).toContain(':rotating_light: *Not every argument is shown in full on this card.*');
    await vi.waitFor(() => expect(replies(ts)).toHaveLength(1));
    const [reply] = replies(ts);
    expect(reply!.response).toMatchObject({ ok: true });
    expect(JSON.parse(unfence(replies(ts)))).toEqual(args);
    expect(status(id)).toBe('pending');
    await h.approvals.decide(id, OWNER, 'reject', 'wrong recipient');
    expect(await outcome).toMatchObject({ status: 'rejected' });
    // The redraw keeps every key and the warning.
    const update = await h.slack.waitForCall('chat.update');
    expect(blocksText(update)).toContain('attacker@evil.example');
    expect(blocksText(update)).toContain('Not every argument is shown in full');
  });

  it('fails closed, and says so on the card, when the full arguments cannot be posted in the thread', async () => {
    // A real HTTP hop in front of the local Slack that refuses thread replies only.
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        if (req.url?.endsWith('/chat.postMessage') && body.toString('utf8').includes('thread_ts')) {
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ ok: false, error: 'msg_blocks_too_long' }));
          return;
        }
        const upstream = request(
          new URL(req.url!.replace(/^\/api\//, ''), h.slack.apiUrl),
          { method: req.method, headers: req.headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.end(body);
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    const apiUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/api/`;
    const notifier = new SlackNotifier({
      client: createSlackClient({ botToken: BOT_TOKEN, apiUrl }, silentLogger()),
      clock,
    });
    const approvals = new ApprovalService({ db: h.db, audit: h.audit, notifier, clock, policy: () => h.policy });
    try {
      const outcome = await approvals.request(
        heldCall(h, { args: { body: 'x'.repeat(5000), to: 'attacker@evil.example' } }),
      );
      expect(outcome).toMatchObject({
        status: 'failed',
        reason: expect.stringContaining("the full arguments could not be posted in the card's thread"),
      });
      expect(outcome.status !== 'approved' && outcome.reason).toContain('msg_blocks_too_long');
      const card = h.slack.callsOf('chat.postMessage').find((c) => c.args.thread_ts === undefined)!;
      const update = await h.slack.waitForCall('chat.update');
      expect(update.args.ts).toBe(card.response!.ts);
      expect(blocksText(update)).toContain('*Failed*');
      expect(blocksText(update)).not.toContain('approval_approve');
      expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'failed' }]);
    } finally {
      await approvals.close();
      await new Promise((r) => proxy.close(r));
    }
  });
});

describe('clicks', () => {
  it('approve by the owner: ack, one decision, outcome approved, card redrawn from the database', async () => {
    const { outcome, id, ts } = await hold();
    const res = await h.sender.blockAction({
      user: OWNER,
      actionId: 'approval_approve',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    expect(res.status).toBe(200);
    expect(await outcome).toMatchObject({ status: 'approved', approver: OWNER });
    const update = await h.slack.waitForCall('chat.update');
    expect(update.args).toMatchObject({ channel: CHANNEL, ts });
    expect(blocksText(update)).toContain(`*Approved* by <@${OWNER}> at <!date^${START / 1000}^`);
    expect(blocksText(update)).not.toContain('approval_approve');
    expect(h.slack.message(CHANNEL, ts)!.text).toBe(
      `Approved by <@${OWNER}>: support-triage → tickets__send_customer_email`,
    );
    expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'approved', approver: OWNER }]);
  });

  it('reject opens a modal (views.open with the click’s trigger_id); submitting a reason rejects', async () => {
    const { outcome, id, ts } = await hold();
    const triggerId = 'trigger-abc-123';
    expect(
      (
        await h.sender.blockAction({
          user: APPROVER,
          actionId: 'approval_reject',
          value: id,
          channel: CHANNEL,
          messageTs: ts,
          triggerId,
        })
      ).status,
    ).toBe(200);
    const open = await h.slack.waitForCall('views.open');
    expect(open.args.trigger_id).toBe(triggerId);
    expect(open.response).toMatchObject({ ok: true });
    const view = open.args.view;
    expect(view).toMatchObject({ type: 'modal', callback_id: 'approval_reject_modal', submit: { text: 'Reject' } });
    expect(status(id)).toBe('pending');

    // An empty reason is refused inside the modal, and nothing is decided.
    const empty = await h.sender.viewSubmission({
      user: APPROVER,
      callbackId: view.callback_id,
      privateMetadata: view.private_metadata,
      values: { reject_reason: { reason: '   ' } },
    });
    expect(empty.status).toBe(200);
    expect(JSON.parse(empty.body)).toMatchObject({
      response_action: 'errors',
      errors: { reject_reason: expect.stringContaining('Give a reason') },
    });
    expect(status(id)).toBe('pending');

    const submit = await h.sender.viewSubmission({
      user: APPROVER,
      callbackId: view.callback_id,
      privateMetadata: view.private_metadata,
      values: { reject_reason: { reason: 'Wrong customer <!here>' } },
    });
    expect(submit.status).toBe(200);
    expect(await outcome).toMatchObject({
      status: 'rejected',
      approver: APPROVER,
      reason: `rejected by ${APPROVER}: Wrong customer <!here>`,
    });
    const update = await h.slack.waitForCall('chat.update');
    expect(blocksText(update)).toContain(`*Rejected* by <@${APPROVER}>: Wrong customer &lt;!here&gt;`);
    expect(h.auditRows('approval.decided')).toMatchObject([
      { decision: 'rejected', approver: APPROVER, reason: 'Wrong customer <!here>' },
    ]);
  });

  it('an unauthorised clicker gets an ephemeral refusal, the attempt is audited, and nothing is decided', async () => {
    const { id, ts } = await hold();
    await h.sender.blockAction({
      user: STRANGER,
      actionId: 'approval_approve',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    const eph = await h.slack.waitForCall('chat.postEphemeral');
    expect(eph.args).toMatchObject({ channel: CHANNEL, user: STRANGER });
    expect(eph.args.text).toContain('not the owner or an approver of support-triage');
    await h.sender.blockAction({
      user: STRANGER,
      actionId: 'approval_reject',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    await vi.waitFor(() => expect(h.slack.callsOf('chat.postEphemeral')).toHaveLength(2));
    expect(h.slack.callsOf('views.open')).toHaveLength(0);
    expect(h.auditRows('approval.refused')).toMatchObject([
      { approver: STRANGER, decision: 'approve', agent: 'support-triage' },
      { approver: STRANGER, decision: 'reject', agent: 'support-triage' },
    ]);
    expect(status(id)).toBe('pending');
    expect(h.auditRows('approval.decided')).toHaveLength(0);
    expect(h.slack.callsOf('chat.update')).toHaveLength(0);
  });

  it('100 concurrent clicks from mixed users (approve buttons and reject submissions) produce exactly one decision', async () => {
    const { outcome, id, ts } = await hold();
    const users = [OWNER, APPROVER, STRANGER];
    const { private_metadata } = (await (async () => {
      await h.sender.blockAction({
        user: OWNER,
        actionId: 'approval_reject',
        value: id,
        channel: CHANNEL,
        messageTs: ts,
      });
      return (await h.slack.waitForCall('views.open')).args.view;
    })()) as { private_metadata: string };
    const sends = Array.from({ length: 100 }, (_, i) => {
      const user = users[i % 3]!;
      return i % 2 === 0
        ? h.sender.blockAction({ user, actionId: 'approval_approve', value: id, channel: CHANNEL, messageTs: ts })
        : h.sender.viewSubmission({
            user,
            callbackId: 'approval_reject_modal',
            privateMetadata: private_metadata,
            values: { reject_reason: { reason: `no (${i})` } },
          });
    });
    const responses = await Promise.all(sends);
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const result = await outcome;
    expect(['approved', 'rejected']).toContain(result.status);
    const strangers = Array.from({ length: 100 }, (_, i) => i).filter((i) => users[i % 3] === STRANGER).length;
    // Every click gets its answer (one ephemeral per click that did not decide)…
    await vi.waitFor(() => expect(h.slack.callsOf('chat.postEphemeral')).toHaveLength(99));
    // …but one decision, one audit row for it, one redraw.
    expect(h.auditRows('approval.decided')).toHaveLength(1);
    expect(h.auditRows('approval.decided')[0]!.decision).toBe(result.status);
    expect(h.auditRows('approval.refused')).toHaveLength(strangers);
    expect(h.slack.callsOf('chat.update')).toHaveLength(1);
    expect(h.db.prepare('SELECT count(*) FROM approvals WHERE status != ?').pluck().get('pending')).toBe(1);
  });

  it('expires on the injected clock and the card says so', async () => {
    const { outcome, ts } = await hold();
    await clock.tick(15 * 60_000);
    expect(await outcome).toMatchObject({ status: 'expired' });
    const update = await h.slack.waitForCall('chat.update');
    expect(update.args.ts).toBe(ts);
    expect(blocksText(update)).toContain('*Expired*');
  });

  it('a click on a card that is no longer pending tells the user who decided', async () => {
    const { outcome, id, ts } = await hold();
    await h.approvals.decide(id, APPROVER, 'approve');
    await outcome;
    await h.sender.blockAction({
      user: OWNER,
      actionId: 'approval_approve',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    const eph = await h.slack.waitForCall('chat.postEphemeral');
    expect(eph.args.text).toBe(`This call was already approved by <@${APPROVER}>.`);
  });

  it('a button whose value is not an approval id is refused to the clicker, on either button, and nothing is decided', async () => {
    const { id, ts } = await hold();
    for (const actionId of ['approval_approve', 'approval_reject']) {
      await h.sender.blockAction({ user: OWNER, actionId, value: `${id}' OR 1=1`, channel: CHANNEL, messageTs: ts });
    }
    await vi.waitFor(() => expect(h.slack.callsOf('chat.postEphemeral')).toHaveLength(2));
    for (const eph of h.slack.callsOf('chat.postEphemeral')) {
      expect(eph.args).toMatchObject({
        channel: CHANNEL,
        user: OWNER,
        text: 'This button does not carry a valid approval id.',
      });
    }
    expect(h.slack.callsOf('views.open')).toHaveLength(0);
    expect(h.auditRows('approval.refused')).toHaveLength(0);
    expect(status(id)).toBe('pending');
  });
});

describe('request authenticity', () => {
  it('rejects a forged signature, a stale timestamp, a future timestamp and a replayed request; none of them acts', async () => {
    const { id, ts } = await hold();
    const click = { user: OWNER, actionId: 'approval_approve', value: id, channel: CHANNEL, messageTs: ts };
    const now = Math.floor(Date.now() / 1000);

    expect((await h.sender.blockAction(click, { secret: 'not-the-secret' })).status).toBe(401);
    expect((await h.sender.blockAction(click, { timestampSec: now - 6 * 60 })).status).toBe(401);
    expect((await h.sender.blockAction(click, { timestampSec: now + 10 * 60 })).status).toBe(401);
    // A body altered after signing.
    const signed = signRequest(h.sender.secret, payloadBody(blockActionPayload(click)));
    expect(
      (await h.sender.send({ ...signed, body: payloadBody(blockActionPayload({ ...click, user: STRANGER })) })).status,
    ).toBe(401);

    // Replay: a genuine stranger click is refused (and audited) once; the same bytes again are not processed.
    const genuine = await h.sender.blockAction({ ...click, user: STRANGER });
    expect(genuine.status).toBe(200);
    await vi.waitFor(() => expect(h.auditRows('approval.refused')).toHaveLength(1));
    expect((await h.sender.replay(genuine.request)).status).toBe(401);
    expect((await h.sender.replay(genuine.request)).status).toBe(401);

    await new Promise((r) => setTimeout(r, 50));
    expect(h.auditRows('approval.refused')).toHaveLength(1);
    expect(h.slack.callsOf('chat.postEphemeral')).toHaveLength(1);
    expect(status(id)).toBe('pending');
    expect(h.auditRows('approval.decided')).toHaveLength(0);

    // The genuine owner click, correctly signed and fresh, still works.
    expect((await h.sender.blockAction(click)).status).toBe(200);
    await vi.waitFor(() => expect(status(id)).toBe('approved'));
  });
});
