import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../src/audit/index.ts';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, startGateway, type GatewayHandle } from '../src/gateway/index.ts';
import { silentLogger } from '../src/logger.ts';
import { textOf } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';
import {
  APPROVER,
  CHANNEL,
  OWNER,
  STRANGER,
  approvalIdOf,
  startSlackHarness,
  type SlackHarness,
} from './support/slack-harness.ts';

/**
 * The whole path: an agent (the MCP SDK's Client over Streamable HTTP, holding
 * only its Warden token) calls a held tool on the real helpdesk fixture; the
 * card appears in Slack; a signed click approves; the real upstream runs; the
 * agent gets the result; the audit trail and the card's thread tell the story.
 */
const POLICY = `
${helpdeskServersYaml(['tickets'])}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${OWNER}
    channel: ${CHANNEL}
    approvers: [${APPROVER}]
    approval_timeout: 15m
`;

let h: SlackHarness;
let killSwitch: KillSwitch;
let gateway: GatewayHandle;
let token: string;
const clients: Client[] = [];

beforeAll(async () => {
  h = await startSlackHarness({ policyYaml: POLICY, approvals: { pollMs: 50 } });
  killSwitch = new KillSwitch({ db: h.db, audit: h.audit, logger: silentLogger(), pollMs: 50 });
  killSwitch.start();
  gateway = await startGateway({
    policy: { current: () => h.policy },
    db: h.db,
    audit: h.audit,
    approvals: h.approvals,
    halt: killSwitch,
    alerts: new MemoryAlertSink(),
    logger: silentLogger(),
    port: 0,
  });
  token = createAgentToken(h.db, 'support-triage', { policy: h.policy });
});

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await gateway?.close();
  killSwitch?.stop();
  await h?.close();
});

async function agent(): Promise<Client> {
  const client = new Client({ name: 'support-triage', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(gateway.url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  clients.push(client);
  return client;
}

describe('end to end: agent → gateway → Slack approval → upstream', () => {
  it('an approved customer email is sent, the agent gets the result, and audit and thread record it', async () => {
    const client = await agent();
    const args = {
      ticket_id: 'T-1001',
      to: 'ada@example.com',
      subject: 'Your refund',
      body: 'Hello Ada, the refund is on its way.',
    };
    const call = client.callTool({ name: 'tickets__send_customer_email', arguments: args }, undefined, {
      timeout: 60_000,
    });

    const card = await h.slack.waitForCall('chat.postMessage', (c) => Array.isArray(c.args.blocks), 30_000);
    expect(card.args.channel).toBe(CHANNEL);
    const id = approvalIdOf(card);
    const ts = card.response!.ts as string;
    expect(JSON.stringify(card.args.blocks)).toContain('`to`\\n```ada@example.com```');

    // A stranger cannot approve it…
    await h.sender.blockAction({
      user: STRANGER,
      actionId: 'approval_approve',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    await h.slack.waitForCall('chat.postEphemeral', (c) => c.args.user === STRANGER);
    // …the owner can.
    const click = await h.sender.blockAction({
      user: OWNER,
      actionId: 'approval_approve',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    expect(click.status).toBe(200);

    const result = await call;
    expect(result.isError).toBeFalsy();
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true, to: 'ada@example.com', count: 1 });

    const callId = h.approvals.get(id)!.callId;
    const rows = h.db
      .prepare('SELECT event, decision, approver FROM audit WHERE call_id = ? ORDER BY seq')
      .all(callId) as Array<{ event: string; decision: string; approver: string | null }>;
    // In order: held (before anything else), asked, refused, decided, then run and completed.
    expect(rows).toEqual([
      { event: 'call.decided', decision: 'approve', approver: null },
      { event: 'approval.requested', decision: 'pending', approver: null },
      { event: 'approval.refused', decision: 'approve', approver: STRANGER },
      { event: 'approval.decided', decision: 'approved', approver: OWNER },
      { event: 'call.completed', decision: 'ok', approver: OWNER },
    ]);
    expect(verifyChain(h.db).ok).toBe(true);

    const reply = await h.slack.waitForCall('chat.postMessage', (c) => c.args.thread_ts === ts, 10_000);
    expect(JSON.stringify(reply.args.blocks)).toContain('Call completed');
    expect(JSON.stringify(reply.args.blocks)).toContain('sent');
    const update = await h.slack.waitForCall('chat.update', (c) => c.args.ts === ts);
    expect(JSON.stringify(update.args.blocks)).toContain(`*Approved* by <@${OWNER}>`);
    // The agent's token never reaches Slack.
    expect(JSON.stringify(h.slack.calls)).not.toContain(token);
  });

  it('a rejection through the modal reaches the agent as a refusal with the reason, and the upstream is not called', async () => {
    const client = await agent();
    const before = h.slack.callsOf('chat.postMessage').length;
    const call = client.callTool(
      {
        name: 'tickets__send_customer_email',
        arguments: { ticket_id: 'T-1002', to: 'bob@example.com', subject: 'x', body: 'y' },
      },
      undefined,
      { timeout: 60_000 },
    );
    await h.slack.waitForCall('chat.postMessage', () => h.slack.callsOf('chat.postMessage').length > before, 30_000);
    const posted = h.slack.callsOf('chat.postMessage')[before]!;
    const id = approvalIdOf(posted);
    const ts = posted.response!.ts as string;
    const opens = h.slack.callsOf('views.open').length;
    await h.sender.blockAction({
      user: APPROVER,
      actionId: 'approval_reject',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    await h.slack.waitForCall('views.open', () => h.slack.callsOf('views.open').length > opens);
    const view = h.slack.callsOf('views.open')[opens]!.args.view;
    await h.sender.viewSubmission({
      user: APPROVER,
      callbackId: view.callback_id,
      privateMetadata: view.private_metadata,
      values: { reject_reason: { reason: 'wrong customer' } },
    });

    const result = await call;
    expect(result.isError).toBe(true);
    expect(textOf(result)).toContain('wrong customer');
    const callId = h.approvals.get(id)!.callId;
    const completed = h.db
      .prepare("SELECT decision FROM audit WHERE call_id = ? AND event = 'call.completed'")
      .pluck()
      .all(callId);
    expect(completed).not.toContain('ok');
    expect(
      h.db.prepare("SELECT decision FROM audit WHERE call_id = ? AND event = 'approval.decided'").pluck().get(callId),
    ).toBe('rejected');

    // The upstream never saw the rejected email: the next approved one is its second, not its third.
    const next = h.slack.callsOf('chat.postMessage').length;
    const again = client.callTool(
      {
        name: 'tickets__send_customer_email',
        arguments: { ticket_id: 'T-1003', to: 'cy@example.com', subject: 'x', body: 'y' },
      },
      undefined,
      { timeout: 60_000 },
    );
    await h.slack.waitForCall('chat.postMessage', () => h.slack.callsOf('chat.postMessage').length > next, 30_000);
    const nextId = approvalIdOf(h.slack.callsOf('chat.postMessage')[next]!);
    await h.sender.blockAction({
      user: APPROVER,
      actionId: 'approval_approve',
      value: nextId,
      channel: CHANNEL,
      messageTs: '1.1',
    });
    expect(JSON.parse(textOf(await again))).toMatchObject({ sent: true, to: 'cy@example.com', count: 2 });
  });
});
