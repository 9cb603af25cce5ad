import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, startGateway, type GatewayHandle } from '../src/gateway/index.ts';
import { silentLogger } from '../src/logger.ts';
import { openRawSession } from './support/gateway-raw.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { CHANNEL, OWNER, approvalIdOf, startSlackHarness, type SlackHarness } from './support/slack-harness.ts';

/**
 * An agent that goes away (its process dies, its socket drops, it ends its
 * session) while its call waits for a human or runs upstream: the call is
 * abandoned, the approval can no longer be given, the upstream request is
 * cancelled, and the audit trail says how the call ended.
 */

const AGENT = 'support-triage';
const EMAIL = { ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body: 'On its way.' };

let h: Harness;

beforeAll(async () => {
  h = await startHarness(`
servers:
  tickets:
    ${fixtureServer('helpdesk-server.ts', ['tickets'])}
    tools:
      read_ticket:         { scope: read }
      send_customer_email: { scope: write, consequence: customer-facing }
  slow:
    ${fixtureServer('slow-server.ts')}
    timeout_ms: 60000
    tools:
      sleep:         { scope: read }
      cancellations: { scope: read }
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read], slow: [read] }
    approval_required: [send_customer_email]
    approval_timeout: 10m
    owner: U0123ABCD
`);
});

afterAll(async () => {
  await h?.close();
});

/** The one approval this test made pending (each test leaves none behind). */
async function pendingApproval() {
  return waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'a pending approval');
}

async function callRows(callId: string) {
  await h.flush();
  return h.rows({ callId });
}

async function slowCounts(client: Client): Promise<{ cancelled: number; completed: number }> {
  return JSON.parse(textOf(await client.callTool({ name: 'slow__cancellations', arguments: {} })));
}

