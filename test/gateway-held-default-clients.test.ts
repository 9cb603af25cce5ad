import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ManualClock } from './support/manual-clock.ts';
import { fixtureServer, ROOT, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';

/**
 * Held calls with MCP clients exactly as people run them: the SDK's Client with no request
 * options (60 s timeout, not reset on progress), over Streamable HTTP and over stdio through
 * `warden connect`, and an agent with the default answer_within (45 s). The gateway runs on a
 * manual clock, so its 45 s pass at once; the clients keep their real, default timers.
 */

const AGENT = 'mailer';
const OWNER = 'U0123ABCD';
let h: Harness;
const clock = new ManualClock(Date.now());

beforeAll(async () => {
  h = await startHarness(
    `
servers:
  tickets:
    ${fixtureServer('helpdesk-server.ts', ['tickets'])}
    tools:
      read_ticket:         { scope: read }
      send_customer_email: { scope: write, consequence: customer-facing }
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read, write] }
    owner: ${OWNER}
`,
    { clock },
  );
});

afterAll(async () => {
  await h?.close();
});

function approvalMeta(res: CallToolResult): { id: string; status: string } | undefined {
  return (res._meta as Record<string, { id: string; status: string }> | undefined)?.['warden/approval'];
}

async function sent(body: string): Promise<number> {
  await h.flush();
  return h
    .rows({ event: 'call.completed', agent: AGENT })
    .filter((r) => r.tool === 'send_customer_email' && r.decision === 'ok' && String(r.args).includes(body)).length;
}

async function heldCallWithDefaults(client: Client, body: string): Promise<void> {
  const args = { ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body };
  // No options: the client's own defaults.
  const pendingAnswer = client.callTool({ name: 'tickets__send_customer_email', arguments: args });
  await waitFor(() => h.approvals.pending().some((p) => p.agent === AGENT), 'the call to be held');
  // answer_within, by default 45 s, passes on the gateway's clock.
  await clock.tick(45_000);
  const res = (await pendingAnswer) as CallToolResult;
  expect(res.isError).toBe(true);
  expect(textOf(res)).toMatch(/has NOT run yet/);
  const meta = approvalMeta(res);
  expect(meta).toMatchObject({ status: 'pending' });
  expect(await sent(body)).toBe(0);

  expect((await h.approvals.decide(meta!.id, OWNER, 'approve')).ok).toBe(true);
  await waitFor(async () => (await sent(body)) === 1, 'the approved call to run');
  const collected = (await client.callTool({
    name: 'warden__await_approval',
    arguments: { id: meta!.id },
  })) as CallToolResult;
  expect(collected.isError).toBeFalsy();
  expect(approvalMeta(collected)).toBeUndefined();
  expect(JSON.parse(textOf(collected))).toMatchObject({ sent: true, to: 'ada@example.com' });
  expect(await sent(body)).toBe(1);
}

describe('held calls with clients at their default settings', () => {
  it('the SDK Client over Streamable HTTP gets "not run yet" in time, then collects the one real run', async () => {
    const client = await h.connect(AGENT);
    await heldCallWithDefaults(client, 'over http');
  });

  it('the SDK Client over stdio through `warden connect` does the same', async () => {
    const client = new Client({ name: 'stdio-agent', version: '1' });
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', join(ROOT, 'src/cli/index.ts'), 'connect', '--agent', AGENT, '--url', h.gateway.url],
      cwd: ROOT,
      env: { LOG_LEVEL: 'warn', WARDEN_AGENT_TOKEN: h.token(AGENT) },
      stderr: 'pipe',
    });
    await client.connect(transport);
    try {
      await heldCallWithDefaults(client, 'over stdio');
    } finally {
      await client.close();
    }
  });
});
