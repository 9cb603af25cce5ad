import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyChain } from '../src/audit/index.ts';
import type { AuditRow } from '../src/audit/types.ts';
import { startWarden, type Warden } from '../src/cli/runtime.ts';
import { loadConfig } from '../src/config/index.ts';
import { createAgentToken } from '../src/gateway/index.ts';
import { revokeAgentTokens } from '../src/gateway/tokens.ts';
import { silentLogger } from '../src/logger.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { textOf, waitFor } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';
import { startSlackApiServer, type RecordedCall, type SlackApiServer } from './support/slack-api-server.ts';
import { SlackRequestSender } from './support/slack-sign.ts';
import { approvalIdOf, BOT_TOKEN, SIGNING_SECRET } from './support/slack-harness.ts';
import { storeLocation } from './support/store-under-test.ts';

/**
 * Held calls that outlive Warden's process. The composition root `warden
 * serve` runs (startWarden), with Slack over HTTP: the Bolt receiver on
 * loopback, its Web API client pointed at the local Slack API server. An agent
 * (the SDK's Client, with a request timeout shorter than any approval) is told
 * "not run yet"; Warden stops; a new Warden on the same database file takes
 * the approval over; a real signed click approves it; the new process runs
 * the call once with the stored arguments; the agent collects it once. The
 * exact arguments live in held_calls only until the call ends.
 */

const AGENT = 'mailer';
const OWNER = 'U0OWNER1';
const CHANNEL = 'C0APPROVALS';
// Shorter than every approval here (the shortest expires at 4 s), yet with room for a loaded machine:
// at 3 s, two tests timed out once while a mutation run shared the two cores.
const CLIENT_TIMEOUT = { timeout: 3_900 };
/** Looks like an API key: redacted in the audit trail and on the card, kept exactly for the call itself. */
const SECRET = 'sk-live0123456789abcdefABCDEF';

/** Held calls of `brief` expire 4 s after they are held. */
const BRIEF = 'brief-mailer';
const POLICY = `
${helpdeskServersYaml(['tickets'])}
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read, write] }
    owner: ${OWNER}
    channel: ${CHANNEL}
    approval_timeout: 10m
    answer_within: 1s
  - agent: ${BRIEF}
    mcp_scopes: { tickets: [read, write] }
    owner: ${OWNER}
    channel: ${CHANNEL}
    approval_timeout: 4s
    answer_within: 1s
`;

let dir: string;
/** The store every Warden process and CLI of a test shares: a SQLite file in `dir`, or a fresh PostgreSQL schema. */
let store: string;
let slack: SlackApiServer;
let token: string;
const running: Warden[] = [];
const children: ChildProcess[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  slack = await startSlackApiServer({ botToken: BOT_TOKEN });
});

afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  for (const warden of running.splice(0)) await warden.close();
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  if (dir) rmSync(dir, { recursive: true, force: true });
});

afterAll(async () => {
  await slack?.close();
});

function env(): Record<string, string> {
  return {
    WARDEN_DB: store,
    WARDEN_POLICY: join(dir, 'policy.yml'),
    WARDEN_HOST: '127.0.0.1',
    WARDEN_PORT: '0',
    LOG_LEVEL: 'silent',
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_PORT: '0',
    SLACK_API_URL: slack.apiUrl,
  };
}

function config() {
  return loadConfig(env());
}

interface ServeChild {
  url: string;
  slackPort: number;
  child: ChildProcess;
}

/** `warden serve` as its own process, as `npm start` runs it; resolves once it says where it listens. */
function serve(): Promise<ServeChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'serve'], {
    env: { ...process.env, ...env(), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          const log = JSON.parse(line) as { msg?: string; gateway?: string; slackPort?: number };
          if (log.msg?.startsWith('Warden is running'))
            resolve({ url: log.gateway!, slackPort: log.slackPort!, child });
        } catch {
          // Not a log line.
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`warden serve exited (${code}) before it was running`)));
  });
}

