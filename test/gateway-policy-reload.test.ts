import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { silentLogger } from '../src/logger.ts';
import { PolicyStore } from '../src/policy/store.ts';
import { startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';

/**
 * A policy reload is seen by connected agents at once: they are told their
 * tool list changed, the next tools/list shows the new grants, the very next
 * call to a tool taken away is refused, and a call approved under the old
 * policy does not outlive it.
 */

const AGENT = 'support-triage';
const OWNER = 'U0123ABCD';

const servers = helpdeskServersYaml(['tickets', 'kb']);

const BEFORE = `${servers}
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    approval_timeout: 10m
    owner: ${OWNER}
`;

const AFTER = `${servers}
agents:
  - agent: ${AGENT}
    mcp_scopes: { kb: [read] }
    approval_timeout: 10m
    owner: ${OWNER}
`;

let dir: string;
let file: string;
let store: PolicyStore;
let h: Harness;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-reload-'));
  file = join(dir, 'policy.yml');
  writeFileSync(file, BEFORE);
  store = new PolicyStore(file, { logger: silentLogger(), env: {} });
  h = await startHarness(BEFORE, { policy: store });
});

afterAll(async () => {
  await h?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  writeFileSync(file, BEFORE);
  expect(store.reload()).toEqual({ ok: true });
});

/** A client that counts notifications/tools/list_changed. */
async function watchingClient(): Promise<{ client: Client; changes: () => number }> {
  const client = await h.connect(AGENT);
  let n = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    n++;
  });
  return { client, changes: () => n };
}

/**
 * Writes the file and reloads until the client has heard about it: the
 * notification travels on the client's standalone GET stream, which it opens
 * on its own schedule right after initializing. Reloading an unchanged file
 * again is harmless.
 */
async function reloadUntilNotified(text: string, changes: () => number): Promise<void> {
  writeFileSync(file, text);
  const before = changes();
  await waitFor(() => {
    expect(store.reload()).toEqual({ ok: true });
    return changes() > before;
  }, 'notifications/tools/list_changed');
}

async function names(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name).sort();
}

describe('policy reload', () => {
  it('tells connected agents their tools changed; tools/list and the very next call follow the new policy', async () => {
    const { client, changes } = await watchingClient();
    expect(await names(client)).toEqual([
      'tickets__list_tickets',
      'tickets__read_ticket',
      'tickets__send_customer_email',
      // send_customer_email may be held, so the agent can collect it.
      'warden__await_approval',
    ]);
    expect((await client.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } })).isError).toBeFalsy();

    await reloadUntilNotified(AFTER, changes);
    expect(await names(client)).toEqual(['kb__search_kb']);

    const refused = await client.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1001' } });
    expect(refused.isError).toBe(true);
    expect(textOf(refused)).toMatch(/^Refused by Warden: support-triage has no scope on tickets/);
    expect(textOf(refused)).not.toContain('Cannot log in');
    await h.flush();
    const decided = h.rows({ event: 'call.decided', agent: AGENT }).at(-1)!;
    expect(decided).toMatchObject({ tool: 'read_ticket', decision: 'deny' });
    expect(JSON.parse(decided.detail!)).toMatchObject({ code: 'out_of_scope' });
    expect(h.rows({ callId: decided.call_id! }).map((r) => r.event)).toEqual(['call.decided']);

    const granted = await client.callTool({ name: 'kb__search_kb', arguments: { query: 'refund' } });
    expect(granted.isError).toBeFalsy();
    expect(textOf(granted)).toContain('Refund policy');
  });

  it('keeps the last good policy (and tells nobody) when the reloaded file is invalid', async () => {
    const { client, changes } = await watchingClient();
    const before = await names(client);
    // A notification reaches the client only once its GET stream is open: hear one first, then let any
    // extra ones from those reloads arrive, so a notification sent for the bad file would be counted.
    await reloadUntilNotified(BEFORE, changes);
    await new Promise((r) => setTimeout(r, 200));
    const heard = changes();
    writeFileSync(file, 'agents: [ { agent: support-triage, mcp_scopes: nonsense } ]\n');
    const result = store.reload();
    expect(result.ok).toBe(false);
    expect(await names(client)).toEqual(before);
    await new Promise((r) => setTimeout(r, 200));
    expect(changes()).toBe(heard);
    expect((await client.callTool({ name: 'tickets__read_ticket', arguments: { id: 'T-1002' } })).isError).toBeFalsy();
  });

  it('refuses a held call approved after a reload took the tool away, and never runs it', async () => {
    const { client, changes } = await watchingClient();
    const email = (to: string) => ({ ticket_id: 'T-1002', to, subject: 'Refund', body: 'Done.' });
    const held = client.callTool({ name: 'tickets__send_customer_email', arguments: email('grace@example.com') });
    const approval = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'a pending approval');

    await reloadUntilNotified(AFTER, changes);
    expect((await h.approvals.decide(approval.id, OWNER, 'approve')).ok).toBe(true);
    const res = await held;
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/was approved but not run: the policy changed while it waited/);
    await h.flush();
    expect(h.rows({ callId: approval.callId }).at(-1)).toMatchObject({
      event: 'call.completed',
      decision: 'deny',
      approver: OWNER,
    });
    expect(h.approvals.get(approval.id)?.outcome).toMatchObject({ ok: false });

    // Proof the upstream never saw it: with the old policy back, the next approved email is its first.
    await reloadUntilNotified(BEFORE, changes);
    const next = client.callTool({ name: 'tickets__send_customer_email', arguments: email('ada@example.com') });
    const again = await waitFor(() => h.approvals.pending({ agent: AGENT })[0], 'the second approval');
    await h.approvals.decide(again.id, OWNER, 'approve');
    expect(JSON.parse(textOf(await next))).toMatchObject({ sent: true, to: 'ada@example.com', count: 1 });
  });
});
