import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { AuditLog } from '../src/audit/log.ts';
import { startGateway } from '../src/gateway/gateway.ts';
import { REFUSAL_WINDOW_MS } from '../src/gateway/refusals.ts';
import { createAgentToken, revokeAgentTokens } from '../src/gateway/tokens.ts';
import { silentLogger } from '../src/logger.ts';
import { startEchoHttpServer, type EchoHttpServer } from './fixtures/echo-http-server.ts';
import { everythingServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { ManualClock } from './support/manual-clock.ts';
import { helpdeskServersYaml } from './support/policies.ts';
import { onSqlite } from './support/store-under-test.ts';

let echo: EchoHttpServer;
let h: Harness;
const SECRET_IN_WARDEN_ENV = 'xoxb-warden-own-secret-not-for-upstreams';

function policyYaml(echoUrl: string): string {
  return `
${helpdeskServersYaml(['tickets', 'crm'])}
  everything:
    ${everythingServer('env: { EVERYTHING_MARKER: "from-policy" }')}
    tools:
      echo:    { scope: read }
      get-env: { scope: read }
  web:
    url: ${echoUrl}
    headers: { X-Upstream-Key: "upstream-credential" }
    tools:
      echo_request: { scope: read }
      echo:         { scope: read }
agents:
  - agent: support-triage
    mcp_scopes:
      tickets:    [read]
      crm:        [read]
      everything: [read]
      web:        [read]
    approval_required: [send_customer_email, crm__refund_request]
    approval_timeout: 1500ms
    owner: U0123ABCD
    approvers: [U0456EFGH]
  - agent: billing-bot
    mcp_scopes:
      crm: [read, write]
    owner: U0456EFGH
`;
}

beforeAll(async () => {
  process.env.SLACK_BOT_TOKEN = SECRET_IN_WARDEN_ENV;
  echo = await startEchoHttpServer();
  h = await startHarness(policyYaml(echo.url));
});

afterAll(async () => {
  delete process.env.SLACK_BOT_TOKEN;
  await h?.close();
  await echo?.close();
});

function callIdOfLast(event: string, agent: string): string {
  const rows = h.rows({ event, agent });
  return rows[rows.length - 1]!.call_id!;
}

describe('tools/list', () => {
  it('shows each agent only the tools its scopes grant', async () => {
    const triage = await h.connect('support-triage');
    const names = (await triage.listTools()).tools.map((t) => t.name).sort();
    expect(names).toEqual(
      [
        'crm__lookup_customer',
        'crm__refund_request',
        'everything__echo',
        'everything__get-env',
        'tickets__list_tickets',
        'tickets__read_ticket',
        'tickets__send_customer_email',
        'web__echo',
        'web__echo_request',
        // It has held tools, so it also gets the way to collect them.
        'warden__await_approval',
      ].sort(),
    );
    // close_ticket is a write and support-triage only reads tickets; everything's
    // unclassified tools count as write + irreversible, so they stay hidden too.
    expect(names).not.toContain('tickets__close_ticket');
    const email = (await triage.listTools()).tools.find((t) => t.name === 'tickets__send_customer_email')!;
    expect(email.description).toMatch(/held until a human approves/);
    expect(email.inputSchema.properties).toHaveProperty('ticket_id');

    const billing = await h.connect('billing-bot');
    expect((await billing.listTools()).tools.map((t) => t.name).sort()).toEqual([
      'crm__lookup_customer',
      'crm__refund_request',
      'warden__await_approval',
    ]);
  });
});

describe('tools/call', () => {
  it('forwards an allowed call and writes call.decided before call.completed', async () => {
    const c = await h.connect('support-triage');
    const res = await c.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } });
    expect(res.isError).toBeFalsy();
    expect(textOf(res)).toContain('Cannot log in');
    await h.flush();
    const callId = callIdOfLast('call.completed', 'support-triage');
    const rows = h.rows({ callId });
    expect(rows.map((r) => r.event)).toEqual(['call.decided', 'call.completed']);
    expect(rows[0]).toMatchObject({
      decision: 'allow',
      server: 'tickets',
      tool: 'read_ticket',
      agent: 'support-triage',
      owner: 'U0123ABCD',
    });
    expect(JSON.parse(rows[0]!.args!)).toEqual({ id: 'T-1001' });
    expect(rows[1]).toMatchObject({ decision: 'ok' });
    expect(rows[1]!.result).toContain('Cannot log in');
    expect(rows[1]!.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('forwards to an HTTP upstream too', async () => {
    const c = await h.connect('support-triage');
    const res = await c.callTool({ name: 'web__echo', arguments: { message: 'over http' } });
    expect(textOf(res)).toBe('over http');
  });

  it('refuses an out-of-scope call with a readable isError result, an audit row and an alert', async () => {
    const c = await h.connect('support-triage');
    const before = h.alerts.alerts.length;
    const res = await c.callTool({ name: 'tickets__close_ticket', arguments: { id: 'T-1001' } });
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/^Refused by Warden: .*read scope on tickets/);
    await h.flush();
    const row = h.rows({ event: 'call.decided', agent: 'support-triage' }).at(-1)!;
    expect(row).toMatchObject({ decision: 'deny', tool: 'close_ticket', server: 'tickets' });
    expect(JSON.parse(row.detail!)).toMatchObject({ code: 'out_of_scope' });
    expect(h.rows({ callId: row.call_id! }).map((r) => r.event)).toEqual(['call.decided']);
    const alert = h.alerts.alerts.slice(before).find((a) => a.kind === 'denied');
    expect(alert).toMatchObject({ agent: 'support-triage' });
    expect(alert!.text).toContain('tickets__close_ticket');
  });

  it('refuses servers outside the scopes and names that are not <server>__<tool>', async () => {
    const billing = await h.connect('billing-bot');
    const r1 = await billing.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } });
    expect(r1.isError).toBe(true);
    expect(textOf(r1)).toMatch(/no scope on tickets/);
    const r2 = await billing.callTool({ name: 'read_ticket', arguments: {} });
    expect(r2.isError).toBe(true);
    expect(textOf(r2)).toMatch(/<server>__<tool>/);
    const r3 = await billing.callTool({ name: 'crm__no_such_tool', arguments: {} });
    expect(r3.isError).toBe(true);
    expect(textOf(r3)).toMatch(/offers no tool "no_such_tool"/);
  });

  it('holds a call for approval, relays waiting progress, forwards once approved and reports the outcome', async () => {
    const c = await h.connect('support-triage');
    const progress: number[] = [];
    const pending = c.callTool(
      {
        name: 'tickets__send_customer_email',
        arguments: { ticket_id: 'T-1002', to: 'grace@example.com', subject: 'Refund', body: 'Done.' },
      },
      CallToolResultSchema,
      { onprogress: (p) => progress.push(p.progress), resetTimeoutOnProgress: true },
    );
    const waiting = await waitFor(() => h.approvals.pending({ agent: 'support-triage' })[0], 'a pending approval');
    expect(waiting).toMatchObject({ tool: 'send_customer_email', server: 'tickets' });
    await waitFor(() => progress.length >= 1, 'a waiting progress notification');
    await h.approvals.decide(waiting!.id, 'U0456EFGH', 'approve');
    const res = await pending;
    expect(res.isError).toBeFalsy();
    expect(textOf(res)).toContain('"sent":true');
    await h.flush();
    const rows = h.rows({ callId: waiting!.callId });
    expect(rows[0]).toMatchObject({ event: 'call.decided', decision: 'approve' });
    expect(rows.at(-1)).toMatchObject({ event: 'call.completed', decision: 'ok', approver: 'U0456EFGH' });
    expect(rows.map((r) => r.event)).toContain('approval.requested');
    expect(h.approvals.get(waiting!.id)?.outcome).toMatchObject({ ok: true });
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!);
  });

  it('refuses a rejected call with who rejected it and why', async () => {
    const c = await h.connect('support-triage');
    const pending = c.callTool({
      name: 'crm__refund_request',
      arguments: { customer_id: 'C-2', amount: 10, reason: 'dup' },
    });
    const waiting = await waitFor(() => h.approvals.pending({ agent: 'support-triage' })[0], 'a pending approval');
    await h.approvals.decide(waiting!.id, 'U0123ABCD', 'reject', 'not without a ticket');
    const res = await pending;
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/rejected by U0123ABCD: not without a ticket/);
    await h.flush();
    expect(h.rows({ callId: waiting!.callId }).at(-1)).toMatchObject({ event: 'call.completed', decision: 'rejected' });
  });

  it('refuses a call nobody decided once the approval times out', async () => {
    const c = await h.connect('support-triage');
    const res = await c.callTool({
      name: 'crm__refund_request',
      arguments: { customer_id: 'C-1', amount: 5, reason: 'late' },
    });
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(
      /was not run: it needs a human's approval and the request was left without a decision for \d+ s and expired; the call was not made/,
    );
    await h.flush();
    expect(h.rows({ event: 'call.completed', agent: 'support-triage' }).at(-1)).toMatchObject({
      decision: 'expired',
      tool: 'refund_request',
    });
  });

  it('cancels a call waiting for approval when the agent is halted', async () => {
    const c = await h.connect('support-triage');
    const pending = c.callTool({
      name: 'crm__refund_request',
      arguments: { customer_id: 'C-3', amount: 1, reason: 'test' },
    });
    const waiting = await waitFor(() => h.approvals.pending({ agent: 'support-triage' })[0], 'a pending approval');
    await h.killSwitch.halt({ scope: 'agent', agent: 'support-triage', reason: 'runaway refunds', actor: 'U0123ABCD' });
    try {
      const res = await pending;
      expect(res.isError).toBe(true);
      expect(textOf(res)).toMatch(/cancelled: .*runaway refunds/);
      await h.flush();
      expect(h.rows({ callId: waiting.callId }).at(-1)).toMatchObject({
        event: 'call.completed',
        decision: 'cancelled',
      });
      expect(h.approvals.get(waiting.id)?.status).toBe('cancelled');
    } finally {
      await h.killSwitch.resume({ scope: 'agent', agent: 'support-triage', actor: 'U0123ABCD' });
    }
  });

  it('refuses every call of a halted agent at once, and only that agent', async () => {
    const triage = await h.connect('support-triage');
    const billing = await h.connect('billing-bot');
    await h.killSwitch.halt({ scope: 'agent', agent: 'support-triage', reason: 'investigating', actor: 'U0123ABCD' });
    try {
      const res = await triage.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } });
      expect(res.isError).toBe(true);
      expect(textOf(res)).toMatch(/halted.*investigating/);
      await h.flush();
      expect(h.rows({ event: 'call.decided', agent: 'support-triage' }).at(-1)).toMatchObject({ decision: 'halted' });
      const ok = await billing.callTool({ name: 'crm__lookup_customer', arguments: { email: 'ada@example.com' } });
      expect(ok.isError).toBeFalsy();
    } finally {
      await h.killSwitch.resume({ scope: 'agent', agent: 'support-triage', actor: 'U0123ABCD' });
    }
    const after = await triage.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } });
    expect(after.isError).toBeFalsy();
  });
});

