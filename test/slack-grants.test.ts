import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ApprovalOutcome } from '../src/approvals/types.ts';
import { ManualClock } from './support/manual-clock.ts';
import type { RecordedCall } from './support/slack-api-server.ts';
import {
  approvalIdOf,
  CHANNEL,
  heldCall,
  OWNER,
  startSlackHarness,
  STRANGER,
  TEST_POLICY,
  type SlackHarness,
} from './support/slack-harness.ts';

/**
 * "Approve for 15 min" from the card, through real signed HTTP into the Bolt
 * receiver and the local Slack Web API: the grant is created, the next call
 * of that tool is approved without a card, and after the grant expires (the
 * clock moved on) a card is posted again.
 */

const START = Date.parse('2026-03-02T09:00:00Z');
const MIN = 60_000;
let h: SlackHarness;
let clock: ManualClock;

beforeAll(async () => {
  clock = new ManualClock(START);
  h = await startSlackHarness({
    clock,
    policyYaml: TEST_POLICY.replace(
      '    approval_timeout: 15m\n',
      '    approval_timeout: 15m\n    grants: { max: 1h }\n',
    ),
  });
});
afterAll(async () => {
  await h?.close();
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
  await h.slack.waitForCall('chat.postMessage', () => h.slack.callsOf('chat.postMessage').length > before);
  const posted = h.slack.callsOf('chat.postMessage')[before]!;
  const id = approvalIdOf(posted);
  await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBeDefined());
  return { outcome, card: posted, id, ts: posted.response!.ts as string };
}

function buttons(call: RecordedCall): { action_id: string; text: string; value: string }[] {
  const actions = (
    call.args.blocks as Array<{
      type: string;
      elements?: Array<{ action_id: string; text: { text: string }; value: string }>;
    }>
  ).find((b) => b.type === 'actions');
  return (actions?.elements ?? []).map((e) => ({ action_id: e.action_id, text: e.text.text, value: e.value }));
}

describe('grants from the card', () => {
  it('offers Approve once / for 15 min / for 1 h; a click grants, the next call needs no card, expiry brings it back', async () => {
    const first = await hold();
    expect(buttons(first.card).map((b) => b.text)).toEqual([
      'Approve once',
      'Approve for 15 min',
      'Approve for 1 h',
      'Reject',
    ]);
    const for15 = buttons(first.card).find((b) => b.text === 'Approve for 15 min')!;
    expect(for15.value).toBe(`${first.id}|${15 * MIN}`);

    // Someone who may not decide gets nothing, and no grant.
    await h.sender.blockAction({
      user: STRANGER,
      actionId: for15.action_id,
      value: for15.value,
      channel: CHANNEL,
      messageTs: first.ts,
    });
    await vi.waitFor(() => expect(h.auditRows('approval.refused')).toHaveLength(1));
    expect(await h.approvals.grants.list()).toEqual([]);

    const res = await h.sender.blockAction({
      user: OWNER,
      actionId: for15.action_id,
      value: for15.value,
      channel: CHANNEL,
      messageTs: first.ts,
    });
    expect(res.status).toBe(200);
    await expect(first.outcome).resolves.toMatchObject({ status: 'approved', approver: OWNER });
    await vi.waitFor(async () => expect(await h.approvals.grants.list()).toHaveLength(1));
    expect(h.auditRows('grant.created')).toMatchObject([
      { decision: 'created', approver: OWNER, tool: 'send_customer_email' },
    ]);

    const cards = h.slack.callsOf('chat.postMessage').length;
    await expect(h.approvals.request(heldCall(h))).resolves.toMatchObject({ status: 'approved', approver: OWNER });
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(cards);
    expect(h.auditRows('grant.used')).toHaveLength(1);

    await clock.advanceTo(START + 16 * MIN);
    const later = await hold();
    expect(h.auditRows('grant.ended')).toMatchObject([{ decision: 'expired' }]);
    await h.sender.blockAction({
      user: OWNER,
      actionId: 'approval_approve',
      value: later.id,
      channel: CHANNEL,
      messageTs: later.ts,
    });
    await expect(later.outcome).resolves.toMatchObject({ status: 'approved' });
    expect(await h.approvals.grants.list()).toEqual([]);
  });

  it('a grant: never call shows Approve and Reject only', async () => {
    const never = await hold({ grantable: false });
    expect(buttons(never.card).map((b) => b.text)).toEqual(['Approve', 'Reject']);
    await h.sender.blockAction({
      user: OWNER,
      actionId: 'approval_approve',
      value: never.id,
      channel: CHANNEL,
      messageTs: never.ts,
    });
    await expect(never.outcome).resolves.toMatchObject({ status: 'approved' });
  });
});
