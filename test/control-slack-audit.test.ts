import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_NEXT_PAGE_ACTION_ID } from '../src/slack/blocks/audit.ts';
import { controlPolicyText } from './support/control-env.ts';
import { dmChannelId, validateBlocks } from './support/slack-api-server.ts';
import { startSlackHarness, type SlackHarness } from './support/slack-harness.ts';
import {
  blocksText,
  clickButton,
  ONCALL_USER,
  sendSlashCommand,
  slackControlPolicy,
  startControlSlack,
  STRANGER,
  type ControlSlack,
} from './support/control-slack.ts';

let c: ControlSlack;
const COMPLIANCE = 'U0AUDITOR';

beforeAll(async () => {
  // Auditors-only mode: control.auditors lists the compliance user alone.
  c = await startControlSlack({ policyText: slackControlPolicy(`auditors: [${COMPLIANCE}]`) });
  const now = Date.now();
  // 45 decisions for the worker, a few for another agent, and a long reason that must be cut, not refused.
  for (let i = 0; i < 45; i++) {
    await c.audit.append({
      event: 'call.decided',
      callId: `w-${i}`,
      agent: 'worker',
      owner: 'U0OWNER',
      server: 'slow',
      tool: 'sleep',
      args: { ms: i },
      decision: i % 9 === 0 ? 'deny' : 'allow',
      reason: i === 44 ? 'x'.repeat(5000) : undefined,
      ts: now - (45 - i) * 1000,
    });
  }
  for (let i = 0; i < 3; i++)
    await c.audit.append({
      event: 'call.decided',
      callId: `t-${i}`,
      agent: 'support-triage',
      server: 'slow',
      tool: 'sleep',
      decision: 'approve',
      ts: now - 500,
    });
});
afterAll(async () => {
  await c?.close();
});

type Block = {
  type: string;
  text?: { text: string };
  accessory?: { action_id: string; value: string };
  elements?: { action_id: string; value: string }[];
};

