import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateBlocks } from './support/slack-api-server.ts';
import { blocksText, ONCALL_USER, startControlSlack, type ControlSlack } from './support/control-slack.ts';

let c: ControlSlack;
const COMPLIANCE = 'U0AUDITOR';

beforeAll(async () => {
  c = await startControlSlack();
  const now = Date.now();
  // 45 decisions for the worker, a few for another agent, and a long reason that must be cut, not refused.
  for (let i = 0; i < 45; i++) {
    await c.audit.append({ event: 'call.decided', callId: `w-${i}`, agent: 'worker', owner: 'U0OWNER', server: 'slow', tool: 'sleep', args: { ms: i }, decision: i % 9 === 0 ? 'deny' : 'allow', reason: i === 44 ? 'x'.repeat(5000) : undefined, ts: now - (45 - i) * 1000 });
  }
  for (let i = 0; i < 3; i++) await c.audit.append({ event: 'call.decided', callId: `t-${i}`, agent: 'support-triage', server: 'slow', tool: 'sleep', decision: 'approve', ts: now - 500 });
});
afterAll(async () => {
  await c?.close();
});

type Block = { type: string; text?: { text: string }; accessory?: { action_id: string; value: string }; elements?: { action_id: string; value: string }[] };

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
    for (const [page, expected] of [[2, 20], [3, 5]] as const) {
      const url = c.h.slack.responseUrl();
      await c.h.sender.blockAction({ user: COMPLIANCE, actionId: next.action_id, value: next.value, blockId: 'audit_pagination', responseUrl: url });
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
    await c.h.sender.blockAction({ user: COMPLIANCE, actionId: row.accessory!.action_id, value: row.accessory!.value, blockId: 'x', responseUrl: url });
    const id = url.slice(url.lastIndexOf('/') + 1);
    const status = await c.h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === id);
    expect(status.args.replace_original).toBe(false);
    const text = blocksText(status.args.blocks);
    expect(text).toMatch(/\*worker\* · owner <@U0OWNER>/);
    expect(text).toMatch(/calls \(1h\): \*45\* · denied \(1h\): \*5\*/);
  });

  it('format:csv uploads the rows as a file to the channel', async () => {
    const s = await c.command(COMPLIANCE, '/audit', 'agent:support-triage format:csv', 'C0COMPLY');
    expect((await s.next()).args.text).toBe('Uploaded 3 audit row(s) as CSV to this channel.');
    const done = await c.h.slack.waitForCall('files.completeUploadExternal');
    expect(done.args.channel_id).toBe('C0COMPLY');
    expect(String(done.args.initial_comment)).toMatch(/requested by <@U0AUDITOR>/);
    const file = [...c.h.slack.uploads.values()].find((u) => u.completed)!;
    expect(file.filename).toMatch(/^warden-audit-.*\.csv$/);
    const lines = file.bytes.toString('utf8').trim().split(/\r?\n/);
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/seq/);
    expect(lines.slice(1).every((l) => l.includes('support-triage'))).toBe(true);
  });

  it('a bad query answers with the reason and an example', async () => {
    const s = await c.command(ONCALL_USER, '/audit', 'colour:blue');
    const reply = await s.next();
    expect(reply.args.response_type).toBe('ephemeral');
    const text = blocksText(reply.args.blocks);
    expect(text).toMatch(/colour/);
    expect(text).toMatch(/Example: `\/audit agent:support-triage tool:send_customer_email/);
  });
});