/** The `warden` CLI, as an operator runs it while no Warden is serving. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/index.ts', ...args],
      { env: { ...process.env, ...env() } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

/** Reads (and writes) the database file as another process would. */
function withDb<T>(use: (db: Db) => T): T {
  const db = openDb(store);
  try {
    return use(db);
  } finally {
    db.close();
  }
}

/** A fresh temp dir with the policy file; the agent's token is made on the first start. */
async function prepare(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'warden-held-'));
  store = await storeLocation(dir);
  token = '';
  writeFileSync(join(dir, 'policy.yml'), POLICY);
}

async function start(): Promise<Warden> {
  const warden = await startWarden(config(), { logger: silentLogger(), env: {} });
  running.push(warden);
  token ||= createAgentToken(warden.db, AGENT, { policy: warden.policy.current() });
  return warden;
}

async function stop(warden: Warden): Promise<void> {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  running.splice(running.indexOf(warden), 1);
  await warden.close();
}

async function connect(warden: Warden | string, bearer = token): Promise<Client> {
  const client = new Client({ name: AGENT, version: '1.0.0' });
  const url = typeof warden === 'string' ? warden : warden.gateway.url;
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${bearer}` } },
    }),
  );
  clients.push(client);
  return client;
}

let emails = 0;
function email(): Record<string, unknown> {
  return {
    ticket_id: 'T-1001',
    to: 'ada@example.com',
    subject: 'Your refund',
    body: `Hello Ada (${++emails}); reference api_key=${SECRET}`,
  };
}

/** Sends a held call; the "not run yet" answer comes before the client gives up. Returns the approval id. */
async function defer(client: Client, args: Record<string, unknown>): Promise<string> {
  const res = (await client.callTool(
    { name: 'tickets__send_customer_email', arguments: args },
    undefined,
    CLIENT_TIMEOUT,
  )) as CallToolResult;
  expect(res.isError).toBe(true);
  expect(textOf(res)).toMatch(/has NOT run yet/);
  return (res._meta as Record<string, { id: string }>)['warden/approval']!.id;
}

async function cardFor(approvalId: string): Promise<RecordedCall> {
  return slack.waitForCall(
    'chat.postMessage',
    (c) => Array.isArray(c.args.blocks) && JSON.stringify(c.args.blocks).includes(approvalId),
    20_000,
  );
}

/** A real signed click on the card's Approve button, into this Warden's Bolt receiver. */
async function clickApprove(warden: Warden | ServeChild, card: RecordedCall): Promise<void> {
  const sender = new SlackRequestSender(`http://127.0.0.1:${warden.slackPort}/slack/events`, SIGNING_SECRET);
  const click = await sender.blockAction({
    user: OWNER,
    actionId: 'approval_approve',
    value: approvalIdOf(card),
    channel: CHANNEL,
    messageTs: card.response!.ts as string,
  });
  expect(click.status).toBe(200);
}

/** Collects with the SDK's default request timeout: only the deferral has to beat a short one. */
async function collect(client: Client, id: string): Promise<CallToolResult> {
  return (await client.callTool({ name: 'warden__await_approval', arguments: { id } })) as CallToolResult;
}

interface HeldRow {
  approval_id: string;
  args: string | null;
  ending: string | null;
}

/** Read straight from the file, as an operator (or an attacker with the file) would see it. */
function heldRows(): HeldRow[] {
  return withDb(
    (db) => db.prepare('SELECT approval_id, args, ending FROM held_calls ORDER BY approval_id').all() as HeldRow[],
  );
}

function auditRows(warden: Warden, event: string): AuditRow[] {
  return warden.db.prepare('SELECT * FROM audit WHERE event = ? ORDER BY seq').all(event) as AuditRow[];
}

function completedOk(warden: Warden | undefined, approvalId: string): AuditRow[] {
  const rows = warden
    ? auditRows(warden, 'call.completed')
    : withDb((db) => auditRows({ db } as Warden, 'call.completed'));
  return rows.filter((r) => r.decision === 'ok' && String(r.detail ?? '').includes(approvalId));
}