describe('credentials stay with Warden', () => {
  it("never passes the agent's token or Warden's environment to a stdio upstream", async () => {
    const token = h.token('support-triage');
    const c = await h.connect('support-triage');
    const res = await c.callTool({ name: 'everything__get-env', arguments: {} });
    const env = JSON.parse(textOf(res)) as Record<string, string>;
    expect(env.EVERYTHING_MARKER).toBe('from-policy');
    expect(JSON.stringify(env)).not.toContain(token);
    expect(JSON.stringify(env)).not.toContain(SECRET_IN_WARDEN_ENV);
    expect(env).not.toHaveProperty('NODE_OPTIONS');
    expect(env).not.toHaveProperty('SLACK_BOT_TOKEN');
  });

  it("sends an HTTP upstream only the policy's headers, never the agent's token", async () => {
    const token = h.token('support-triage');
    const c = await h.connect('support-triage');
    const res = await c.callTool({ name: 'web__echo_request', arguments: {} });
    const headers = JSON.parse(textOf(res)) as Record<string, string>;
    expect(headers['x-upstream-key']).toBe('upstream-credential');
    expect(headers.authorization).toBeUndefined();
    expect(echo.seenHeaders.length).toBeGreaterThan(0);
    for (const seen of echo.seenHeaders) expect(JSON.stringify(seen)).not.toContain(token);
  });
});

