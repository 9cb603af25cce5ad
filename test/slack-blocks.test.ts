import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRecord } from '../src/approvals/types.ts';
import { silentLogger } from '../src/logger.ts';
import { buildAlertMessage } from '../src/slack/blocks/alert.ts';
import { buildApprovalCard, buildOutcomeReply, statusLine } from '../src/slack/blocks/approval-card.ts';
import { SlackLimits } from '../src/slack/blocks/limits.ts';
import { buildRejectModal } from '../src/slack/blocks/reject-modal.ts';
import { codeBlock, escapeMrkdwn, slackDate, truncate, userMention } from '../src/slack/blocks/text.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { startSlackApiServer, validateBlocks, validateView, type SlackApiServer } from './support/slack-api-server.ts';

const T0 = Date.parse('2026-03-02T09:00:00Z');

function record(overrides: Partial<ApprovalRecord> = {}): ApprovalRecord {
  return {
    id: 'apr_11111111-2222-3333-4444-555555555555',
    callId: 'call-1',
    agent: 'support-triage',
    owner: 'U0OWNER1',
    server: 'tickets',
    tool: 'send_customer_email',
    args: { to: 'ada@example.com' },
    argsHash: 'ab'.repeat(32),
    rule: 'approval_required',
    consequence: 'customer-facing',
    requestReason: 'send_customer_email is in approval_required',
    approvers: ['U0OWNER1'],
    status: 'pending',
    requestedAt: T0,
    expiresAt: T0 + 900_000,
    ...overrides,
  };
}

describe('text helpers', () => {
  it('escape Slack control characters and keep mentions only for real user ids', () => {
    expect(escapeMrkdwn('<!channel> & <@U1|x>')).toBe('&lt;!channel&gt; &amp; &lt;@U1|x&gt;');
    expect(userMention('U0OWNER1')).toBe('<@U0OWNER1>');
    expect(userMention('<!here>')).toBe('&lt;!here&gt;');
    expect(userMention(undefined)).toBe('_nobody_');
  });

  it('truncate never exceeds the limit, never splits a surrogate pair or an escaped entity', () => {
    const samples = ['😀'.repeat(500), escapeMrkdwn('<&>'.repeat(400)), 'a'.repeat(5000), `x${'&amp;'.repeat(100)}`];
    for (const s of samples) {
      for (const max of [1, 2, 5, 17, 100, 999, 3000]) {
        const out = truncate(s, max);
        expect(out.length).toBeLessThanOrEqual(max);
        expect(out).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
        if (out.endsWith('…')) expect(out.slice(0, -1)).not.toMatch(/&(?:a|am|amp|l|lt|g|gt)$/);
      }
    }
    expect(truncate('short', 10)).toBe('short');
  });

  it('codeBlock keeps its fences within the limit and content cannot close the fence', () => {
    const out = codeBlock('```\n<!channel>\n```'.repeat(1000), 500);
    expect(out.length).toBeLessThanOrEqual(500);
    expect(out.startsWith('```')).toBe(true);
    expect(out.endsWith('```')).toBe(true);
    expect(out.slice(3, -3)).not.toContain('```');
    expect(out).not.toContain('<!channel>');
  });

  it('slackDate renders a date token with a UTC fallback', () => {
    expect(slackDate(T0)).toBe(`<!date^${T0 / 1000}^{date_short_pretty} {time}|2026-03-02 09:00 UTC>`);
  });
});