describe('the agent goes away while its call waits for approval', () => {
  it('marks the approval abandoned when the agent process closes its connection, and audits how the call ended', async () => {
    const client = await h.connect(AGENT);
    const call = client
      .callTool({ name: 'tickets__send_customer_email', arguments: EMAIL })
      .catch((err: unknown) => err);
    const approval = await pendingApproval();

    // What an agent process that dies does: its sockets close, no cancel is sent.
    await client.close();

    const settled = await waitFor(() => {
      const r = h.approvals.get(approval.id);
      return r && r.status !== 'pending' ? r : undefined;
    }, 'the approval to leave pending');
    expect(settled.status).toBe('abandoned');
    expect(settled.decisionReason).toMatch(/connection closed before the answer was sent/);
    expect(await call).toBeInstanceOf(Error);

    await waitFor(
      async () => (await callRows(approval.callId)).some((r) => r.event === 'call.completed'),
      'call.completed',
    );
    const rows = await callRows(approval.callId);
    expect(rows.map((r) => [r.event, r.decision])).toEqual([
      ['call.decided', 'approve'],
      ['approval.requested', 'pending'],
      ['approval.decided', 'abandoned'],
      ['call.completed', 'abandoned'],
    ]);
    expect(rows.at(-1)!.reason).toMatch(/abandoned: the agent's connection closed/);

    // Nobody can approve it any more: there is no one to give the result to.
    const late = await h.approvals.decide(approval.id, 'U0123ABCD', 'approve');
    expect(late).toMatchObject({ ok: false, code: 'not_pending' });
  });

  it('does the same when only the socket of the waiting request is destroyed, while the session lives on', async () => {
    const raw = await openRawSession(h.gateway.url, h.token(AGENT));
    const { res, destroy } = await raw.start({
      jsonrpc: '2.0',
      id: 41,
      method: 'tools/call',
      params: { name: 'tickets__send_customer_email', arguments: EMAIL, _meta: { progressToken: 'p41' } },
    });
    expect(res.statusCode).toBe(200);
    const approval = await pendingApproval();
    destroy();

    await waitFor(() => h.approvals.get(approval.id)?.status === 'abandoned', 'the approval to be abandoned');
    await waitFor(async () => (await callRows(approval.callId)).at(-1)?.event === 'call.completed', 'call.completed');
    expect((await callRows(approval.callId)).at(-1)).toMatchObject({ event: 'call.completed', decision: 'abandoned' });

    // The session itself is still good for the next request.
    const next = await raw.post({
      jsonrpc: '2.0',
      id: 42,
      method: 'tools/call',
      params: { name: 'tickets__read_ticket', arguments: { id: 'T-1001' } },
    });
    expect(next.status).toBe(200);
    expect(JSON.stringify(next.messages[0]!.result)).toContain('Cannot log in');
    expect(await raw.terminate()).toBe(200);
  });

  it('marks the approval abandoned when the agent ends its session (DELETE) with the call still waiting', async () => {
    const client = await h.connect(AGENT);
    const call = client
      .callTool({ name: 'tickets__send_customer_email', arguments: EMAIL })
      .catch((err: unknown) => err);
    const approval = await pendingApproval();
    await (client.transport as StreamableHTTPClientTransport).terminateSession();

    await waitFor(() => h.approvals.get(approval.id)?.status === 'abandoned', 'the approval to be abandoned');
    expect(h.approvals.get(approval.id)!.decisionReason).toBe('the agent ended its session');
    await waitFor(
      async () => (await callRows(approval.callId)).at(-1)?.decision === 'abandoned',
      'call.completed abandoned',
    );
    await client.close();
    await call;
  });
});

describe('the agent goes away while its call runs upstream', () => {
  it('cancels the upstream request (notifications/cancelled) when the socket is destroyed, and audits the call as abandoned', async () => {
    const observer = await h.connect(AGENT);
    const before = await slowCounts(observer);
    const raw = await openRawSession(h.gateway.url, h.token(AGENT));
    let progressed = false;
    const { res, destroy } = await raw.start({
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'slow__sleep', arguments: { ms: 30_000, steps: 600 }, _meta: { progressToken: 'p7' } },
    });
    res.on('data', () => (progressed = true));
    // Upstream progress reaching the agent proves the call is running there.
    await waitFor(() => progressed, 'upstream progress');
    destroy();

    await waitFor(
      async () => (await slowCounts(observer)).cancelled > before.cancelled,
      'the upstream to see the cancellation',
    );
    expect((await slowCounts(observer)).completed).toBe(before.completed);
    await h.flush();
    const completed = await waitFor(async () => {
      await h.flush();
      return h
        .rows({ event: 'call.completed', agent: AGENT })
        .filter((r) => r.tool === 'sleep')
        .at(-1);
    }, 'call.completed for sleep');
    expect(completed.decision).toBe('abandoned');
    expect(completed.reason).toMatch(/slow__sleep was abandoned: the agent's connection closed/);
    expect(JSON.parse(completed.detail!)).toMatchObject({ code: 'abandoned' });
    expect(h.rows({ callId: completed.call_id! }).map((r) => r.event)).toEqual(['call.decided', 'call.completed']);
  });

  it('cancels the upstream request when the SDK client itself goes away', async () => {
    const observer = await h.connect(AGENT);
    const before = await slowCounts(observer);
    const client = await h.connect(AGENT);
    let progressed = false;
    const call = client
      .callTool({ name: 'slow__sleep', arguments: { ms: 30_000, steps: 600 } }, CallToolResultSchema, {
        onprogress: () => (progressed = true),
        timeout: 60_000,
      })
      .catch((err: unknown) => err);
    await waitFor(() => progressed, 'upstream progress');
    await client.close();
    expect(await call).toBeInstanceOf(Error);
    await waitFor(
      async () => (await slowCounts(observer)).cancelled > before.cancelled,
      'the upstream to see the cancellation',
    );
  });
});

describe('the gateway shuts down with calls waiting', () => {
  it('answers every running call (held for approval, or running upstream) with the shutdown before it closes the HTTP edge, and audits how they ended', async () => {
    const { approvals, killSwitch, db, audit } = h;
    const gw = await startGateway({
      policy: h.policy,
      db,
      audit,
      approvals,
      halt: killSwitch,
      alerts: new MemoryAlertSink(),
      logger: silentLogger(),
      connectUpstreamsAtStart: false,
    });
    const connect = async () => {
      const c = new Client({ name: 'shutdown', version: '1' });
      await c.connect(
        new StreamableHTTPClientTransport(new URL(gw.url), {
          requestInit: { headers: { Authorization: `Bearer ${h.token(AGENT)}` } },
        }),
      );
      return c;
    };
    const heldClient = await connect();
    const slowClient = await connect();
    // A request whose answer never comes fails at the client's own timeout (a dropped SSE stream is not an error to the SDK).
    const held = heldClient
      .callTool({ name: 'tickets__send_customer_email', arguments: EMAIL }, CallToolResultSchema, { timeout: 10_000 })
      .catch((err: unknown) => err);
    let progressed = false;
    const slow = slowClient
      .callTool({ name: 'slow__sleep', arguments: { ms: 30_000, steps: 600 } }, CallToolResultSchema, {
        onprogress: () => (progressed = true),
        timeout: 10_000,
      })
      .catch((err: unknown) => err);
    const approval = await pendingApproval();
    await waitFor(() => progressed, 'the slow call to run upstream');

    await gw.close();

    // Each agent got an answer that says why, not a dropped connection.
    for (const [what, answer] of [
      ['held', await held],
      ['slow', await slow],
    ] as const) {
      expect(answer, what).not.toBeInstanceOf(Error);
      expect((answer as { isError?: boolean }).isError, what).toBe(true);
      expect(textOf(answer), what).toMatch(/was abandoned: Warden is shutting down/);
    }
    expect(h.approvals.get(approval.id)).toMatchObject({
      status: 'abandoned',
      decisionReason: 'Warden is shutting down',
    });
    await audit.flush();
    expect(h.rows({ callId: approval.callId }).map((r) => [r.event, r.decision])).toEqual([
      ['call.decided', 'approve'],
      ['approval.requested', 'pending'],
      ['approval.decided', 'abandoned'],
      ['call.completed', 'abandoned'],
    ]);
    const sleep = h
      .rows({ event: 'call.completed', agent: AGENT })
      .filter((r) => r.tool === 'sleep')
      .at(-1)!;
    expect(sleep).toMatchObject({
      decision: 'abandoned',
      reason: 'slow__sleep was abandoned: Warden is shutting down',
    });
    expect(h.rows({ callId: sleep.call_id! }).map((r) => [r.event, r.decision])).toEqual([
      ['call.decided', 'allow'],
      ['call.completed', 'abandoned'],
    ]);
    await heldClient.close();
    await slowClient.close();
  });
});

describe('the Slack card of an abandoned call', () => {
  let s: SlackHarness;
  let killSwitch: KillSwitch;
  let gateway: GatewayHandle;

  beforeAll(async () => {
    s = await startSlackHarness({
      policyYaml: `
servers:
  tickets:
    ${fixtureServer('helpdesk-server.ts', ['tickets'])}
    tools:
      send_customer_email: { scope: write, consequence: customer-facing }
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${OWNER}
    channel: ${CHANNEL}
    approval_timeout: 15m
`,
      approvals: { pollMs: 50 },
    });
    killSwitch = new KillSwitch({ db: s.db, audit: s.audit, logger: silentLogger(), pollMs: 50 });
    killSwitch.start();
    gateway = await startGateway({
      policy: s.policy,
      db: s.db,
      audit: s.audit,
      approvals: s.approvals,
      halt: killSwitch,
      alerts: new MemoryAlertSink(),
      logger: silentLogger(),
    });
  });

  afterAll(async () => {
    await gateway?.close();
    killSwitch?.stop();
    await s?.close();
  });

  it('is redrawn as abandoned, with no buttons left to click', async () => {
    const token = createAgentToken(s.db, AGENT, { policy: s.policy });
    const client = new Client({ name: AGENT, version: '1' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(gateway.url), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    const call = client
      .callTool({ name: 'tickets__send_customer_email', arguments: EMAIL })
      .catch((err: unknown) => err);
    const card = await s.slack.waitForCall('chat.postMessage', (c) => Array.isArray(c.args.blocks), 30_000);
    const id = approvalIdOf(card);
    await client.close();
    await call;

    const update = await s.slack.waitForCall('chat.update', (c) => c.args.ts === card.response!.ts, 10_000);
    const blocks = JSON.stringify(update.args.blocks);
    expect(blocks).toContain('*Abandoned*');
    expect(blocks).toContain('connection closed before the answer was sent');
    expect(blocks).not.toContain('approval_approve');
    expect(s.approvals.get(id)?.status).toBe('abandoned');
  });
});
