import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
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
const POLICY = `
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
`;

beforeAll(async () => {
  h = await startHarness(POLICY, { clock });
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

const emailArgs = (body: string) => ({ ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body });

/** A held call with no client options, answered "not run yet" once the default answer_within passes. */
async function deferWithDefaults(client: Client, body: string): Promise<{ id: string; status: string }> {
  // No options: the client's own defaults.
  const pendingAnswer = client.callTool({ name: 'tickets__send_customer_email', arguments: emailArgs(body) });
  await waitFor(() => h.approvals.pending().some((p) => p.agent === AGENT), 'the call to be held');
  // answer_within, by default 45 s, passes on the gateway's clock.
  await clock.tick(45_000);
  const res = (await pendingAnswer) as CallToolResult;
  expect(res.isError).toBe(true);
  expect(textOf(res)).toMatch(/has NOT run yet/);
  const meta = approvalMeta(res);
  expect(meta).toMatchObject({ status: 'pending' });
  expect(await sent(body)).toBe(0);
  return meta!;
}

async function heldCallWithDefaults(client: Client, body: string): Promise<void> {
  const meta = await deferWithDefaults(client, body);

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

  it('approved from the terminal (`warden approvals approve`), collected by repeating the same call', async () => {
    const client = await h.connect(AGENT);
    const meta = await deferWithDefaults(client, 'from the cli');
    const policyPath = join(h.dir, 'policy.yml');
    writeFileSync(policyPath, POLICY);
    const cli = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/index.ts'), 'approvals', 'approve', meta.id, '--as', OWNER],
      { cwd: ROOT, env: { ...process.env, WARDEN_DB: join(h.dir, 'warden.db'), WARDEN_POLICY: policyPath } },
    );
    expect(cli.stdout).toContain(`${meta.id}: approved by ${OWNER}`);
    // The gateway's process sees the decision in the database and runs the call, once.
    await waitFor(async () => (await sent('from the cli')) === 1, 'the approved call to run');
    const repeat = (await client.callTool({
      name: 'tickets__send_customer_email',
      arguments: emailArgs('from the cli'),
    })) as CallToolResult;
    expect(repeat.isError).toBeFalsy();
    expect(JSON.parse(textOf(repeat))).toMatchObject({ sent: true });
    expect(await sent('from the cli')).toBe(1);
    expect(h.approvals.pending()).toHaveLength(0);
  });
});
