import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parsePolicy } from '../src/policy/load.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';

/**
 * Held calls with clients at their default request timeout semantics: the
 * SDK's Client gives up on a request after its timeout (60 s by default; 5 s
 * here) and does not reset it on progress unless asked. The agent's
 * answer_within (1 s here) answers first with "not run yet"; the call goes on,
 * runs once on approval, and the agent collects the result.
 */

const AGENT = 'mailer';
const OTHER = 'snoop';
const OWNER = 'U0123ABCD';
/** Well past answer_within (1 s), so a loaded machine still answers first; without resetTimeoutOnProgress. */
const CLIENT_TIMEOUT = { timeout: 5_000 };
let h: Harness;
let client: Client;
let other: Client;

beforeAll(async () => {
  h = await startHarness(`
servers:
  tickets:
    ${fixtureServer('helpdesk-server.ts', ['tickets'])}
    tools:
      read_ticket:         { scope: read }
      send_customer_email: { scope: write, consequence: customer-facing }
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read, write] }
    approval_timeout: 10m
    answer_within: 1s
    owner: ${OWNER}
  - agent: ${OTHER}
    mcp_scopes: { tickets: [read, write] }
    approval_timeout: 10m
    answer_within: 1s
    owner: ${OWNER}
  - agent: reader
    mcp_scopes: { tickets: [read] }
    owner: ${OWNER}
`);
  client = await h.connect(AGENT);
  other = await h.connect(OTHER);
});

afterAll(async () => {
  await h?.close();
});

let emails = 0;
const email = () => ({ ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body: `Hello (${++emails})` });

function approvalMeta(res: CallToolResult): { id: string; status: string; expires_at: string } {
  return (res._meta as Record<string, { id: string; status: string; expires_at: string }>)['warden/approval']!;
}

/** Sends a held call and returns its "not run yet" answer, which must come before the client's timeout. */
async function deferred(via: Client, args: Record<string, unknown>): Promise<CallToolResult> {
  const res = (await via.callTool(
    { name: 'tickets__send_customer_email', arguments: args },
    undefined,
    CLIENT_TIMEOUT,
  )) as CallToolResult;
  expect(res.isError).toBe(true);
  expect(textOf(res)).toMatch(/has NOT run yet/);
  return res;
}

async function sentCount(): Promise<number> {
  await h.flush();
  return h
    .rows({ event: 'call.completed', agent: AGENT })
    .filter((r) => r.tool === 'send_customer_email' && r.decision === 'ok').length;
}

