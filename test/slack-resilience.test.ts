import { afterEach, describe, expect, it, vi } from 'vitest';
import { verifyChain } from '../src/audit/index.ts';
import { SlackAlertSink } from '../src/slack/alert-sink.ts';
import { createSlackApp } from '../src/slack/app.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { silentLogger } from '../src/logger.ts';
import { openDb } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';
import { startSlackApiServer } from './support/slack-api-server.ts';
import {
  BOT_TOKEN,
  CHANNEL,
  ONCALL,
  OWNER,
  approvalIdOf,
  heldCall,
  startSlackHarness,
  type SlackHarness,
} from './support/slack-harness.ts';

const START = Date.parse('2026-03-02T09:00:00Z');
let h: SlackHarness | undefined;
let clock: ManualClock;

async function harness(): Promise<SlackHarness> {
  clock = new ManualClock(START);
  h = await startSlackHarness({ clock, startApp: false });
  return h;
}

afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('posting the card when Slack is in trouble', () => {
  it('waits exactly Retry-After when rate-limited, then posts the card', async () => {
    const h = await harness();
    h.slack.fail({ mode: 'ratelimited', retryAfter: 2, times: 1, methods: ['chat.postMessage'] });
    const outcome = h.approvals.request(heldCall(h));
    await h.slack.waitForCall('chat.postMessage');
    await new Promise((r) => setTimeout(r, 30));
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
    await clock.tick(1999);
    await new Promise((r) => setTimeout(r, 30));
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(1);
    await clock.tick(1);
    await vi.waitFor(() => expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2));
    const posted = h.slack.callsOf('chat.postMessage')[1]!;
    await vi.waitFor(() => expect(posted.response).toMatchObject({ ok: true }));
    const id = approvalIdOf(posted);
    await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBe(posted.response!.ts));
    expect(h.approvals.get(id)?.status).toBe('pending');
    await h.approvals.decide(id, OWNER, 'approve');
    expect((await outcome).status).toBe('approved');
  });

  it('waits out every Retry-After while the approval lasts, then fails closed with the reason', async () => {
    const h = await harness();
    h.slack.fail({ mode: 'ratelimited', retryAfter: 1, methods: ['chat.postMessage'] });
    const agent = { ...h.policy.agents['support-triage']!, approvalTimeoutMs: 5000 };
    const outcome = await clock.runUntil(h.approvals.request(heldCall(h, { callId: 'call-rl', agent })), {
      stepMs: 250,
    });
    expect(outcome.status).toBe('failed');
    expect(outcome.status !== 'approved' && outcome.reason).toBe(
      `failed: the approval card could not be posted: SLACK_UNAVAILABLE: posting the approval card (chat.postMessage): Slack rate-limited the request (Retry-After 1 s), and the wait would outlast the approval (expires ${new Date(START + 5000).toISOString()})`,
    );
    // Not three attempts and give up: one a second until a further wait would pass the expiry.
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(5);
    // Each retry came no sooner than the Retry-After (times on the fake clock).
    const at = h.slack.callsOf('chat.postMessage').map((c) => c.at - START);
    for (let i = 1; i < at.length; i++) expect(at[i]! - at[i - 1]!).toBeGreaterThanOrEqual(1000);
    // Nothing lost from the audit: the request and its failure, chained.
    expect(h.auditRows().map((r) => [r.event, r.decision])).toEqual([
      ['approval.requested', 'pending'],
      ['approval.decided', 'failed'],
    ]);
    expect(h.auditRows('approval.decided')[0]!.reason).toContain('rate-limited');
    expect(verifyChain(h.db).ok).toBe(true);
    expect(h.db.prepare('SELECT status FROM approvals').pluck().all()).toEqual(['failed']);
  });

  it('waits a long Retry-After that ends before the expiry; refuses at once one that would outlast it', async () => {
    const h = await harness();
    h.slack.fail({ mode: 'ratelimited', retryAfter: 120, times: 1, methods: ['chat.postMessage'] });
    const posted = h.approvals.request(heldCall(h));
    await clock.runUntil(
      vi.waitFor(() => expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2), { timeout: 20_000 }),
      { stepMs: 1000 },
    );
    const at = h.slack.callsOf('chat.postMessage').map((c) => c.at - START);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(120_000);
    const id = approvalIdOf(h.slack.callsOf('chat.postMessage')[1]!);
    await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBeDefined());
    await h.approvals.decide(id, OWNER, 'approve');
    expect((await posted).status).toBe('approved');

    h.slack.fail({ mode: 'ratelimited', retryAfter: 120, times: 1, methods: ['chat.postMessage'] });
    const agent = { ...h.policy.agents['support-triage']!, approvalTimeoutMs: 60_000 };
    const outcome = await h.approvals.request(heldCall(h, { agent }));
    expect(outcome.status !== 'approved' && outcome.reason).toContain(
      'Retry-After 120 s), and the wait would outlast the approval',
    );
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
  });

  it('fails closed when Slack is unreachable, after backing off', async () => {
    const h = await harness();
    h.slack.fail({ mode: 'down' });
    const outcome = await clock.runUntil(h.approvals.request(heldCall(h)), { stepMs: 250 });
    expect(outcome.status).toBe('failed');
    expect(outcome.status !== 'approved' && outcome.reason).toMatch(
      /Slack is unreachable \(.+\); gave up after 3 attempts/,
    );
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
    expect(h.auditRows('approval.decided')).toMatchObject([{ decision: 'failed' }]);
  });

  it('retries a 5xx and gives up at once on Slack’s own refusals', async () => {
    const h = await harness();
    h.slack.fail({ mode: 'http_error', status: 503, times: 1 });
    const ok = h.approvals.request(heldCall(h));
    await h.slack.waitForCall('chat.postMessage');
    // Move fake time only while waiting: the 1 s back-off is scheduled when the 503 has been read, which a busy machine may delay.
    await clock.runUntil(
      vi.waitFor(() => expect(h.slack.callsOf('chat.postMessage')).toHaveLength(2)),
      { stepMs: 250 },
    );
    const id = approvalIdOf(h.slack.callsOf('chat.postMessage')[1]!);
    await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBeDefined());

    h.slack.fail({ mode: 'error', error: 'channel_not_found', methods: ['chat.postMessage'] });
    const refused = await h.approvals.request(heldCall(h));
    expect(refused.status !== 'approved' && refused.reason).toContain('Slack refused the request: channel_not_found');
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(3);
    await h.approvals.decide(id, OWNER, 'approve');
    expect((await ok).status).toBe('approved');
  });

  it('a card that cannot be redrawn does not change the decision', async () => {
    const h = await harness();
    const outcome = h.approvals.request(heldCall(h));
    const id = approvalIdOf(await h.slack.waitForCall('chat.postMessage'));
    await vi.waitFor(() => expect(h.approvals.get(id)?.messageTs).toBeDefined());
    h.slack.fail({ mode: 'error', error: 'message_not_found', methods: ['chat.update'] });
    const result = await h.approvals.decide(id, OWNER, 'approve');
    expect(result.ok).toBe(true);
    expect((await outcome).status).toBe('approved');
    expect(h.slack.callsOf('chat.update')).toHaveLength(1);
  });
});