function approvalStatus(approvalId: string): string | undefined {
  return withDb((db) => db.prepare('SELECT status FROM approvals WHERE id = ?').pluck().get(approvalId) as string);
}

describe('a deferred held call survives a restart', () => {
  it('is approved by a Slack click in the new process, runs there once with the stored arguments, and is collected once', async () => {
    await prepare();
    const first = await start();
    const args = email();
    const id = await defer(await connect(first), args);
    const card = await cardFor(id);
    // The exact arguments are stored (to run the call later); the trail and the card only have them redacted.
    expect(heldRows()).toEqual([expect.objectContaining({ approval_id: id, ending: null })]);
    expect(JSON.parse(heldRows()[0]!.args!)).toEqual(args);
    await first.audit.flush();
    expect(JSON.stringify(first.db.prepare('SELECT * FROM audit').all())).not.toContain(SECRET);
    expect(JSON.stringify(card.args.blocks)).not.toContain(SECRET);

    await stop(first);
    const second = await start();
    // Not abandoned by the restart: the new process took it over.
    expect(second.approvals.get(id)?.status).toBe('pending');
    expect(second.approvals.get(id)?.processId).toBe(second.approvals.processId);

    // Nobody is waiting for it: the click alone makes it run.
    await clickApprove(second, card);
    await waitFor(() => completedOk(second, id).length === 1, 'the approved call to run in the new process');
    // Its arguments are erased as soon as it ran; the ending waits for the agent.
    await waitFor(() => heldRows()[0]?.ending, 'the ending to be stored');
    expect(heldRows()).toEqual([expect.objectContaining({ approval_id: id, args: null })]);

    const client = await connect(second);
    const result = await collect(client, id);
    expect(result.isError).toBeFalsy();
    // count: 1 is the fixture's own count of emails sent by this upstream process: it ran once.
    expect(JSON.parse(textOf(result))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    // The same card, redrawn by the new process, and how the call went in its thread.
    const ts = card.response!.ts as string;
    await slack.waitForCall(
      'chat.update',
      (c) => c.args.ts === ts && JSON.stringify(c.args.blocks).includes(`Approved* by <@${OWNER}>`),
    );
    const outcome = await slack.waitForCall(
      'chat.postMessage',
      (c) => c.args.thread_ts === ts && JSON.stringify(c.args).includes('ada@example.com'),
    );
    expect(JSON.stringify(outcome.args)).not.toContain(SECRET);

    const again = await collect(client, id);
    expect(again.isError).toBe(true);
    expect(textOf(again)).toMatch(/no held call .* to collect/);

    expect(heldRows()).toEqual([]);
    await second.audit.flush();
    expect(completedOk(second, id)).toHaveLength(1);
    const callId = second.approvals.get(id)!.callId;
    // One story for the one call: decided by the first process, completed by the second.
    expect(
      second.db.prepare("SELECT event FROM audit WHERE call_id = ? AND event LIKE 'call.%' ORDER BY seq").all(callId),
    ).toEqual([{ event: 'call.decided' }, { event: 'call.completed' }]);
    expect(auditRows(second, 'approval.collected')).toHaveLength(1);
    expect(JSON.stringify(second.db.prepare('SELECT * FROM audit').all())).not.toContain(SECRET);
    expect(verifyChain(second.db)).toMatchObject({ ok: true });
  });

  it('an identical repeat after the restart attaches to the held call and collects it', async () => {
    await prepare();
    const first = await start();
    const args = email();
    const id = await defer(await connect(first), args);
    const card = await cardFor(id);
    await stop(first);

    const second = await start();
    const client = await connect(second);
    // Still waiting: the repeat is told "not run yet" with the same approval, and no second card is posted.
    expect(await defer(client, args)).toBe(id);
    expect(second.approvals.pending({ agent: AGENT }).map((a) => a.id)).toEqual([id]);

    await clickApprove(second, card);
    await waitFor(() => completedOk(second, id).length === 1, 'the approved call to run');
    const result = (await client.callTool({
      name: 'tickets__send_customer_email',
      arguments: args,
    })) as CallToolResult;
    expect(result.isError).toBeFalsy();
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true, count: 1 });
    expect(heldRows()).toEqual([]);
  });
});

