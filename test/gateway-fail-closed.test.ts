import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AuditLog } from '../src/audit/log.ts';
import type { HaltCheck, HaltState } from '../src/control/types.ts';
import { startGateway, type StartGatewayOptions } from '../src/gateway/gateway.ts';
import { createAgentToken, revokeAgentToken } from '../src/gateway/tokens.ts';
import { argumentProblem, findProtoKey } from '../src/gateway/arguments.ts';
import { silentLogger } from '../src/logger.ts';
import type { Policy } from '../src/policy/types.ts';
import { openRawSession, type RawSession } from './support/gateway-raw.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';

/**
 * The hot path fails closed: whatever an agent sends and whatever breaks
 * inside Warden, the answer is a refusal (an isError result, or a JSON-RPC
 * error for a malformed request) and the upstream is never called.
 *
 * The upstream here counts what reaches it (slow-server's `completed`
 * counter); every test reads it before and after, as another agent, so the
 * audit rows of the agent under test are only its own.
 */

const AGENT = 'ops';
const OBSERVER = 'observer';
let h: Harness;
let raw: RawSession;
let client: Client;
let observer: Client;

beforeAll(async () => {
  h = await startHarness(`
servers:
  slow:
    ${fixtureServer('slow-server.ts')}
    tools:
      sleep:         { scope: read }
      cancellations: { scope: read }
  tickets:
    ${fixtureServer('helpdesk-server.ts', ['tickets'])}
    tools:
      read_ticket:         { scope: read }
      close_ticket:        { scope: write, consequence: reversible }
      send_customer_email: { scope: write, consequence: customer-facing }
agents:
  - agent: ${AGENT}
    mcp_scopes: { slow: [read], tickets: [read] }
    approval_required: [send_customer_email]
    approval_timeout: 10m
    owner: U0123ABCD
  - agent: ${OBSERVER}
    mcp_scopes: { slow: [read] }
    owner: U0123ABCD
`);
  client = await h.connect(AGENT);
  observer = await h.connect(OBSERVER);
  raw = await openRawSession(h.gateway.url, h.token(AGENT));
});

afterAll(async () => {
  await h?.close();
});

/** How many sleep calls the upstream behind `via`'s gateway has run to completion. */
async function upstreamRuns(via: Client = observer): Promise<number> {
  const res = await via.callTool({ name: 'slow__cancellations', arguments: {} });
  expect(res.isError).toBeFalsy();
  return JSON.parse(textOf(res)).completed as number;
}

async function decidedRows(): Promise<number> {
  await h.flush();
  return h.rows({ event: 'call.decided', agent: AGENT }).length;
}

function call(id: number, params: unknown) {
  return { jsonrpc: '2.0', id, method: 'tools/call', params };
}

describe('malformed tools/call requests are JSON-RPC errors and never reach the upstream', () => {
  it.each([
    ['no params', undefined],
    ['params not an object', 'slow__sleep'],
    ['no name', { arguments: { ms: 1 } }],
    ['a name that is not a string', { name: 42, arguments: { ms: 1 } }],
    ['arguments as an array', { name: 'slow__sleep', arguments: [1, 2] }],
    ['arguments as a string', { name: 'slow__sleep', arguments: '{"ms":1}' }],
    ['arguments null', { name: 'slow__sleep', arguments: null }],
    // A well-formed task-augmented call is governed like any other: see gateway-tasks.test.ts.
    ['a task that is not an object', { name: 'slow__sleep', arguments: { ms: 1 }, task: 1000 }],
  ])('%s', async (_what, params) => {
    const runs = await upstreamRuns();
    const decided = await decidedRows();
    const reply = await raw.post(call(100, params));
    // The SDK answers a bad envelope with HTTP 400, bad tools/call params in the stream.
    expect([200, 400]).toContain(reply.status);
    expect(reply.messages).toHaveLength(1);
    expect(reply.messages[0]!.error).toMatchObject({ code: expect.any(Number), message: expect.any(String) });
    expect(reply.messages[0]!.result).toBeUndefined();
    expect(await upstreamRuns()).toBe(runs);
    expect(await decidedRows()).toBe(decided);
  });
});

