import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { HaltCheck, HaltState } from '../src/control/types.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';

/*
 * Two paths the rest of the suite never takes alone:
 * - an upstream that answers tools/call with a JSON-RPC error (McpError);
 * - a halt the gateway learns of only by asking (no onHalt event), between
 *   an approval and the forward: the re-check just before forwarding is the
 *   only thing that can stop that call.
 */

/** A kill switch the test sets by hand and that never calls its listeners. */
class SilentHalt implements HaltCheck {
  state: HaltState | 'throw' | null = null;
  check(_agent: string): HaltState | null {
    if (this.state === 'throw') throw new Error('halt store unreadable');
    return this.state;
  }
  onHalt(): () => void {
    return () => undefined;
  }
}

const POLICY = `
${helpdeskServersYaml(['tickets'])}
  orders:
    ${fixtureServer('jsonrpc-error-server.ts')}
    tools:
      lookup_order: { scope: read }
      cancel_order: { scope: write, consequence: irreversible }
      ping:         { scope: read }
agents:
  - agent: support-triage
    mcp_scopes:
      tickets: [read, write]
      orders:  [read, write]
    approval_required: [send_customer_email, orders__cancel_order]
    approval_timeout: 5m
    owner: U0123ABCD
    approvers: [U0456EFGH]
`;

const halt = new SilentHalt();
let h: Harness;
let c: Client;

beforeAll(async () => {
  h = await startHarness(POLICY, { halt });
  c = await h.connect('support-triage');
});

afterAll(async () => {
  await h?.close();
});

beforeEach(() => {
  halt.state = null;
});

/** Starts a held call, waits for its approval request, runs `meanwhile`, approves, and returns the agent's answer. */
async function approvedCall(name: string, args: Record<string, unknown>, meanwhile: () => void = () => undefined) {
  const answer: Promise<{ result?: CallToolResult | undefined; error?: unknown }> = c
    .callTool({ name, arguments: args })
    .then(
      (result) => ({ result: result as CallToolResult }),
      (error: unknown) => ({ error }),
    );
  const waiting = await waitFor(() => h.approvals.pending({ agent: 'support-triage' })[0], 'a pending approval');
  meanwhile();
  await h.approvals.decide(waiting.id, 'U0456EFGH', 'approve');
  const outcome = await answer;
  await h.flush();
  return { ...outcome, approvalId: waiting.id, callId: waiting.callId };
}

const email = (subject: string) => ({ ticket_id: 'T-1001', to: 'ada@example.com', subject, body: 'Hello.' });

describe('an upstream that answers with a JSON-RPC error', () => {
  it('relays the code to the agent and records call.completed with decision error and that code', async () => {
    const err = await c.callTool({ name: 'orders__lookup_order', arguments: { id: 'O-42' } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32002);
    expect((err as McpError).message).toMatch(/order O-42 not found/);
    await h.flush();
    const decided = h.rows({ event: 'call.decided', agent: 'support-triage' }).filter((r) => r.tool === 'lookup_order');
    expect(decided).toHaveLength(1);
    const rows = h.rows({ callId: decided[0]!.call_id! });
    expect(rows.map((r) => r.event)).toEqual(['call.decided', 'call.completed']);
    const completed = rows[1]!;
    expect(completed).toMatchObject({ decision: 'error', server: 'orders', tool: 'lookup_order' });
    expect(completed.reason).toMatch(/order O-42 not found/);
    expect(JSON.parse(completed.detail!)).toMatchObject({ code: 'upstream_error', rpcCode: -32002 });
  });

  it('a held call that the upstream fails after approval: the agent gets the code, the trail the error, the approval a failed outcome', async () => {
    const { error, result, approvalId, callId } = await approvedCall('orders__cancel_order', { id: 'O-7' });
    expect(result).toBeUndefined();
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).code).toBe(-32003);
    const completed = h.rows({ callId, event: 'call.completed' });
    expect(completed).toHaveLength(1);
    expect(completed[0]).toMatchObject({ decision: 'error', approver: 'U0456EFGH' });
    expect(JSON.parse(completed[0]!.detail!)).toEqual({ approvalId, code: 'upstream_error', rpcCode: -32003 });
    expect(h.approvals.get(approvalId)?.outcome).toMatchObject({ ok: false });
    expect(h.approvals.get(approvalId)?.outcome?.summary).toMatch(/order O-7 is already shipped/);
  });

  it('the same upstream still answers a healthy tool (the error was the tool’s, not the connection’s)', async () => {
    const res = await c.callTool({ name: 'orders__ping', arguments: {} });
    expect(textOf(res)).toBe('pong');
  });
});

describe('a halt seen only by the re-check before forwarding', () => {
  /** The helpdesk fixture counts the emails it has sent: the count proves whether a refused call reached it. */
  const sentCount = (res: unknown) => JSON.parse(textOf(res)).count as number;

  it('an approved call is refused, not forwarded, when the agent was halted while it waited (no halt event)', async () => {
    const before = await approvedCall('tickets__send_customer_email', email('first'));
    const n = sentCount(before.result);

    const halted = await approvedCall('tickets__send_customer_email', email('during the halt'), () => {
      halt.state = { scope: 'agent', agent: 'support-triage', reason: 'runaway emails', actor: 'U0123ABCD', at: 0 };
    });
    expect(halted.error).toBeUndefined();
    expect(halted.result).toMatchObject({ isError: true });
    expect(textOf(halted.result)).toMatch(/Refused by Warden: .*halted by U0123ABCD: runaway emails/);
    const completed = h.rows({ callId: halted.callId, event: 'call.completed' });
    expect(completed).toHaveLength(1);
    expect(completed[0]).toMatchObject({ decision: 'cancelled' });
    expect(JSON.parse(completed[0]!.detail!)).toMatchObject({ code: 'halted', approvalId: halted.approvalId });
    expect(h.approvals.get(halted.approvalId)?.outcome).toMatchObject({ ok: false });

    halt.state = null;
    const after = await approvedCall('tickets__send_customer_email', email('after the resume'));
    expect(sentCount(after.result)).toBe(n + 1);
  });

  it('an approved call is refused, not forwarded, when the halt check throws just before forwarding', async () => {
    const before = await approvedCall('tickets__send_customer_email', email('first'));
    const n = sentCount(before.result);

    const failed = await approvedCall('tickets__send_customer_email', email('while the check fails'), () => {
      halt.state = 'throw';
    });
    expect(failed.result).toMatchObject({ isError: true });
    expect(textOf(failed.result)).toMatch(/Refused by Warden: .*kill switch could not be checked/);
    const completed = h.rows({ callId: failed.callId, event: 'call.completed' });
    expect(completed).toHaveLength(1);
    expect(completed[0]).toMatchObject({ decision: 'error' });
    expect(JSON.parse(completed[0]!.detail!)).toMatchObject({ code: 'internal' });
    expect(h.approvals.get(failed.approvalId)?.outcome).toMatchObject({ ok: false });

    halt.state = null;
    const after = await approvedCall('tickets__send_customer_email', email('after'));
    expect(sentCount(after.result)).toBe(n + 1);
  });
});
