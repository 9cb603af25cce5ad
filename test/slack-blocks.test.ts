import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRecord } from '../src/approvals/types.ts';
import { redact } from '../src/audit/index.ts';
import { silentLogger } from '../src/logger.ts';
import { buildAlertMessage } from '../src/slack/blocks/alert.ts';
import {
  buildApprovalCard,
  buildArgumentsThread,
  buildOutcomeReply,
  statusLine,
} from '../src/slack/blocks/approval-card.ts';
import { THREAD_MAX_MESSAGES } from '../src/slack/blocks/approval-arguments.ts';
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
    expect(statusLine(record({ status: 'rejected', decidedBy: 'U0APP2', decisionReason: 'wrong <customer>' }))).toBe(
      ':no_entry: *Rejected* by <@U0APP2>: wrong &lt;customer&gt;',
    );
    expect(statusLine(record({ status: 'expired' }))).toContain('*Expired*');
    expect(statusLine(record({ status: 'cancelled', decisionReason: 'agents halted' }))).toBe(
      ':octagonal_sign: *Cancelled*: agents halted',
    );
    expect(statusLine(record({ status: 'abandoned', decisionReason: 'Warden restarted' }))).toBe(
      ':warning: *Abandoned* (Warden restarted)',
    );
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
    expect(
      validateBlocks(
        buildAlertMessage({ kind: 'anomaly', severity: 'critical', agent: huge, text: huge, detail: { huge } }).blocks,
        'message',
      ),
    ).toEqual([]);
    expect(buildApprovalCard(big).text.length).toBeLessThanOrEqual(SlackLimits.messageText);
    // Slack also refuses a message whose blocks hold too much text in total (msg_blocks_too_long).
    expect(blockText(buildApprovalCard(big).blocks)).toBeLessThanOrEqual(SlackLimits.messageBlocksTextSoft);
    expect(blockText(buildApprovalCard({ ...big, status: 'pending' }).blocks)).toBeLessThanOrEqual(
      SlackLimits.messageBlocksTextSoft,
    );
    const thread = buildArgumentsThread({ ...big, status: 'pending' });
    expect(thread.length).toBeGreaterThan(0);
    for (const m of thread) {
      expect(validateBlocks(m.blocks, 'message')).toEqual([]);
      expect(blockText(m.blocks)).toBeLessThanOrEqual(SlackLimits.messageBlocksTextSoft);
    }
  });
});

/** Characters of text in blocks, all of it (what Slack's undocumented total counts). */
function blockText(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + blockText(v), 0);
  if (value && typeof value === 'object') return Object.values(value).reduce((n: number, v) => n + blockText(v), 0);
  return 0;
}

function sectionTexts(blocks: unknown[]): string[] {
  return (blocks as Array<{ type: string; text?: { text: string }; elements?: Array<{ text?: string }> }>).flatMap(
    (b) => [
      ...(b.text ? [b.text.text] : []),
      ...(b.elements ?? []).flatMap((e) => (typeof e.text === 'string' ? [e.text] : [])),
    ],
  );
}