describe('authentication', () => {
  async function post(headers: Record<string, string>): Promise<Response> {
    return fetch(h.gateway.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    });
  }

  it('answers 401 with WWW-Authenticate for a missing, malformed, unknown or revoked token, audited without the token', async () => {
    const alertsBefore = h.alerts.alerts.length;
    const bogus = `wdn_${'A'.repeat(43)}`;
    const missing = await post({});
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer realm="warden"/);
    const bad = await post({ Authorization: `Bearer ${bogus}` });
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    expect((await post({ Authorization: 'Bearer not-a-token' })).status).toBe(401);

    // A revoked token stops working at once (the CLI revokes from another process).
    const token = h.token('billing-bot');
    expect((await post({ Authorization: `Bearer ${token}` })).status).toBe(200);
    revokeAgentTokens(h.db, 'billing-bot');
    expect((await post({ Authorization: `Bearer ${token}` })).status).toBe(401);

    await h.flush();
    const rows = h.rows({ event: 'auth.failed' });
    expect(rows.length).toBeGreaterThanOrEqual(4);
    const codes = rows.map((r) => JSON.parse(r.detail!).code);
    expect(codes).toEqual(
      expect.arrayContaining(['token_missing', 'token_unknown', 'token_malformed', 'token_revoked']),
    );
    // A revoked token was someone's: the trail says whose.
    const revoked = rows.find((r) => JSON.parse(r.detail!).code === 'token_revoked')!;
    expect(revoked.agent).toBe('billing-bot');
    expect(revoked.reason).toBe('request with a revoked token of agent billing-bot');
    for (const r of rows) {
      expect(JSON.stringify(r)).not.toContain(bogus);
      expect(JSON.stringify(r)).not.toContain(token);
    }
    expect(h.alerts.alerts.slice(alertsBefore).some((a) => a.kind === 'auth_failed')).toBe(true);
  });

  it("refuses a session id presented with another agent's token", async () => {
    const triage = await h.connect('support-triage');
    const sessionId = (triage.transport as StreamableHTTPClientTransport).sessionId!;
    expect(sessionId).toBeTruthy();
    // Raw request: list tools on support-triage's session with billing-bot's token.
    const res = await fetch(h.gateway.url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        Authorization: `Bearer ${freshToken('billing-bot')}`,
        'Mcp-Session-Id': sessionId,
        'Mcp-Protocol-Version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list', params: {} }),
    });
    expect(res.status).toBe(403);
    await h.flush();
    const row = h.rows({ event: 'auth.failed' }).at(-1)!;
    expect(JSON.parse(row.detail!).code).toBe('session_mismatch');
    expect(row.agent).toBe('billing-bot');
    // The owner of the session is unaffected.
    expect((await triage.listTools()).tools.length).toBeGreaterThan(0);
  });

  it('ends a session on DELETE; its id is then unknown', async () => {
    const c = await h.connect('support-triage');
    const transport = c.transport as StreamableHTTPClientTransport;
    const sessionId = transport.sessionId!;
    await transport.terminateSession();
    const res = await fetch(h.gateway.url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Accept: 'application/json, text/event-stream',
        Authorization: `Bearer ${h.token('support-triage')}`,
        'Mcp-Session-Id': sessionId,
        'Mcp-Protocol-Version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
    });
    expect(res.status).toBe(404);
  });

  it('refuses foreign Host and Origin headers (DNS rebinding)', async () => {
    const url = new URL(h.gateway.url);
    const status = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          {
            host: url.hostname,
            port: url.port,
            path: url.pathname,
            method: 'POST',
            headers: { 'Content-Type': 'application/json', ...headers },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode!);
          },
        );
        req.on('error', reject);
        req.end('{}');
      });
    expect(await status({ Host: 'evil.example:80' })).toBe(403);
    expect(await status({ Host: `127.0.0.1:${url.port}`, Origin: 'http://evil.example' })).toBe(403);
    expect(await status({ Host: `localhost:${url.port}`, Origin: `http://localhost:${url.port}` })).toBe(401);
  });
});