describe('names that are not a granted <server>__<tool> are refused and audited', () => {
  it.each([
    'sleep',
    '__sleep',
    'slow__',
    'nosuch__sleep',
    'constructor__sleep',
    'hasOwnProperty__sleep',
    'toString__sleep',
    '__proto____sleep',
    'slow____proto__',
    'slow__constructor',
    'slow__toString',
    'tickets__close_ticket',
    `slow__${'x'.repeat(300)}`,
  ])('%s', async (name) => {
    const runs = await upstreamRuns();
    const res = await client.callTool({ name, arguments: { ms: 1 } });
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/^Refused by Warden: /);
    expect(await upstreamRuns()).toBe(runs);
    await h.flush();
    const row = h.rows({ event: 'call.decided', agent: AGENT }).at(-1)!;
    expect(row.decision).toBe('deny');
    expect(h.rows({ callId: row.call_id! }).map((r) => r.event)).toEqual(['call.decided']);
    expect((row.tool ?? '').length).toBeLessThanOrEqual(300);
  });
});

describe('arguments Warden could not record or show whole are refused', () => {
  async function refusedWith(args: unknown, problem: string, pattern: RegExp, viaText?: string): Promise<void> {
    const runs = await upstreamRuns();
    const reply = viaText
      ? await raw.post(viaText)
      : await raw.post(call(200, { name: 'slow__sleep', arguments: args }));
    expect(reply.status).toBe(200);
    const result = reply.messages[0]!.result;
    expect(result.isError).toBe(true);
    expect(result.content[0].text).toMatch(pattern);
    expect(await upstreamRuns()).toBe(runs);
    await h.flush();
    const row = h.rows({ event: 'call.decided', agent: AGENT }).at(-1)!;
    expect(row).toMatchObject({ decision: 'deny', tool: 'sleep' });
    expect(JSON.parse(row.detail!)).toMatchObject({ code: 'invalid_arguments', problem });
  }

  it('a constructor.prototype path (a prototype-pollution payload)', async () => {
    await refusedWith(
      { ms: 1, opts: { constructor: { prototype: { isAdmin: true } } } },
      'prototype_key',
      /arguments\.opts\.constructor\.prototype is a key Warden does not forward/,
    );
  });

  it('nesting deeper than 32 levels', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = { d: deep };
    await refusedWith({ ms: 1, deep }, 'too_deep', /nested deeper than 32 levels/);
  });

  it('nesting 100,000 levels deep (no stack overflow anywhere on the way)', async () => {
    const depth = 100_000;
    const text = `{"jsonrpc":"2.0","id":201,"method":"tools/call","params":{"name":"slow__sleep","arguments":{"ms":1,"deep":${'['.repeat(depth)}${']'.repeat(depth)}}}}`;
    await refusedWith(undefined, 'too_deep', /nested deeper than 32 levels/, text);
  });

  it('more than 64 KiB of arguments', async () => {
    await refusedWith({ ms: 1, note: 'x'.repeat(70 * 1024) }, 'too_large', /over Warden's limit of 65536 bytes/);
  });

  it('a body over the request limit is refused before it is read whole', async () => {
    const reply = await raw.post(
      call(202, { name: 'slow__sleep', arguments: { ms: 1, note: 'x'.repeat(5 * 1024 * 1024) } }),
    );
    expect(reply.status).toBe(413);
    expect(reply.messages[0]!.error.message).toMatch(/Payload too large/);
  });

  it('a __proto__ key anywhere in the request, spelled out or escaped, is refused at the edge and audited', async () => {
    const runs = await upstreamRuns();
    const bodies = [
      `{"jsonrpc":"2.0","id":203,"method":"tools/call","params":{"name":"slow__sleep","arguments":{"ms":1,"__proto__":{"ms":99999}}}}`,
      `{"jsonrpc":"2.0","id":204,"method":"tools/call","params":{"name":"slow__sleep","arguments":{"ms":1,"o":{"\\u005f_proto__":{"x":1}}}}}`,
      `{"jsonrpc":"2.0","id":205,"method":"tools/call","params":{"name":"slow__sleep","arguments":{"ms":1},"_meta":{"__proto__":{"progressToken":1}}}}`,
    ];
    for (const body of bodies) {
      const reply = await raw.post(body);
      expect(reply.status).toBe(400);
      expect(reply.messages[0]!.error).toMatchObject({ code: -32600 });
      expect(reply.messages[0]!.error.message).toMatch(/__proto__/);
    }
    expect(await upstreamRuns()).toBe(runs);
    await h.flush();
    const refused = h.rows({ event: 'request.refused', agent: AGENT });
    expect(refused.map((r) => JSON.parse(r.detail!).path)).toEqual([
      'body.params.arguments.__proto__',
      'body.params.arguments.o.__proto__',
      'body.params._meta.__proto__',
    ]);
  });

  it('plain arguments with ordinary keys still go through', async () => {
    const runs = await upstreamRuns();
    const res = await client.callTool({
      name: 'slow__sleep',
      arguments: { ms: 1, constructor: 'a string is data', prototype: 1 },
    });
    expect(res.isError).toBeFalsy();
    expect(await upstreamRuns()).toBe(runs + 1);
  });
});