describe('a held call answered before the client gives up', () => {
  it('says it has not run, with the approval id, where it waits, until when and what to do next', async () => {
    const args = email();
    const res = await deferred(client, args);
    const meta = approvalMeta(res);
    expect(meta).toMatchObject({ status: 'pending' });
    expect(meta.id).toMatch(/^apr_/);
    expect(Date.parse(meta.expires_at)).toBeGreaterThan(Date.now() + 5 * 60_000);
    const text = textOf(res);
    expect(text).toContain(meta.id);
    expect(text).toContain(`warden__await_approval with {"id": "${meta.id}"}`);
    expect(text).toMatch(/repeat this same call with the same arguments/);
    await h.flush();
    expect(h.rows({ event: 'approval.deferred', agent: AGENT }).at(-1)).toMatchObject({ decision: 'pending' });
    // Still pending: the deferral did not abandon it.
    expect(h.approvals.get(meta.id)?.status).toBe('pending');

    const before = await sentCount();
    expect((await h.approvals.decide(meta.id, OWNER, 'approve')).ok).toBe(true);
    // It runs at once on approval, with nobody waiting for it.
    await waitFor(async () => (await sentCount()) === before + 1, 'the approved call to run');

    const collected = (await client.callTool(
      { name: 'warden__await_approval', arguments: { id: meta.id } },
      undefined,
      CLIENT_TIMEOUT,
    )) as CallToolResult;
    expect(collected.isError).toBeFalsy();
    expect(JSON.parse(textOf(collected))).toMatchObject({ sent: true, to: 'ada@example.com' });
    await h.flush();
    expect(h.rows({ event: 'approval.collected', agent: AGENT }).at(-1)).toMatchObject({ decision: 'approved' });

    // Once only: the result is not handed out twice, and the call never ran twice.
    const again = (await client.callTool({
      name: 'warden__await_approval',
      arguments: { id: meta.id },
    })) as CallToolResult;
    expect(again.isError).toBe(true);
    expect(textOf(again)).toMatch(/no held call .* to collect/);
    expect(await sentCount()).toBe(before + 1);
  });

  it('an identical repeat attaches to the held call: no second card, no second run', async () => {
    const args = email();
    const first = await deferred(client, args);
    const id = approvalMeta(first).id;
    const repeat = await deferred(client, args);
    expect(approvalMeta(repeat).id).toBe(id);
    expect(h.approvals.pending({ agent: AGENT }).filter((a) => a.id !== id)).toEqual([]);

    const before = await sentCount();
    await h.approvals.decide(id, OWNER, 'approve');
    const result = (await client.callTool({ name: 'tickets__send_customer_email', arguments: args })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true });
    expect(await sentCount()).toBe(before + 1);
    await h.flush();
    expect(h.rows({ event: 'approval.collected', agent: AGENT }).at(-1)?.reason).toMatch(/repeating the same call/);
  });

  it('await_approval waits for a decision that comes while it waits', async () => {
    const id = approvalMeta(await deferred(client, email())).id;
    const waiting = client.callTool({ name: 'warden__await_approval', arguments: { id } }, undefined, CLIENT_TIMEOUT);
    await h.approvals.decide(id, OWNER, 'approve');
    const res = (await waiting) as CallToolResult;
    expect(res.isError).toBeFalsy();
    expect(JSON.parse(textOf(res))).toMatchObject({ sent: true });
  });

  it('answers "not run yet" again while nobody has decided', async () => {
    const id = approvalMeta(await deferred(client, email())).id;
    const res = (await client.callTool(
      { name: 'warden__await_approval', arguments: { id } },
      undefined,
      CLIENT_TIMEOUT,
    )) as CallToolResult;
    expect(res.isError).toBe(true);
    expect(approvalMeta(res)).toMatchObject({ id, status: 'pending' });
    await h.approvals.decide(id, OWNER, 'reject', 'not this one');
  });

  it('a rejection while deferred is what the agent collects; the call never runs', async () => {
    const id = approvalMeta(await deferred(client, email())).id;
    const before = await sentCount();
    await h.approvals.decide(id, OWNER, 'reject', 'wrong customer');
    const res = (await client.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/was not run: .*rejected.*wrong customer/);
    expect(await sentCount()).toBe(before);
  });

  it('another agent cannot collect it, nor learn that it exists', async () => {
    const id = approvalMeta(await deferred(client, email())).id;
    const res = (await other.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/no held call .* for snoop to collect/);
    await h.flush();
    expect(h.rows({ event: 'call.decided', agent: OTHER }).at(-1)).toMatchObject({
      server: 'warden',
      tool: 'await_approval',
      decision: 'deny',
    });
    // Still the owner's to collect.
    await h.approvals.decide(id, OWNER, 'approve');
    const mine = (await client.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
    expect(mine.isError).toBeFalsy();
  });

  it('outlives the connection that asked for it: collected from a new session after the first closed', async () => {
    const first = await h.connect(AGENT);
    const id = approvalMeta(await deferred(first, email())).id;
    await first.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(h.approvals.get(id)?.status).toBe('pending');
    await h.approvals.decide(id, OWNER, 'approve');
    const later = await h.connect(AGENT);
    const res = (await later.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
    expect(res.isError).toBeFalsy();
    expect(JSON.parse(textOf(res))).toMatchObject({ sent: true });
  });

  it('a halt cancels a deferred call and discards an uncollected result', async () => {
    const pendingId = approvalMeta(await deferred(client, email())).id;
    const decidedId = approvalMeta(await deferred(client, email())).id;
    const before = await sentCount();
    await h.approvals.decide(decidedId, OWNER, 'approve');
    await waitFor(async () => (await sentCount()) === before + 1, 'the approved call to run');

    await h.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'drill', actor: 'cli:test' });
    try {
      await waitFor(() => h.approvals.get(pendingId)?.status === 'cancelled', 'the pending approval to be cancelled');
      for (const id of [pendingId, decidedId]) {
        const res = (await client.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
        expect(res.isError).toBe(true);
        expect(textOf(res)).toMatch(/halted/);
        expect(textOf(res)).not.toMatch(/"sent":true/);
      }
    } finally {
      await h.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: 'cli:test' });
    }
    // The cancelled call never ran.
    expect(await sentCount()).toBe(before + 1);
  });
});

describe('warden__await_approval in tools/list and the policy', () => {
  it('is listed only for agents that can have held calls', async () => {
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toContain('warden__await_approval');
    const reader = await h.connect('reader');
    expect((await reader.listTools()).tools.map((t) => t.name)).not.toContain('warden__await_approval');
  });

  it('reserves "warden": no upstream server may take the name', () => {
    expect(() =>
      parsePolicy(
        `servers:\n  warden:\n    command: node\n    tools: {}\nagents:\n  - agent: a\n    mcp_scopes: { warden: [read] }\n`,
        'p.yml',
        {},
      ),
    ).toThrow(/servers\.warden: "warden" is reserved/);
  });

  it('answer_within: never holds the request open as before; a bad value names the field', () => {
    const base = `servers:\n  t:\n    command: node\n    tools: {}\nagent: a\nmcp_scopes: { t: [read] }\n`;
    expect(parsePolicy(`${base}answer_within: never\n`, 'p.yml', {}).agents.a?.answerWithinMs).toBeUndefined();
    expect(parsePolicy(base, 'p.yml', {}).agents.a?.answerWithinMs).toBe(45_000);
    expect(() => parsePolicy(`${base}answer_within: soon\n`, 'p.yml', {})).toThrow(/answer_within/);
  });
});
