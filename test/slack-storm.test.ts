import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ApprovalOutcome } from '../src/approvals/index.ts';
import { ManualClock } from './support/manual-clock.ts';
import { CHANNEL, approvalIdOf, heldCall, startSlackHarness, type SlackHarness } from './support/slack-harness.ts';

// Slack takes about one chat.postMessage a second per channel; the local Slack API enforces
// that here with 429 + Retry-After, on the test's clock.
const START = Date.parse('2026-03-02T09:00:00Z');
let h: SlackHarness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function storm(maxPending: number, calls: number) {
  const clock = new ManualClock(START);
  h = await startSlackHarness({ clock, startApp: false, slackApi: { postIntervalPerChannelMs: 1000 } });
  const harness = h;
  const agent = { ...harness.policy.agents['support-triage']!, maxPending };
  const outcomes: Promise<ApprovalOutcome>[] = [];
  // All within one second of each other.
  for (let i = 0; i < calls; i++) {
    outcomes.push(harness.approvals.request(heldCall(harness, { agent, callId: `storm-${i}` })));
    if (i % 40 === 39) await clock.tick(200);
  }
  return { clock, harness, outcomes };
}

const accepted = (h: SlackHarness) =>
  h.slack.callsOf('chat.postMessage').filter((c) => c.args.channel === CHANNEL && c.httpStatus === 200);

describe('an approval storm', () => {
  it('posts every card of 200 held calls in one second, at Slack’s rate, dropping none', async () => {
    const { clock, harness } = await storm(500, 200);
    await clock.runUntil(
      vi.waitFor(() => expect(accepted(harness)).toHaveLength(200), { timeout: 120_000, interval: 20 }),
      { stepMs: 500 },
    );
    // One card per call, each its own approval, each still waiting for a human.
    const ids = accepted(harness).map(approvalIdOf);
    expect(new Set(ids).size).toBe(200);
    await vi.waitFor(() => expect(ids.every((id) => harness.approvals.get(id)?.messageTs)).toBe(true));
    expect(ids.map((id) => harness.approvals.get(id)?.status)).toEqual(Array(200).fill('pending'));
    expect(harness.auditRows('approval.decided')).toHaveLength(0);
    // Paced, not hammered: accepted posts a second apart, and hardly any 429s on the way.
    const at = accepted(harness).map((c) => c.at);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(1000);
    const limited = harness.slack.callsOf('chat.postMessage').filter((c) => c.httpStatus === 429);
    expect(limited.length).toBeLessThan(5);
    // A card that waited in the queue says so, next to its (unchanged) expiry.
    const last = accepted(harness).at(-1)!;
    expect(JSON.stringify(last.args.blocks)).toMatch(/posted \d+ s after the request/);
    expect(JSON.stringify(accepted(harness)[0]!.args.blocks)).not.toMatch(/posted \d+ s after the request/);
  }, 180_000);

  it('refuses the calls over max_pending at once, with the reason, and posts the rest', async () => {
    const { clock, harness, outcomes } = await storm(20, 200);
    const refused = (await Promise.all(outcomes.slice(20))) as Array<ApprovalOutcome & { reason?: string }>;
    expect(refused.every((o) => o.status === 'failed')).toBe(true);
    expect(refused[0]!.reason).toContain('already has 20 calls waiting for approval (max_pending: 20)');
    await clock.runUntil(
      vi.waitFor(() => expect(accepted(harness)).toHaveLength(20), { timeout: 60_000, interval: 20 }),
      { stepMs: 500 },
    );
    expect(new Set(accepted(harness).map(approvalIdOf)).size).toBe(20);
    expect(harness.approvals.pending()).toHaveLength(20);
  }, 120_000);
});