/** The text inside the code fences of thread messages, unescaped: what a reader copies out. */
function threadJson(messages: Array<{ blocks: unknown[] }>): string {
  return messages
    .flatMap((m) => sectionTexts(m.blocks))
    .filter((t) => t.startsWith('```') && t.endsWith('```'))
    .map((t) => t.slice(3, -3))
    .join('')
    .replace(/`\u200b`\u200b`/g, '```')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

describe('approval card arguments: every key is visible, nothing is hidden silently', () => {
  const attack = { subject: 'Your refund', body: 'Hello '.repeat(500), to: 'attacker@evil.example' };

  it('shows a short key placed after a long value, with a loud warning, and the thread carries the full arguments', () => {
    const card = buildApprovalCard(record({ args: attack }));
    const texts = sectionTexts(card.blocks);
    const all = texts.join('\n');
    expect(all).toContain('`to`\n```attacker@evil.example```');
    expect(all).toContain('`subject`\n```Your refund```');
    expect(all).toContain('`body`\n```Hello Hello');
    expect(all).toContain('…(cut)```');
    // The warning sits right under the header and names what was cut and where the rest is.
    expect(card.blocks[0]!.type).toBe('header');
    const warning = texts[1]!;
    expect(warning).toContain(':rotating_light: *Not every argument is shown in full on this card.*');
    expect(warning).toContain('Values cut to fit: `body` (3,000 chars)');
    expect(warning).toContain('in this message’s thread. Read them before you approve.');
    expect(card.text).toContain('not every argument fits on the card');
    expect(validateBlocks(card.blocks, 'message')).toEqual([]);

    const thread = buildArgumentsThread(record({ args: attack }));
    expect(thread).toHaveLength(1);
    expect(JSON.parse(threadJson(thread))).toEqual(attack);
    expect(threadJson(thread)).toBe(JSON.stringify(attack, null, 2));
  });

  it('shows every key whole and posts nothing in the thread when everything fits', () => {
    const args = {
      ticket_id: 'T-1',
      to: 'ada@example.com',
      subject: 'Hi',
      body: 'Short.',
      amount: 12.5,
      tags: ['a', 'b'],
    };
    const card = buildApprovalCard(record({ args }));
    const all = sectionTexts(card.blocks).join('\n');
    expect(all).toContain('*Arguments* — 6 keys (secrets redacted)');
    for (const key of Object.keys(args)) expect(all).toContain(`\`${key}\`\n\`\`\``);
    expect(all).toContain('`amount`\n```12.5```');
    expect(all).not.toContain('Not every argument');
    expect(all).not.toContain('(cut)');
    expect(buildArgumentsThread(record({ args }))).toEqual([]);
  });

  it('flattens nested objects, so a short field inside a long object is not cut off either', () => {
    const args = { message: { body: 'x'.repeat(8000), to: 'attacker@evil.example' }, ticket_id: 'T-1' };
    const all = sectionTexts(buildApprovalCard(record({ args })).blocks).join('\n');
    expect(all).toContain('`message.to`\n```attacker@evil.example```');
    expect(all).toContain('`ticket_id`\n```T-1```');
    expect(all).toContain('Values cut to fit: `message.body` (8,000 chars)');
  });

  it('with too many keys for the card, says exactly how many are not shown and names them', () => {
    const args = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`field_${i}`, `value ${i} `.repeat(10)]));
    const card = buildApprovalCard(record({ args }));
    const texts = sectionTexts(card.blocks);
    const all = texts.join('\n');
    const shown = Object.keys(args).filter((k) => all.includes(`\`${k}\`\n\`\`\``));
    expect(shown.length).toBeGreaterThan(20);
    expect(shown.length).toBeLessThan(300);
    // The first keys in order, each with its own (cut) value.
    expect(shown).toEqual(Object.keys(args).slice(0, shown.length));
    const hidden = 300 - shown.length;
    expect(texts[1]).toContain(
      `*${hidden} of 300 keys are not shown at all*: \`field_${shown.length}\`, \`field_${shown.length + 1}\``,
    );
    expect(all).toContain(`*Arguments* — 300 keys, *only ${shown.length} shown*`);
    expect(validateBlocks(card.blocks, 'message')).toEqual([]);
    expect(blockText(card.blocks)).toBeLessThanOrEqual(SlackLimits.messageBlocksTextSoft);
    expect(JSON.parse(threadJson(buildArgumentsThread(record({ args }))))).toEqual(args);
  });

  it('the warning is never itself cut: long key names, many cut values and hidden keys together', () => {
    const args = Object.fromEntries(
      Array.from({ length: 400 }, (_, i) => [`${'<&>'.repeat(60)}_${i}`, '&'.repeat(2000)]),
    );
    const warning = sectionTexts(buildApprovalCard(record({ args })).blocks)[1]!;
    expect(warning.length).toBeLessThan(1500);
    expect(warning).not.toMatch(/…$/);
    expect(warning).toMatch(/\*\d+ of 400 keys are not shown at all\*/);
    expect(warning).toContain('Do not approve what you could not read.*');
    expect(warning).toMatch(/Values cut to fit: .* and \d+ more\n/);
    expect(warning).toMatch(/\n• \d+ key names are cut$/);
  });

  it('counts a JWT and a private key hidden inside an email body, straight from the redactor', () => {
    const body =
      'Hi, the session is eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXN0dWZm and the key:\n' +
      '-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\nand https://ann:pw1234@db.example.com';
    const card = buildApprovalCard(
      record({ args: redact({ to: 'ada@example.com', body }) as Record<string, unknown> }),
    );
    const all = sectionTexts(card.blocks).join('\n');
    expect(all).toContain(':warning: *3 values are hidden from you*: 3 credential-like text inside a value');
    expect(all).not.toContain('pw1234');
    expect(all).not.toContain('MIIEvQ');
  });

  it('lists redacted keys and says their values are sent but not shown', () => {
    const args = {
      to: 'ada@example.com',
      api_key: '[redacted]',
      auth: { password: '[redacted]', user: 'ada' },
      note: 'use Bearer [redacted] please',
    };
    const card = buildApprovalCard(record({ args }));
    const all = sectionTexts(card.blocks).join('\n');
    expect(all).toContain('`api_key` :lock: _redacted: sent to the tool, not shown_');
    expect(all).toContain(':lock: *Redacted* — sent to the tool but not shown here: `api_key`, `auth.password`');
    expect(all).toContain('sent to the tool unchanged: `note`');
    expect(all).toContain(
      ':warning: *3 values are hidden from you*: 2 under a secret-named key; 1 credential-like text inside a value',
    );
    expect(all).toContain('`auth.user`\n```ada```');
    // Redaction alone hides nothing the thread could add.
    expect(all).not.toContain('Not every argument');
    expect(buildArgumentsThread(record({ args }))).toEqual([]);
  });

  it('keeps agent-controlled keys and values from pinging, linking or breaking out of code', () => {
    const args = {
      '<!channel> `x`': '<!here> <@U123ABC> ``` *bold* <https://evil.example|ok>',
      to: 'a@b.example',
      long: '<!channel>'.repeat(1000),
    };
    const card = buildApprovalCard(record({ args }));
    const json = JSON.stringify(card.blocks);
    expect(json).not.toMatch(/<!channel>|<!here>|<@U123ABC>|<https:/);
    for (const t of sectionTexts(card.blocks)) {
      // Every code fence opened is closed: content cannot end one early.
      expect((t.match(/```/g) ?? []).length % 2).toBe(0);
    }
    const thread = buildArgumentsThread(record({ args }));
    expect(JSON.stringify(thread)).not.toMatch(/<!channel>|<!here>|<@U123ABC>/);
    expect(JSON.parse(threadJson(thread))).toEqual(args);
  });

  it('shows invisible and direction-changing characters instead of letting them disguise a value', () => {
    const args = { to: 'support@example.com\u202E\u200Bmoc.live@rekcatta' };
    const all = sectionTexts(buildApprovalCard(record({ args })).blocks).join('\n');
    expect(all).toContain('support@example.com⟦U+202E⟧⟦U+200B⟧moc.live@rekcatta');
    expect(all).not.toContain('\u202E');
  });

  it('a huge argument set posts at most a bounded thread, which says the rest is not shown', () => {
    const args = { blob: 'y'.repeat(400_000), to: 'a@b.example' };
    const card = buildApprovalCard(record({ args }));
    expect(sectionTexts(card.blocks)[1]).toContain('Do not approve what you could not read.');
    const thread = buildArgumentsThread(record({ args }));
    expect(thread).toHaveLength(THREAD_MAX_MESSAGES);
    const last = sectionTexts(thread.at(-1)!.blocks).at(-1)!;
    expect(last).toContain('*The rest is not posted*');
    for (const m of thread) expect(validateBlocks(m.blocks, 'message')).toEqual([]);
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
  const button = (over: Record<string, unknown>) => ({
    type: 'actions',
    elements: [{ type: 'button', action_id: 'a', text: { type: 'plain_text', text: 'ok' }, value: 'v', ...over }],
  });

  it.each([
    ['51 blocks', Array.from({ length: 51 }, () => section('x'))],
    ['a 3001-character section', [section('x'.repeat(3001))]],
    ['a 2001-character button value', [button({ value: 'v'.repeat(2001) })]],
    ['a 256-character action_id', [button({ action_id: 'a'.repeat(256) })]],
    ['a 76-character button text', [button({ text: { type: 'plain_text', text: 'b'.repeat(76) } })]],
    ['a 151-character header', [{ type: 'header', text: { type: 'plain_text', text: 'h'.repeat(151) } }]],
  ])('answers invalid_blocks for %s', async (_name, blocks) => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    await expect(client.chat.postMessage({ channel: 'C1', text: 't', blocks: blocks as never })).rejects.toMatchObject({
      data: { error: 'invalid_blocks' },
    });
  });

  it('accepts 50 blocks of 3000 characters, and rejects a bad token', async () => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    const res = await client.chat.postMessage({
      channel: 'C1',
      text: 't',
      blocks: Array.from({ length: 50 }, () => section('x'.repeat(3000))) as never,
    });
    expect(res.ok).toBe(true);
    const wrong = createSlackClient({ botToken: 'xoxb-nope', apiUrl: slack.apiUrl }, silentLogger());
    await expect(wrong.auth.test()).rejects.toMatchObject({ data: { error: 'invalid_auth' } });
  });

  it('supports the files.uploadV2 flow', async () => {
    const client = createSlackClient({ botToken: 'xoxb-limits', apiUrl: slack.apiUrl }, silentLogger());
    await client.files.uploadV2({
      channel_id: 'C1',
      filename: 'audit.csv',
      content: 'seq,event\n1,call.decided\n',
      title: 'Audit export',
    });
    const [id, upload] = [...slack.uploads.entries()][0]!;
    expect(upload.completed).toBe(true);
    expect(upload.bytes.toString('utf8')).toBe('seq,event\n1,call.decided\n');
    expect(slack.callsOf('files.completeUploadExternal')[0]!.args.files).toEqual([{ id, title: 'Audit export' }]);
  });
});