describe('a flood of unauthenticated requests', () => {
  const bogus = `wdn_${'B'.repeat(43)}`;
  const initialize = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
  });

  /** A gateway of its own on the harness's database, so its windows start empty; rows are read from `since` on. */
  async function floodGateway(clock?: ManualClock) {
    const since = (h.db.prepare('SELECT coalesce(max(seq), 0) AS s FROM audit').get() as { s: number }).s;
    const gw = await startGateway({
      policy: h.policy,
      db: h.db,
      audit: h.audit,
      approvals: h.approvals,
      halt: h.killSwitch,
      alerts: h.alerts,
      logger: silentLogger(),
      connectUpstreamsAtStart: false,
      clock,
    });
    const bad = async (n: number) => {
      const statuses = await Promise.all(
        Array.from({ length: n }, () =>
          fetch(gw.url, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              Accept: 'application/json, text/event-stream',
              Authorization: `Bearer ${bogus}`,
            },
            body: initialize,
          }).then((r) => r.status),
        ),
      );
      expect(statuses).toEqual(Array(n).fill(401));
    };
    const rows = async () => {
      await h.audit.flush();
      return (
        h.db.prepare("SELECT * FROM audit WHERE seq > ? AND event = 'auth.failed' ORDER BY seq").all(since) as Array<{
          reason: string;
          detail: string;
        }>
      ).map((r) => ({
        reason: r.reason,
        detail: JSON.parse(r.detail) as {
          code: string;
          count: number;
          window?: { from: number; to: number; ms: number };
        },
      }));
    };
    return { gw, bad, rows };
  }

  it('audits the first failure at once and counts the rest of the window into one row, written at close: nothing lost', async () => {
    // A clock that stands still: all 50 fall in one window however slow the machine.
    const { gw, bad, rows } = await floodGateway(new ManualClock(Date.now()));
    try {
      await bad(50);
      // Answered already, so the first is on the trail already.
      expect((await rows()).map((r) => r.detail.count)).toEqual([1]);
    } finally {
      await gw.close();
    }
    const after = await rows();
    expect(after.length).toBeLessThanOrEqual(2);
    expect(after.every((r) => r.detail.code === 'token_unknown')).toBe(true);
    expect(after.reduce((n, r) => n + r.detail.count, 0)).toBe(50);
    expect(after[1]!.reason).toMatch(
      /^49 more requests from \S+ refused for the same cause \(token_unknown\) within 1 s of the first$/,
    );
    for (const r of after) expect(JSON.stringify(r)).not.toContain(bogus);
  });

  it('closes the window on the injected clock, then starts a new one', async () => {
    const clock = new ManualClock(Date.now());
    const { gw, bad, rows } = await floodGateway(clock);
    try {
      const opened = clock.now();
      await bad(20);
      await clock.tick(REFUSAL_WINDOW_MS - 1);
      expect((await rows()).map((r) => r.detail.count)).toEqual([1]);
      await clock.tick(1);
      // The window closed by its own timer, with no close() and no further request.
      await waitFor(async () => (await rows()).length === 2, 'the aggregated row');
      const [, aggregated] = await rows();
      expect(aggregated!.detail).toMatchObject({
        code: 'token_unknown',
        count: 19,
        window: { from: opened, to: opened + REFUSAL_WINDOW_MS, ms: REFUSAL_WINDOW_MS },
      });

      // A new window: its first failure is audited at once again.
      await bad(5);
      expect((await rows()).map((r) => r.detail.count)).toEqual([1, 19, 1]);
    } finally {
      await gw.close();
    }
    expect((await rows()).map((r) => r.detail.count)).toEqual([1, 19, 1, 4]);
  });
});