describe('an approval binds the exact arguments', () => {
  it('refuses an approved call whose stored approval names other arguments, and never runs it', async () => {
    const email = (to: string) => ({ ticket_id: 'T-1001', to, subject: 'Hi', body: 'Hello.' });
    const held = client.callTool({ name: 'tickets__send_customer_email', arguments: email('ada@example.com') });
    const approval = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'a pending approval');
    // The stored row now vouches for different arguments (a tampered or confused database).
    h.db.prepare('UPDATE approvals SET args_hash = ? WHERE id = ?').run('0'.repeat(64), approval.id);
    expect((await h.approvals.decide(approval.id, 'U0123ABCD', 'approve')).ok).toBe(true);
    const res = await held;
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(
      /^Refused by Warden: tickets__send_customer_email was not run: the approval does not match these exact arguments/,
    );
    await h.flush();
    expect(h.rows({ callId: approval.callId }).at(-1)).toMatchObject({ event: 'call.completed', decision: 'blocked' });

    // The upstream never saw it: the next approved email is its first.
    const next = client.callTool({ name: 'tickets__send_customer_email', arguments: email('grace@example.com') });
    const second = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'the second approval');
    await h.approvals.decide(second.id, 'U0123ABCD', 'approve');
    expect(JSON.parse(textOf(await next))).toMatchObject({ sent: true, count: 1 });
  });
});