describe('approval card states (redrawn from the stored record)', () => {
  it('says who decided, when, and why, for every final state', () => {
    expect(statusLine(record({ status: 'approved', decidedBy: 'U0OWNER1', decidedAt: T0 + 60_000 }))).toBe(
      `:white_check_mark: *Approved* by <@U0OWNER1> at ${slackDate(T0 + 60_000)}`,
    );
    expect(statusLine(record({ status: 'rejected', decidedBy: 'U0APP2', decisionReason: 'wrong <customer>' }))).toBe(':no_entry: *Rejected* by <@U0APP2>: wrong &lt;customer&gt;');
    expect(statusLine(record({ status: 'expired' }))).toContain('*Expired*');
    expect(statusLine(record({ status: 'cancelled', decisionReason: 'agents halted' }))).toBe(':octagonal_sign: *Cancelled*: agents halted');
    expect(statusLine(record({ status: 'abandoned', decisionReason: 'Warden restarted' }))).toBe(':warning: *Abandoned* (Warden restarted)');
    expect(statusLine(record({ status: 'failed', decisionReason: 'Slack down' }))).toBe(':x: *Failed*: Slack down');
  });

  it('only a pending card has buttons', () => {
    for (const status of ['approved', 'rejected', 'expired', 'cancelled', 'abandoned', 'failed'] as const) {
      const card = buildApprovalCard(record({ status, decidedBy: 'U0OWNER1', decidedAt: T0 }));
      expect(card.blocks.some((b) => b.type === 'actions')).toBe(false);
      expect(validateBlocks(card.blocks, 'message')).toEqual([]);
    }
    expect(buildApprovalCard(record()).blocks.filter((b) => b.type === 'actions')).toHaveLength(1);
  });

  it('every builder output passes the Block Kit limits, whatever the input size', () => {
    const huge = 'Z'.repeat(50_000);
    const big = record({
      agent: huge,
      server: huge,
      tool: huge,
      callId: huge,
      requestReason: huge,
      args: { a: huge, b: Array.from({ length: 5000 }, (_, i) => i) },
      owner: huge,
      status: 'rejected',
      decidedBy: 'U0X',
      decisionReason: huge,
    });
    expect(validateBlocks(buildApprovalCard(big).blocks, 'message')).toEqual([]);
    expect(validateBlocks(buildApprovalCard({ ...big, status: 'pending' }).blocks, 'message')).toEqual([]);
    expect(validateBlocks(buildOutcomeReply(big, { ok: false, summary: huge }).blocks, 'message')).toEqual([]);
    expect(validateView(buildRejectModal(big, { approvalId: big.id, channel: 'C1', messageTs: '1.2' }))).toEqual([]);
    expect(validateBlocks(buildAlertMessage({ kind: 'anomaly', severity: 'critical', agent: huge, text: huge, detail: { huge } }).blocks, 'message')).toEqual([]);
    expect(buildApprovalCard(big).text.length).toBeLessThanOrEqual(SlackLimits.messageText);
  });
});

describe('local Slack API enforces the limits (so the tests above mean something)', () => {
  let slack: SlackApiServer;
  beforeAll(async () => {
    slack = await startSlackApiServer({ botToken: 'xoxb-limits' });
  });
  afterAll(async () => {
    await slack.close();
  });

  const section = (text: string) => ({ type: 'section', text: { type: 'mrkdwn', text } });
  const button = (over: Record<string, unknown>) => ({ type: 'actions', elements: [{ type: 'button', action_id: 'a', text: { type: 'plain_text', text: 'ok' }, value: 'v', ...over }] });

  it.each([
    ['51 blocks', Array.from({ length: 51 }, () => section('x'))],
    ['a 3001-character section', [section('x'.repeat(3001))]],
    ['a 2001-character button value', [button({ value: 'v'.repeat(2001) })]],
    ['a 256-character action_id', [button({ action_id: 'a'.repeat(256) })]],
    ['a 76-character button text', [button({ text: { type: 'plain_text', text: 'b'.repeat(76) } })]],
    ['a 151-character header', [{ type: 'header', text: { type: 'plain_text', text: 'h'.repeat(151) } }]],
  ])('answers invalid_blocks for %s', async (_name, blocks) => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    await expect(client.chat.postMessage({ channel: 'C1', text: 't', blocks: blocks as never })).rejects.toMatchObject({ data: { error: 'invalid_blocks' } });
  });

  it('accepts 50 blocks of 3000 characters, and rejects a bad token', async () => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    const res = await client.chat.postMessage({ channel: 'C1', text: 't', blocks: Array.from({ length: 50 }, () => section('x'.repeat(3000))) as never });
    expect(res.ok).toBe(true);
    const wrong = createSlackClient({ botToken: 'xoxb-nope', apiUrl: slack.apiUrl }, silentLogger());
    await expect(wrong.auth.test()).rejects.toMatchObject({ data: { error: 'invalid_auth' } });
  });

  it('supports the files.uploadV2 flow', async () => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    await client.files.uploadV2({ channel_id: 'C1', filename: 'audit.csv', content: 'seq,event\n1,call.decided\n', title: 'Audit export' });
    const [id, upload] = [...slack.uploads.entries()][0]!;
    expect(upload.completed).toBe(true);
    expect(upload.bytes.toString('utf8')).toBe('seq,event\n1,call.decided\n');
    expect(slack.callsOf('files.completeUploadExternal')[0]!.args.files).toEqual([{ id, title: 'Audit export' }]);
  });
});