describe('fail closed', () => {
  it('refuses the call when call.decided cannot be written', async () => {
    const audit = new AuditLog(h.db, { logger: silentLogger() });
    await audit.close(); // a closed log rejects every append
    const gw = await startGateway({
      policy: h.policy,
      db: h.db,
      audit,
      approvals: h.approvals,
      halt: h.killSwitch,
      alerts: h.alerts,
      logger: silentLogger(),
      connectUpstreamsAtStart: false,
    });
    try {
      const client = new Client({ name: 't', version: '1' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(gw.url), {
          requestInit: { headers: { Authorization: `Bearer ${h.token('support-triage')}` } },
        }),
      );
      const res = await client.callTool({ name: 'crm__lookup_customer', arguments: { email: 'ada@example.com' } });
      expect(res.isError).toBe(true);
      expect(textOf(res)).toMatch(/audit_write_failed/);
      expect(textOf(res)).not.toContain('Ada Lovelace');
      await client.close();
    } finally {
      await gw.close();
    }
  });
});

const fresh = new Map<string, string>();
function freshToken(agent: string): string {
  // billing-bot's harness token is revoked by an earlier test; mint another.
  let t = fresh.get(agent);
  if (!t) {
    t = createToken(agent);
    fresh.set(agent, t);
  }
  return t;
}