describe('a check that breaks is a refusal, never a pass', () => {
  /**
   * A gateway on the harness's database and services with one part swapped
   * for a breakable one; `runs` counts on this gateway's own upstream.
   */
  async function withGateway(
    overrides: Partial<StartGatewayOptions>,
    fn: (
      c: Client,
      runs: () => Promise<number>,
      connect: (agent: string, token?: string) => Promise<Client>,
    ) => Promise<void>,
  ): Promise<void> {
    const gw = await startGateway({
      policy: { current: () => h.policy },
      db: h.db,
      audit: h.audit,
      approvals: h.approvals,
      halt: h.killSwitch,
      alerts: h.alerts,
      logger: silentLogger(),
      connectUpstreamsAtStart: false,
      ...overrides,
    });
    const extra: Client[] = [];
    const connect = async (agent: string, token = h.token(agent)) => {
      const c = new Client({ name: `fault-${agent}`, version: '1' });
      await c.connect(
        new StreamableHTTPClientTransport(new URL(gw.url), {
          requestInit: { headers: { Authorization: `Bearer ${token}` } },
        }),
      );
      return c;
    };
    const c = await connect(AGENT);
    const obs = await connect(OBSERVER);
    try {
      await fn(
        c,
        () => upstreamRuns(obs),
        async (agent, token) => {
          const more = await connect(agent, token);
          extra.push(more);
          return more;
        },
      );
    } finally {
      await Promise.allSettled([c, obs, ...extra].map((x) => x.close()));
      await gw.close();
    }
  }

  async function lastDecided(tool: string) {
    await h.flush();
    return h
      .rows({ event: 'call.decided', agent: AGENT })
      .filter((r) => r.tool === tool)
      .at(-1)!;
  }

  async function expectRefused(c: Client, name: string, pattern: RegExp): Promise<void> {
    const res = await c.callTool({ name, arguments: { ms: 1 } });
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(pattern);
  }

  it('the kill switch check throws', async () => {
    let broken = false;
    // The real kill switch, with its check made to fail on demand for the agent under test.
    const halt: HaltCheck = {
      check(agent: string): HaltState | null {
        if (broken && agent === AGENT) throw new Error('control_state unreadable');
        return h.killSwitch.check(agent);
      },
      onHalt: (l) => h.killSwitch.onHalt(l),
    };
    await withGateway({ halt }, async (c, runs) => {
      expect((await c.callTool({ name: 'slow__sleep', arguments: { ms: 1 } })).isError).toBeFalsy();
      const before = await runs();
      broken = true;
      await expectRefused(
        c,
        'slow__sleep',
        /^Refused by Warden: Warden could not decide this call because one of its checks failed \(internal\)/,
      );
      expect(await runs()).toBe(before);
      const row = await lastDecided('sleep');
      expect(row.decision).toBe('error');
      expect(h.rows({ callId: row.call_id! }).map((r) => r.event)).toEqual(['call.decided']);
    });
  });

  it('the policy decision throws (a corrupt policy object)', async () => {
    const poisoned = structuredClone(h.policy) as Policy;
    Object.defineProperty(poisoned.servers.slow!, 'tools', {
      get() {
        throw new TypeError('corrupt policy');
      },
    });
    let broken = false;
    await withGateway({ policy: { current: () => (broken ? poisoned : h.policy) } }, async (c, runs) => {
      const before = await runs();
      broken = true;
      await expectRefused(c, 'slow__sleep', /^Refused by Warden: Warden could not decide this call/);
      broken = false;
      expect(await runs()).toBe(before);
      expect((await lastDecided('sleep')).decision).toBe('error');
    });
  });

  it('the policy source itself throws', async () => {
    let broken = false;
    const current = () => {
      if (broken) throw new Error('policy store unavailable');
      return h.policy;
    };
    await withGateway({ policy: { current } }, async (c, runs) => {
      const before = await runs();
      broken = true;
      await expectRefused(c, 'slow__sleep', /^Refused by Warden: Warden could not decide this call/);
      broken = false;
      expect(await runs()).toBe(before);
    });
  });

  const email = (to: string) => ({ ticket_id: 'T-1001', to, subject: 'Hi', body: 'Hello.' });

  it("the policy re-check after an approval throws: refused as Warden's own failure, audited, never forwarded", async () => {
    let broken = false;
    const current = () => {
      if (broken) throw new Error('policy store unavailable');
      return h.policy;
    };
    await withGateway({ policy: { current } }, async (c) => {
      const held = c.callTool({ name: 'tickets__send_customer_email', arguments: email('ada@example.com') });
      const approval = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'a pending approval');
      broken = true;
      expect((await h.approvals.decide(approval.id, 'U0123ABCD', 'approve')).ok).toBe(true);
      const res = await held;
      broken = false;
      expect(res.isError).toBe(true);
      const text = textOf(res);
      expect(text).toMatch(
        /^Refused by Warden: tickets__send_customer_email was not run: Warden's policy check after the approval failed \(internal\), so Warden refused the call/,
      );
      expect(text).not.toMatch(/upstream/);
      expect(text).not.toContain('policy store unavailable');
      await h.flush();
      const last = h.rows({ callId: approval.callId }).at(-1)!;
      expect(last).toMatchObject({ event: 'call.completed', decision: 'error', approver: 'U0123ABCD' });
      expect(JSON.parse(last.detail!)).toMatchObject({ code: 'internal', approvalId: approval.id });

      // The upstream never saw it: the next approved email is its first.
      const next = c.callTool({ name: 'tickets__send_customer_email', arguments: email('grace@example.com') });
      const second = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'the second approval');
      await h.approvals.decide(second.id, 'U0123ABCD', 'approve');
      expect(JSON.parse(textOf(await next))).toMatchObject({ sent: true, count: 1 });
    });
  });

  it('the token a held call was made with is revoked before the approval: refused after the approval, audited, never forwarded', async () => {
    await withGateway({}, async (c, _runs, connect) => {
      const token = createAgentToken(h.db, AGENT, { policy: h.policy });
      const agent = await connect(AGENT, token);
      const held = agent.callTool({ name: 'tickets__send_customer_email', arguments: email('ada@example.com') });
      const approval = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'a pending approval');
      // `warden agents revoke` from another process: only a database row changes.
      expect(revokeAgentToken(h.db, token)).toBe(true);
      expect((await h.approvals.decide(approval.id, 'U0123ABCD', 'approve')).ok).toBe(true);
      const res = await held;
      expect(res.isError).toBe(true);
      expect(textOf(res)).toBe(
        'Refused by Warden: tickets__send_customer_email was not run: the agent token it was made with has been revoked while it waited for approval',
      );
      await h.flush();
      const last = h.rows({ callId: approval.callId }).at(-1)!;
      expect(last).toMatchObject({ event: 'call.completed', decision: 'deny', approver: 'U0123ABCD' });
      expect(JSON.parse(last.detail!)).toMatchObject({ code: 'token_revoked', approvalId: approval.id });
      expect(h.approvals.get(approval.id)?.outcome).toMatchObject({ ok: false });

      // The agent's other, live token still works, and its email is the upstream's first.
      const next = c.callTool({ name: 'tickets__send_customer_email', arguments: email('grace@example.com') });
      const second = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'the second approval');
      await h.approvals.decide(second.id, 'U0123ABCD', 'approve');
      expect(JSON.parse(textOf(await next))).toMatchObject({ sent: true, count: 1 });
    });
  });

  it('the pin store cannot be read or written', async () => {
    await withGateway({}, async (c) => {
      // The upstream has not been started yet: its first tool list must be pinned before any use.
      h.db.exec('ALTER TABLE tool_pins RENAME TO tool_pins_unavailable');
      try {
        await expectRefused(c, 'slow__sleep', /^Refused by Warden: Warden could not reach upstream "slow"/);
      } finally {
        h.db.exec('ALTER TABLE tool_pins_unavailable RENAME TO tool_pins');
      }
      const row = await lastDecided('sleep');
      expect(row.decision).toBe('error');
      // Forwarding needs a durable call.decided allow first; this call never got one.
      expect(h.rows({ callId: row.call_id! }).map((r) => r.event)).toEqual(['call.decided']);
      expect((await c.callTool({ name: 'slow__sleep', arguments: { ms: 1 } })).isError).toBeFalsy();
    });
  });

  it('the audit log rejects every append: allowed, denied and odd-named calls are all refused', async () => {
    const audit = new AuditLog(h.db, { logger: silentLogger() });
    await audit.close();
    let broken = false;
    const closedOrLive = {
      append: (e: Parameters<AuditLog['append']>[0]) => (broken ? audit.append(e) : h.audit.append(e)),
    };
    await withGateway({ audit: closedOrLive }, async (c, runs) => {
      const before = await runs();
      broken = true;
      await expectRefused(c, 'slow__sleep', /audit_write_failed/);
      await expectRefused(c, 'tickets__close_ticket', /^Refused by Warden: ops has read scope on tickets/);
      await expectRefused(c, 'constructor__sleep', /^Refused by Warden: server "constructor" is not in the policy/);
      broken = false;
      expect(await runs()).toBe(before);
    });
  });
});