describe('a deferred held call survives a crash', () => {
  it('warden serve is killed (SIGKILL); the next one takes the call over and a click runs it once', async () => {
    await prepare();
    token = withDb((db) => createAgentToken(db, AGENT));
    const first = await serve();
    const id = await defer(await connect(first.url), email());
    const card = await cardFor(id);
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    expect(approvalStatus(id)).toBe('pending');

    const second = await serve();
    await clickApprove(second, card);
    await waitFor(() => completedOk(undefined, id).length === 1, 'the approved call to run in the new process');
    const client = await connect(second.url);
    const result = await collect(client, id);
    expect(JSON.parse(textOf(result))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    expect(textOf(await collect(client, id))).toMatch(/no held call .* to collect/);
    expect(heldRows()).toEqual([]);
    expect(completedOk(undefined, id)).toHaveLength(1);
  });

  it('approved with the CLI while no Warden runs: the next Warden runs it once at start-up', async () => {
    await prepare();
    const first = await start();
    const id = await defer(await connect(first), email());
    await stop(first);
    const approved = await cli(['approvals', 'approve', id, '--as', OWNER]);
    expect(approved.stdout).toBe(`${id}: approved by ${OWNER}\n`);

    const second = await start();
    await waitFor(() => completedOk(second, id).length === 1, 'the approved call to run at start-up');
    const client = await connect(second);
    expect(JSON.parse(textOf(await collect(client, id)))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    await stop(second);
    // Taken and run once: a third start finds nothing to run.
    const third = await start();
    await third.audit.flush();
    expect(completedOk(third, id)).toHaveLength(1);
    expect(heldRows()).toEqual([]);
  });

  it('its agent token revoked while Warden was down: approved in the new process, it is not run', async () => {
    await prepare();
    const first = await start();
    const id = await defer(await connect(first), email());
    const card = await cardFor(id);
    await stop(first);
    withDb((db) => revokeAgentTokens(db, AGENT));

    const second = await start();
    token = createAgentToken(second.db, AGENT);
    await clickApprove(second, card);
    await waitFor(() => heldRows()[0]?.ending, 'the ending to be stored');
    await second.audit.flush();
    expect(completedOk(second, id)).toEqual([]);
    const completed = auditRows(second, 'call.completed').filter((r) => String(r.detail).includes(id));
    expect(completed).toMatchObject([{ decision: 'deny' }]);
    expect(String(completed[0]!.detail)).toContain('token_revoked');
    const res = await collect(await connect(second), id);
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/token it was made with has been revoked/);
    expect(heldRows()).toEqual([]);
  });

  it('halted in the new process while it waits: ended by the same outcome table as any call, and never run', async () => {
    await prepare();
    const first = await start();
    const id = await defer(await connect(first), email());
    await cardFor(id);
    await stop(first);

    const second = await start();
    await second.control.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'drill', actor: 'cli:test' });
    await waitFor(() => approvalStatus(id) === 'cancelled', 'the halt to cancel the approval');
    await waitFor(() => heldRows()[0]?.ending, 'the ending to be stored');
    await second.audit.flush();
    const completed = auditRows(second, 'call.completed').filter((r) => String(r.detail).includes(id));
    // One call.completed, from the one table: the refusal's text, decision and code, the approval, and that it was taken over.
    expect(completed).toMatchObject([{ decision: 'cancelled' }]);
    expect(completed[0]!.reason).toMatch(/^tickets__send_customer_email was not run: .*cancelled/);
    expect(JSON.parse(completed[0]!.detail!)).toMatchObject({ approvalId: id, adopted: true });
    await second.control.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: 'cli:test' });
    const res = await collect(await connect(second), id);
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/^Refused by Warden: tickets__send_customer_email was not run: .*cancelled/);
    expect(completedOk(second, id)).toEqual([]);
  });

  it('its expiry is kept by the new process: nobody decides, it is refused, and its row is erased', async () => {
    await prepare();
    const first = await start();
    const briefToken = createAgentToken(first.db, BRIEF, { policy: first.policy.current() });
    const id = await defer(await connect(first, briefToken), email());
    await stop(first);
    const second = await start();
    await waitFor(() => approvalStatus(id) === 'expired', 'the approval to expire in the new process');
    await waitFor(() => heldRows().length === 0, 'the held call to be erased at its expiry');
    const res = await collect(await connect(second, briefToken), id);
    expect(res.isError).toBe(true);
    expect(textOf(res)).toMatch(/no held call/);
    await second.audit.flush();
    expect(auditRows(second, 'call.completed').filter((r) => r.decision === 'expired')).toHaveLength(1);
  });
});