function createToken(agent: string): string {
  return createAgentToken(h.db, agent, { policy: h.policy });
}

describe('how durable the record is before each step', () => {
  const webOnly = (url: string) => `
servers:
  web:
    url: ${url}
    tools:
      echo: { scope: read }
agents:
  - agent: support-triage
    mcp_scopes: { web: [read] }
`;

  // The log's own timer fsync is put off for a minute, so what the answer waited for is what the test sees.
  it.each([
    ['fast', undefined, 1, true],
    ['strict', 'strict', 0, false],
  ] as const)(
    '%s: both rows are committed by the answer',
    async (_label, auditDurability, ownFsyncs, owedAfterAnswer) => {
      const g = await startHarness(webOnly(echo.url), auditDurability ? { auditDurability } : {}, {
        syncWithinMs: 60_000,
      });
      try {
        const c = await g.connect('support-triage');
        const before = g.audit.syncs;
        const res = await c.callTool({ name: 'web__echo', arguments: { message: 'durable?' } });
        expect(textOf(res)).toBe('durable?');
        // No flush: both rows are committed by the time the agent has its answer.
        const rows = g.rows({ agent: 'support-triage' }).filter((r) => r.event.startsWith('call.'));
        expect(rows.map((r) => [r.event, r.decision])).toEqual([
          ['call.decided', 'allow'],
          ['call.completed', 'ok'],
        ]);
        // fast: the read's decision was fsynced by Warden itself, alongside the upstream call, and the
        // completion's fsync is still owed. strict: both commits fsynced on their own, nothing owed.
        // PostgreSQL: every commit is durable when it returns (the server's WAL), Warden fsyncs nothing.
        expect(g.audit.syncs - before).toBe(onSqlite() ? ownFsyncs : 0);
        expect(g.audit.syncPending).toBe(onSqlite() ? owedAfterAnswer : false);
        await g.audit.sync();
        expect(g.audit.syncPending).toBe(false);
      } finally {
        await g.close();
      }
    },
  );

  it("withholds a read's answer, result or failure, when its record cannot be made durable, and records why", async () => {
    const own = await startEchoHttpServer();
    const g = await startHarness(webOnly(own.url), {}, {}, (audit) => ({
      append: (entry, options) => audit.append(entry, options),
      // The disk refuses to sync: what an fsync failing with EIO looks like to the gateway.
      sync: () => Promise.reject(new Error('EIO: i/o error, fsync')),
    }));
    try {
      const c = await g.connect('support-triage');
      const res = await c.callTool({ name: 'web__echo', arguments: { message: 'secret data' } });
      expect(res.isError).toBe(true);
      expect(textOf(res)).toMatch(/could not make its audit record durable \(EIO: i\/o error, fsync\)/);
      expect(textOf(res)).not.toContain('secret data');
      const rows = g.rows({ agent: 'support-triage' }).filter((r) => r.event.startsWith('call.'));
      expect(rows.map((r) => [r.event, r.decision])).toEqual([
        ['call.decided', 'allow'],
        ['call.completed', 'error'],
      ]);
      expect(rows[1]!.result).toBeNull();
      expect(JSON.parse(rows[1]!.detail!)).toMatchObject({ code: 'audit_write_failed' });
      // A failure's text is an answer too: with the upstream gone, the agent still learns only why it got nothing.
      await own.close();
      const failed = await c.callTool({ name: 'web__echo', arguments: { message: 'again' } });
      expect(textOf(failed)).toMatch(/could not make its audit record durable/);
      expect(textOf(failed)).not.toMatch(/could not be reached|ECONNREFUSED/);
    } finally {
      await g.close();
      await own.close().catch(() => {});
    }
  });

  it('only a plain read skips the fsync before forwarding; a write waits for it (fast mode)', async () => {
    const asked: [string, string | undefined, boolean][] = [];
    const g = await startHarness(
      `
servers:
  web:
    url: ${echo.url}
    tools:
      echo:         { scope: read }
      echo_request: { scope: write, consequence: reversible }
agents:
  - agent: support-triage
    mcp_scopes: { web: [read, write] }
`,
      {},
      { syncWithinMs: 60_000 },
      // Records what the gateway asks of the real log, row by row.
      (audit) => ({
        append: (entry, options) => {
          asked.push([entry.event, entry.tool, options?.sync !== false]);
          return audit.append(entry, options);
        },
        sync: (options) => audit.sync(options),
      }),
    );
    try {
      const c = await g.connect('support-triage');
      expect(textOf(await c.callTool({ name: 'web__echo', arguments: { message: 'a read' } }))).toBe('a read');
      expect((await c.callTool({ name: 'web__echo_request', arguments: {} })).isError).toBeFalsy();
      expect(asked.filter(([event]) => event.startsWith('call.'))).toEqual([
        ['call.decided', 'echo', false],
        ['call.completed', 'echo', false],
        ['call.decided', 'echo_request', true],
        ['call.completed', 'echo_request', false],
      ]);
      const decided = g.rows({ event: 'call.decided', agent: 'support-triage' });
      expect(decided.map((r) => [r.tool, JSON.parse(r.detail!).scope])).toEqual([
        ['echo', 'read'],
        ['echo_request', 'write'],
      ]);
    } finally {
      await g.close();
    }
  });

  it("lets a read's fsync run on the event loop only while no other call is running", async () => {
    const quiet: (boolean | undefined)[] = [];
    let held: Promise<string> | undefined;
    const g = await startHarness(
      `
servers:
  web:
    url: ${echo.url}
    tools:
      echo:         { scope: read }
      echo_request: { scope: read }
agents:
  - agent: support-triage
    mcp_scopes: { web: [read] }
    approval_required: [echo_request]
    approval_timeout: 5m
    owner: U0123ABCD
`,
      {},
      { syncWithinMs: 60_000 },
      (audit) => ({
        append: (entry, options) => audit.append(entry, options),
        sync: (options) => {
          quiet.push(options?.quiet);
          return audit.sync(options);
        },
      }),
    );
    try {
      const c = await g.connect('support-triage');
      expect(textOf(await c.callTool({ name: 'web__echo', arguments: { message: 'alone' } }))).toBe('alone');
      expect(quiet).toEqual([true]);
      // A call held for a human is running: the next read's fsync stays off the loop.
      held = c.callTool({ name: 'web__echo_request', arguments: {} }).then(textOf, (err: Error) => err.message);
      await waitFor(async () => {
        await g.flush();
        return g.rows({ event: 'call.decided' }).some((r) => r.tool === 'echo_request');
      }, 'the held call');
      expect(textOf(await c.callTool({ name: 'web__echo', arguments: { message: 'beside a held call' } }))).toBe(
        'beside a held call',
      );
      expect(quiet).toEqual([true, false]);
    } finally {
      await g.close();
    }
    // Closing the harness ended the held call (it did not hang), saying why.
    expect(await held).toMatch(/shut|closed/i);
  });
});