describe('/audit over signed Slack requests', () => {
  it('answers ephemerally with a readable page; each row leads to the agent and its owner; Next page carries the cursor', async () => {
    const s = await c.command(COMPLIANCE, '/audit', 'agent:worker event:call.decided');
    const reply = await s.next();
    expect(reply.args.response_type).toBe('ephemeral');
    const blocks = reply.args.blocks as Block[];
    expect(validateBlocks(blocks, 'message')).toEqual([]);
    const rows = blocks.filter((b) => b.type === 'section');
    expect(rows).toHaveLength(20);
    // Newest first; the 5000-char reason was cut to fit a section.
    expect(rows[0]!.text!.text).toMatch(/`call\.decided` `slow__sleep` → \*allow\*/);
    expect(rows[0]!.text!.text).toMatch(/agent \*worker\* · owner <@U0OWNER>/);
    expect(rows[0]!.text!.text.length).toBeLessThanOrEqual(3000);
    expect(rows[0]!.accessory).toMatchObject({ value: 'worker' });
    expect(rows[0]!.accessory!.action_id).toMatch(/^audit_agent_status:\d+$/);

    // Page 2 and 3 through the button.
    const seen = new Set(rows.map((r) => r.text!.text.slice(0, 12)));
    let next = blocks.find((b) => b.type === 'actions')!.elements![0]!;
    for (const [page, expected] of [
      [2, 20],
      [3, 5],
    ] as const) {
      const url = c.h.slack.responseUrl();
      await c.h.sender.blockAction({
        user: COMPLIANCE,
        actionId: next.action_id,
        value: next.value,
        blockId: 'audit_pagination',
        responseUrl: url,
      });
      const id = url.slice(url.lastIndexOf('/') + 1);
      const p = await c.h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === id);
      expect(p.args.replace_original).toBe(true);
      const pb = p.args.blocks as Block[];
      expect(validateBlocks(pb, 'message')).toEqual([]);
      expect(blocksText(pb)).toContain(`Audit — page ${page}`);
      const sections = pb.filter((b) => b.type === 'section');
      expect(sections).toHaveLength(expected);
      for (const r of sections) {
        const key = r.text!.text.slice(0, 12);
        expect(seen.has(key)).toBe(false);
        seen.add(key);
      }
      const actions = pb.find((b) => b.type === 'actions');
      if (page === 2) next = actions!.elements![0]!;
      else expect(actions).toBeUndefined();
    }
    expect(seen.size).toBe(45);
  });

  it('the row button opens the agent status view (second hop: agent, owner, state)', async () => {
    const s = await c.command(COMPLIANCE, '/audit', 'agent:worker limit:1');
    const row = ((await s.next()).args.blocks as Block[]).find((b) => b.type === 'section')!;
    const url = c.h.slack.responseUrl();
    await c.h.sender.blockAction({
      user: COMPLIANCE,
      actionId: row.accessory!.action_id,
      value: row.accessory!.value,
      blockId: 'x',
      responseUrl: url,
    });
    const id = url.slice(url.lastIndexOf('/') + 1);
    const status = await c.h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === id);
    expect(status.args.replace_original).toBe(false);
    const text = blocksText(status.args.blocks);
    expect(text).toMatch(/\*worker\* · owner <@U0OWNER>/);
    expect(text).toMatch(/calls \(1h\): \*45\* · denied \(1h\): \*5\*/);
  });

  it("format:csv goes to the requester's DM with Warden, never to the channel the command came from", async () => {
    const before = c.h.slack.callsOf('files.completeUploadExternal').length;
    const s = await c.command(COMPLIANCE, '/audit', 'agent:support-triage format:csv', 'C0COMPLY');
    const reply = await s.next();
    expect(reply.args.response_type).toBe('ephemeral');
    expect(reply.args.text).toBe(
      'Sent 3 audit row(s) as CSV to your direct messages with Warden (not to this channel).',
    );
    const open = await c.h.slack.waitForCall('conversations.open', (x) => x.args.users === COMPLIANCE);
    expect(open.response).toMatchObject({ ok: true, channel: { id: dmChannelId(COMPLIANCE) } });
    const done = await c.h.slack.waitForCall(
      'files.completeUploadExternal',
      (x) => x.args.channel_id === dmChannelId(COMPLIANCE),
    );
    expect(done.response?.ok).toBe(true);
    // Exactly one upload for this command, and none to the channel (or anywhere but the DM).
    const uploads = c.h.slack.callsOf('files.completeUploadExternal').slice(before);
    expect(uploads.map((u) => u.args.channel_id)).toEqual([dmChannelId(COMPLIANCE)]);
    const file = [...c.h.slack.uploads.values()].find((u) => u.completed && u.channel === dmChannelId(COMPLIANCE))!;
    expect(file.filename).toMatch(/^warden-audit-.*\.csv$/);
    expect([...c.h.slack.uploads.values()].some((u) => u.channel === 'C0COMPLY')).toBe(false);
    expect(
      c.h.slack
        .callsOf('chat.postMessage')
        .some((m) => m.args.channel === 'C0COMPLY' && /audit/i.test(String(m.args.text))),
    ).toBe(false);
    const lines = file.bytes.toString('utf8').trim().split(/\r?\n/);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/seq/);
    expect(lines.slice(1).every((l) => l.includes('support-triage'))).toBe(true);
  });

  it('records who read what: each answered query, page and export is an audit.queried row', async () => {
    const readsBefore = c.h.db
      .prepare("SELECT count(*) FROM audit WHERE event = 'audit.queried'")
      .pluck()
      .get() as number;
    const s = await c.command(COMPLIANCE, '/audit', 'agent:worker limit:30');
    const blocks = (await s.next()).args.blocks as Block[];
    const next = blocks.find((b) => b.type === 'actions')!.elements![0]!;
    const url = c.h.slack.responseUrl();
    await c.h.sender.blockAction({
      user: COMPLIANCE,
      actionId: next.action_id,
      value: next.value,
      blockId: 'audit_pagination',
      responseUrl: url,
    });
    await c.h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === url.slice(url.lastIndexOf('/') + 1));
    const e = await c.command(COMPLIANCE, '/audit', 'agent:support-triage format:csv', 'C0COMPLY');
    await e.next();
    await expect
      .poll(() => c.h.db.prepare("SELECT count(*) FROM audit WHERE event = 'audit.queried'").pluck().get() as number)
      .toBe(readsBefore + 3);
    const reads = (
      c.h.db.prepare("SELECT decision, detail FROM audit WHERE event = 'audit.queried' ORDER BY seq").all() as {
        decision: string;
        detail: string;
      }[]
    )
      .slice(readsBefore)
      .map((r) => ({ decision: r.decision, ...(JSON.parse(r.detail) as Record<string, unknown>) }));
    expect(reads).toEqual([
      expect.objectContaining({
        decision: 'query',
        query: 'agent:worker limit:30',
        rows: 20,
        actor: expect.stringContaining(COMPLIANCE),
      }),
      expect.objectContaining({
        decision: 'next_page',
        query: 'agent:worker limit:30',
        rows: 10,
        before: expect.any(Number),
        actor: expect.stringContaining(COMPLIANCE),
      }),
      expect.objectContaining({
        decision: 'export',
        query: 'agent:support-triage format:csv',
        rows: 3,
        channel: dmChannelId(COMPLIANCE),
      }),
    ]);
  });

  it('format:csv uploads nothing when the DM cannot be opened', async () => {
    const before = c.h.slack.callsOf('files.getUploadURLExternal').length;
    c.h.slack.fail({ mode: 'error', error: 'missing_scope', methods: ['conversations.open'], times: 1 });
    const s = await c.command(COMPLIANCE, '/audit', 'agent:worker format:csv', 'C0COMPLY');
    expect((await s.next()).args.text).toMatch(
      /^Could not open a direct message with you to send the CSV, so nothing was uploaded/,
    );
    expect(c.h.slack.callsOf('files.getUploadURLExternal').length).toBe(before);
  });

  it('a bad query answers with the reason and an example', async () => {
    const s = await c.command(COMPLIANCE, '/audit', 'colour:blue');
    const reply = await s.next();
    expect(reply.args.response_type).toBe('ephemeral');
    const text = blocksText(reply.args.blocks);
    expect(text).toMatch(/colour/);
    expect(text).toMatch(/Example: `\/audit agent:support-triage tool:send_customer_email/);
  });
});

const refusals = (db: { prepare: SlackHarness['db']['prepare'] }) =>
  (
    db.prepare(`SELECT * FROM audit WHERE event = 'audit.refused' ORDER BY seq`).all() as {
      decision: string;
      reason: string;
      detail: string;
    }[]
  ).map((r) => ({
    ...r,
    detail: JSON.parse(r.detail) as Record<string, unknown>,
  }));

describe('/audit with control.auditors set: only auditors, every entry point re-checked', () => {
  it('refuses a stranger, an agent owner and a halter ephemerally, audits each refusal, and shows no rows', async () => {
    const before = refusals(c.db).length;
    for (const user of [STRANGER, 'U0OWNER', ONCALL_USER]) {
      const s = await c.command(user, '/audit', 'agent:worker since:7d', 'C0PUBLIC');
      const reply = await s.next();
      expect(reply.args.response_type).toBe('ephemeral');
      expect(reply.args.text).toBe(`Not allowed: <@${user}> is not in control.auditors`);
      expect(validateBlocks(reply.args.blocks, 'message')).toEqual([]);
      const text = blocksText(reply.args.blocks);
      expect(text).not.toMatch(/agent \*worker\*|#\d+/);
    }
    const rows = refusals(c.db).slice(before);
    expect(rows.map((r) => r.detail.actor)).toEqual([`slack:${STRANGER}`, 'slack:U0OWNER', `slack:${ONCALL_USER}`]);
    for (const r of rows) {
      expect(r).toMatchObject({ decision: 'forbidden', reason: expect.stringMatching(/is not in control\.auditors/) });
      expect(r.detail).toMatchObject({ action: 'query', query: 'agent:worker since:7d', channel: 'C0PUBLIC' });
    }
  });

  it("refuses a stranger's format:csv before anything is uploaded or a DM opened", async () => {
    const opens = c.h.slack.callsOf('conversations.open').length;
    const uploads = c.h.slack.callsOf('files.getUploadURLExternal').length;
    const s = await c.command(STRANGER, '/audit', 'format:csv', 'C0PUBLIC');
    expect((await s.next()).args.text).toMatch(/^Not allowed: /);
    expect(c.h.slack.callsOf('conversations.open').length).toBe(opens);
    expect(c.h.slack.callsOf('files.getUploadURLExternal').length).toBe(uploads);
    expect(refusals(c.db).at(-1)!.detail).toMatchObject({ action: 'export', actor: `slack:${STRANGER}` });
  });

  it("a Next page value taken from an auditor's results, or forged outright, is refused for a stranger and audited", async () => {
    const s = await c.command(COMPLIANCE, '/audit', 'agent:worker');
    const blocks = (await s.next()).args.blocks as {
      type: string;
      elements?: { action_id: string; value: string }[];
    }[];
    const genuine = blocks.find((b) => b.type === 'actions')!.elements![0]!;
    expect(genuine.action_id).toBe(AUDIT_NEXT_PAGE_ACTION_ID);
    const forged = JSON.stringify({ q: '', before: 1_000_000, page: 2 });
    const before = refusals(c.db).length;
    for (const value of [genuine.value, forged]) {
      const p = await clickButton(c.h, STRANGER, AUDIT_NEXT_PAGE_ACTION_ID, value, 'audit_pagination');
      expect(p.args.replace_original).toBe(false);
      expect(p.args.text).toBe(`Not allowed: <@${STRANGER}> is not in control.auditors`);
      expect(blocksText(p.args.blocks)).not.toMatch(/agent \*worker\*/);
    }
    const rows = refusals(c.db).slice(before);
    expect(rows.map((r) => r.detail.action)).toEqual(['next_page', 'next_page']);
    expect(rows.every((r) => r.detail.actor === `slack:${STRANGER}`)).toBe(true);
    // The auditor's own click still pages.
    const ok = await clickButton(c.h, COMPLIANCE, AUDIT_NEXT_PAGE_ACTION_ID, genuine.value, 'audit_pagination');
    expect(ok.args.replace_original).toBe(true);
    expect(blocksText(ok.args.blocks)).toContain('Audit — page 2');
  });

  it('an Agent status click from a stranger is refused and audited', async () => {
    const p = await clickButton(c.h, STRANGER, 'audit_agent_status:1', 'worker');
    expect(p.args.text).toBe(`Not allowed: <@${STRANGER}> is not in control.auditors`);
    expect(blocksText(p.args.blocks)).not.toMatch(/owner <@U0OWNER>/);
    expect(refusals(c.db).at(-1)!.detail).toMatchObject({
      action: 'agent_status',
      actor: `slack:${STRANGER}`,
      agent: 'worker',
    });
  });
});

/**
 * No auditors: owners and approvers see their own agents' rows, listed
 * halters/resumers see all. A Slack harness alone (no gateway) is enough: the
 * rows are appended directly.
 */
describe('/audit with no auditors: owners and approvers are scoped to their agents', () => {
  const OWNER = 'U0OWNER'; // owns worker
  const TRIAGE_APPROVER = 'U0APPR1'; // approves support-triage
  let h: SlackHarness;
  type Block = {
    type: string;
    text?: { text: string };
    accessory?: { action_id: string; value: string };
    elements?: { action_id: string; value: string; text?: string }[];
  };
  const sections = (blocks: unknown) => (blocks as Block[]).filter((b) => b.type === 'section');
  const agentsOf = (blocks: unknown) => [
    ...new Set(sections(blocks).map((b) => /agent \*([^*]+)\*/.exec(b.text!.text)?.[1] ?? '-')),
  ];

  beforeAll(async () => {
    h = await startSlackHarness({
      policyYaml: controlPolicyText(`
  - agent: support-triage
    owner: U0TRIAGE
    approvers: [${TRIAGE_APPROVER}]
    mcp_scopes: { slow: [read] }
`),
    });
    const now = Date.now();
    for (let i = 0; i < 30; i++)
      await h.audit.append({
        event: 'call.decided',
        callId: `w-${i}`,
        agent: 'worker',
        owner: OWNER,
        server: 'slow',
        tool: 'sleep',
        decision: 'allow',
        ts: now - 60_000 + i,
      });
    // Newer than the worker's rows: an unscoped page 1 would be mostly these.
    for (let i = 0; i < 25; i++)
      await h.audit.append({
        event: 'call.decided',
        callId: `t-${i}`,
        agent: 'support-triage',
        owner: 'U0TRIAGE',
        server: 'slow',
        tool: 'sleep',
        args: { to: 'customer@example.com' },
        decision: 'allow',
        ts: now - 1000 + i,
      });
    await h.audit.append({ event: 'control.halt', decision: 'halted', reason: 'org-wide test halt', ts: now - 500 });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("an owner's unfiltered query returns only their agent's rows, full pages, through Next page too", async () => {
    const s = await sendSlashCommand(h, OWNER, '/audit', '');
    const blocks = (await s.next()).args.blocks as Block[];
    expect(validateBlocks(blocks, 'message')).toEqual([]);
    expect(blocksText(blocks)).toContain('Limited to the agents you own or approve: `worker`');
    // 20 rows on page 1 although 26 newer rows of others exist: the scope is in the SQL, not a display filter.
    expect(sections(blocks)).toHaveLength(20);
    expect(agentsOf(blocks)).toEqual(['worker']);
    const next = blocks.find((b) => b.type === 'actions')!.elements![0]!;
    const p2 = await clickButton(h, OWNER, next.action_id, next.value, 'audit_pagination');
    expect(sections(p2.args.blocks)).toHaveLength(10);
    expect(agentsOf(p2.args.blocks)).toEqual(['worker']);
    expect((p2.args.blocks as Block[]).find((b) => b.type === 'actions')).toBeUndefined();
  });

  it('naming another agent is refused (not answered with an empty page) and audited', async () => {
    const before = refusals(h.db).length;
    const s = await sendSlashCommand(h, OWNER, '/audit', 'agent:support-triage since:7d');
    const reply = await s.next();
    expect(reply.args.response_type).toBe('ephemeral');
    expect(reply.args.text).toBe(
      'Not allowed: you may audit only the agents you own or approve (`worker`); `agent:support-triage` is not one of them',
    );
    expect(agentsOf(reply.args.blocks)).toEqual(['-']);
    const rows = refusals(h.db).slice(before);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.detail).toMatchObject({
      action: 'query',
      actor: `slack:${OWNER}`,
      query: 'agent:support-triage since:7d',
    });
  });

  it("a forged Next page is re-scoped: another agent is refused, an open query still yields only the clicker's rows", async () => {
    const naming = await clickButton(
      h,
      OWNER,
      AUDIT_NEXT_PAGE_ACTION_ID,
      JSON.stringify({ q: 'agent:support-triage', before: 1_000_000, page: 2 }),
      'audit_pagination',
    );
    expect(naming.args.text).toMatch(/^Not allowed: you may audit only .*`agent:support-triage` is not one of them$/);
    expect(refusals(h.db).at(-1)!.detail).toMatchObject({
      action: 'next_page',
      actor: `slack:${OWNER}`,
      query: 'agent:support-triage',
    });
    const open = await clickButton(
      h,
      OWNER,
      AUDIT_NEXT_PAGE_ACTION_ID,
      JSON.stringify({ q: 'limit:1000', before: 1_000_000, page: 2 }),
      'audit_pagination',
    );
    expect(open.args.replace_original).toBe(true);
    expect(agentsOf(open.args.blocks)).toEqual(['worker']);
  });

  it('an approver sees the agent they approve; agent-less rows only reach listed halters', async () => {
    const a = await sendSlashCommand(h, TRIAGE_APPROVER, '/audit', 'event:call.decided limit:100');
    const ab = (await a.next()).args.blocks;
    expect(agentsOf(ab)).toEqual(['support-triage']);
    expect(blocksText(ab)).toContain('Limited to the agents you own or approve: `support-triage`');

    const ownerHalt = await sendSlashCommand(h, OWNER, '/audit', 'event:control.halt');
    expect(blocksText((await ownerHalt.next()).args.blocks)).toContain('No audit rows match.');
    const oncallHalt = await sendSlashCommand(h, ONCALL_USER, '/audit', 'event:control.halt');
    const ob = (await oncallHalt.next()).args.blocks;
    expect(blocksText(ob)).toContain('org-wide test halt');
    expect(blocksText(ob)).not.toContain('Limited to');
    const oncallAll = await sendSlashCommand(h, ONCALL_USER, '/audit', 'event:call.decided');
    expect(agentsOf((await oncallAll.next()).args.blocks)).toEqual(['support-triage']); // newest 20 are triage's: unscoped
  });

  it('someone who owns, approves and halts nothing is refused', async () => {
    const s = await sendSlashCommand(h, STRANGER, '/audit', '');
    expect((await s.next()).args.text).toMatch(new RegExp(`^Not allowed: <@${STRANGER}> owns or approves no agent`));
    expect(refusals(h.db).at(-1)!.detail).toMatchObject({ action: 'query', actor: `slack:${STRANGER}` });
  });

  it("Agent status is limited to the clicker's agents, whatever the button says", async () => {
    const mine = await clickButton(h, OWNER, 'audit_agent_status:1', 'worker');
    expect(blocksText(mine.args.blocks)).toMatch(/\*worker\* · owner <@U0OWNER>/);
    const other = await clickButton(h, OWNER, 'audit_agent_status:1', 'support-triage');
    expect(other.args.text).toBe(
      'Not allowed: you may audit only the agents you own or approve (`worker`); `support-triage` is not one of them',
    );
    expect(refusals(h.db).at(-1)!.detail).toMatchObject({
      action: 'agent_status',
      actor: `slack:${OWNER}`,
      agent: 'support-triage',
    });
  });

  it("an owner's CSV export holds only their agent's rows and goes to their DM", async () => {
    const s = await sendSlashCommand(h, OWNER, '/audit', 'format:csv limit:1000', 'C0PUBLIC');
    expect((await s.next()).args.text).toBe(
      'Sent 30 audit row(s) as CSV to your direct messages with Warden (not to this channel).',
    );
    await h.slack.waitForCall('files.completeUploadExternal', (x) => x.args.channel_id === dmChannelId(OWNER));
    const file = [...h.slack.uploads.values()].find((u) => u.completed && u.channel === dmChannelId(OWNER))!;
    const lines = file.bytes.toString('utf8').trim().split(/\r?\n/).slice(1);
    expect(lines).toHaveLength(30);
    expect(
      lines.every((l) => l.includes('worker') && !l.includes('support-triage') && !l.includes('customer@example.com')),
    ).toBe(true);
  });
});