describe('a deferred held call in one process', () => {
  it('a Slack click runs it at once, exactly once, with its agent gone; the agent collects it later', async () => {
    await prepare();
    const warden = await start();
    const first = await connect(warden);
    const id = await defer(first, email());
    const card = await cardFor(id);
    // The agent is not waiting: it got its answer and went away.
    await first.close();

    await clickApprove(warden, card);
    await waitFor(() => completedOk(warden, id).length === 1, 'the approved call to run');
    await waitFor(() => heldRows()[0]?.ending, 'the ending to be stored');
    expect(heldRows()).toEqual([expect.objectContaining({ approval_id: id, args: null })]);

    const later = await connect(warden);
    const result = await collect(later, id);
    expect(JSON.parse(textOf(result))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    await warden.audit.flush();
    expect(completedOk(warden, id)).toHaveLength(1);
    expect(heldRows()).toEqual([]);
  });

  it('run by one Warden process, collected through another sharing the database, once', async () => {
    await prepare();
    const warden = await start();
    const id = await defer(await connect(warden), email());
    // A second `warden serve` on the same file: it leaves the first one's live call alone.
    const other = await serve();
    expect(approvalStatus(id)).toBe('pending');
    await clickApprove(warden, await cardFor(id));
    await waitFor(() => heldRows()[0]?.ending, 'the ending to be stored');
    const viaOther = await collect(await connect(other.url), id);
    expect(JSON.parse(textOf(viaOther))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    expect(textOf(await collect(await connect(warden), id))).toMatch(/no held call .* to collect/);
    await warden.audit.flush();
    expect(completedOk(warden, id)).toHaveLength(1);
  });

  it('a halt discards a kept result and the arguments of the call still waiting', async () => {
    await prepare();
    const warden = await start();
    const client = await connect(warden);
    const waitingId = await defer(client, email());
    const decidedId = await defer(client, email());
    await clickApprove(warden, await cardFor(decidedId));
    await waitFor(() => completedOk(warden, decidedId).length === 1, 'the approved call to run');
    await waitFor(() => heldRows().find((r) => r.approval_id === decidedId)?.ending, 'the ending to be stored');
    expect(heldRows().find((r) => r.approval_id === decidedId)?.ending).toContain('"sent\\":true');

    await warden.control.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'drill', actor: 'cli:test' });
    await waitFor(
      () => warden.approvals.get(waitingId)?.status === 'cancelled',
      'the waiting approval to be cancelled',
    );
    await waitFor(() => heldRows().every((r) => r.ending !== null), 'both endings to be stored');
    const rows = heldRows();
    expect(rows.map((r) => r.args)).toEqual([null, null]);
    expect(JSON.stringify(rows)).not.toContain('sent');
    expect(JSON.stringify(rows)).not.toContain(SECRET);

    await warden.control.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: 'cli:test' });
    for (const id of [waitingId, decidedId]) {
      const res = await collect(client, id);
      expect(res.isError).toBe(true);
      expect(textOf(res)).toMatch(/halted/);
    }
    expect(heldRows()).toEqual([]);
  });
});