describe('argument checks (pure)', () => {
  it('names the path of the first problem, and accepts plain JSON', () => {
    expect(argumentProblem(undefined)).toBeNull();
    expect(argumentProblem({ a: [1, 'x', null, { b: true }] })).toBeNull();
    expect(argumentProblem([1])).toMatchObject({ code: 'not_an_object' });
    expect(argumentProblem({ a: [{ 'odd key': { __proto__: null, constructor: { prototype: 1 } } }] })).toMatchObject({
      code: 'prototype_key',
      message: expect.stringMatching(/^arguments\.a\[0\]\["odd key"\]\.constructor\.prototype /),
    });
    expect(argumentProblem({ a: new Date(0) })).toMatchObject({
      code: 'not_plain_json',
      message: expect.stringMatching(/^arguments\.a /),
    });
    expect(argumentProblem({ a: Number.NaN })).toMatchObject({ code: 'not_plain_json' });
    expect(argumentProblem({ a: 'é'.repeat(40) }, { maxBytes: 64, maxDepth: 4 })).toMatchObject({ code: 'too_large' });
    expect(findProtoKey(JSON.parse('{"a":[{"b":{"__proto__":1}}]}'))).toBe('body.a[0].b.__proto__');
    expect(findProtoKey({ a: [{ b: { c: 1 } }] })).toBeNull();
  });
});

// The gateway stays usable after all of the above.
it('still serves ordinary calls', async () => {
  const runs = await upstreamRuns();
  expect((await client.callTool({ name: 'slow__sleep', arguments: { ms: 1 } })).isError).toBeFalsy();
  expect(await upstreamRuns()).toBe(runs + 1);
});