describe('SlackAlertSink', () => {
  it('posts to the agent’s channel and on-call, and never throws when Slack is down', async () => {
    const h = await harness();
    const client = createSlackClient({ botToken: BOT_TOKEN, apiUrl: h.slack.apiUrl }, silentLogger(), {
      timeout: 2000,
    });
    const sink = new SlackAlertSink({ client, policy: () => h.policy, clock, retry: { maxAttempts: 1 } });
    sink.alert({
      kind: 'denied',
      severity: 'warning',
      agent: 'support-triage',
      text: 'refused crm__refund_request <!channel>',
      detail: { token: 'xoxb-secret-1', tool: 'refund_request' },
    });
    await sink.idle();
    const posts = h.slack.callsOf('chat.postMessage');
    expect(posts.map((p) => p.args.channel).sort()).toEqual([CHANNEL, ONCALL].sort());
    const text = JSON.stringify(posts[0]!.args.blocks);
    expect(text).toContain('refused crm__refund_request &lt;!channel&gt;');
    expect(text).not.toContain('xoxb-secret-1');

    h.slack.fail({ mode: 'down' });
    expect(() =>
      sink.alert({ kind: 'anomaly', severity: 'critical', agent: 'support-triage', text: 'too many calls' }),
    ).not.toThrow();
    await sink.idle();
    expect(h.slack.callsOf('chat.postMessage')).toHaveLength(4);
  });
});

describe('createSlackApp', () => {
  it('uses Socket Mode when an app token is set, the HTTP receiver otherwise, and names bad config', async () => {
    const slack = await startSlackApiServer({ botToken: BOT_TOKEN });
    try {
      const base = {
        approvals: {} as never,
        policy: () => ({}) as never,
        audit: {} as never,
        auditReader: {} as never,
        control: {} as never,
        logger: silentLogger(),
        db: openDb(':memory:'),
      };
      expect(
        createSlackApp({
          ...base,
          config: { botToken: BOT_TOKEN, signingSecret: '', appToken: 'xapp-1-test', port: 0 },
        }).mode,
      ).toBe('socket');
      expect(createSlackApp({ ...base, config: { botToken: BOT_TOKEN, signingSecret: 's', port: 0 } }).mode).toBe(
        'http',
      );
      expect(() => createSlackApp({ ...base, config: { botToken: BOT_TOKEN, signingSecret: '', port: 0 } })).toThrow(
        /SLACK_SIGNING_SECRET is required/,
      );
      expect(() => createSlackApp({ ...base, config: { botToken: '', signingSecret: 's', port: 0 } })).toThrow(
        /slack\.botToken: SLACK_BOT_TOKEN is required/,
      );
      expect(() =>
        createSlackApp({ ...base, config: { botToken: 'x', signingSecret: 's', port: 0, apiUrl: 'not a url' } }),
      ).toThrow(/SLACK_API_URL must be a URL/);
      // Start-up with a token Slack rejects fails with a clear error instead of an unhandled rejection.
      const bad = createSlackApp({
        ...base,
        config: { botToken: 'xoxb-wrong', signingSecret: 's', port: 0, apiUrl: slack.apiUrl },
        host: '127.0.0.1',
      });
      await expect(bad.start()).rejects.toThrow(/SLACK_UNAVAILABLE|auth\.test/);
      expect(slack.callsOf('auth.test')).toHaveLength(1);
    } finally {
      await slack.close();
    }
  });
});
