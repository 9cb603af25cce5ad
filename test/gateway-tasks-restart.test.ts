import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, type Task } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRow } from '../src/audit/types.ts';
import { createAgentToken } from '../src/gateway/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { textOf, waitFor } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';
import { startServeChild, type ServeChild } from './support/serve-child.ts';
import { storeLocation } from './support/store-under-test.ts';
import { startSlackApiServer, type RecordedCall, type SlackApiServer } from './support/slack-api-server.ts';
import { SlackRequestSender } from './support/slack-sign.ts';
import { BOT_TOKEN, SIGNING_SECRET } from './support/slack-harness.ts';

/**
 * MCP tasks that outlive Warden's process. `warden serve` runs as a child
 * process on a database file; an agent (the SDK's own task client) starts a
 * held call as a task; that Warden stops (SIGTERM) or is killed (SIGKILL); a
 * new `warden serve` on the same file knows the task again from the held call
 * it was kept with: tasks/get, tasks/list, tasks/result and tasks/cancel answer
 * for it, to its own agent only, and the task ends with the real result or
 * the refusal.
 */

const AGENT = 'mailer';
const OTHER = 'snoop';
const OWNER = 'U0OWNER1';
const CHANNEL = 'C0APPROVALS';
const SHORT = { timeout: 5_000 };
const TASK_CAPABLE = { capabilities: { tasks: { list: {}, cancel: {} } } };
const POLICY = `
${helpdeskServersYaml(['tickets'])}
agents:
  - agent: ${AGENT}
    mcp_scopes: { tickets: [read, write] }
    owner: ${OWNER}
    channel: ${CHANNEL}
    approval_timeout: 10m
    answer_within: 1s
  - agent: ${OTHER}
    mcp_scopes: { tickets: [read, write] }
    owner: ${OWNER}
    approval_timeout: 10m
    answer_within: 1s
`;

let dir: string;
/** The store every serve process of a test shares: a SQLite file in dir, or one PostgreSQL schema. */
let store: string;
let slack: SlackApiServer;
const tokens: Record<string, string> = {};
const children: ServeChild[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  slack = await startSlackApiServer({ botToken: BOT_TOKEN });
});

afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  await Promise.allSettled(children.splice(0).map((c) => c.kill('SIGKILL')));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

afterAll(async () => {
  await slack?.close();
});

function withDb<T>(use: (db: Db) => T): T {
  const db = openDb(store);
  try {
    return use(db);
  } finally {
    db.close();
  }
}

async function prepare(): Promise<void> {
  dir = mkdtempSync(join(tmpdir(), 'warden-tasks-'));
  store = await storeLocation(dir);
  writeFileSync(join(dir, 'policy.yml'), POLICY);
  withDb((db) => {
    tokens[AGENT] = createAgentToken(db, AGENT);
    tokens[OTHER] = createAgentToken(db, OTHER);
  });
}

async function serve(): Promise<ServeChild> {
  const child = await startServeChild({
    dbPath: store,
    policyPath: join(dir, 'policy.yml'),
    env: {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_PORT: '0',
      SLACK_API_URL: slack.apiUrl,
    },
  });
  children.push(child);
  return child;
}

async function stop(child: ServeChild, signal: NodeJS.Signals): Promise<void> {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  children.splice(children.indexOf(child), 1);
  await child.kill(signal);
}

async function connect(child: ServeChild, agent = AGENT): Promise<Client> {
  const client = new Client({ name: agent, version: '1.0.0' }, TASK_CAPABLE);
  await client.connect(
    new StreamableHTTPClientTransport(new URL(child.running.gateway), {
      requestInit: { headers: { Authorization: `Bearer ${tokens[agent]}` } },
    }),
  );
  clients.push(client);
  return client;
}

let emails = 0;
const email = () => ({ ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body: `Hello (${++emails})` });

/** Starts the held tool as a task, the way the SDK's task client does; resolves with the task id once it exists. */
async function startTask(client: Client): Promise<string> {
  // The SDK's client asks for a task only for tools it has seen listed with task support.
  await client.listTools();
  const stream = client.experimental.tasks.callToolStream(
    { name: 'tickets__send_customer_email', arguments: email() },
    CallToolResultSchema,
    SHORT,
  );
  for await (const message of stream) {
    if (message.type === 'taskCreated') {
      // The rest of the stream is this Warden's to end (it is stopped meanwhile); nobody reads it.
      void drain(stream);
      return message.task.taskId;
    }
  }
  throw new Error('no task was created');
}

async function drain(stream: AsyncIterable<unknown>): Promise<void> {
  try {
    for await (const message of stream) void message;
  } catch {
    // The connection goes with the Warden.
  }
}

async function held(client: Client, taskId: string): Promise<Task> {
  return waitFor(async () => {
    const task = await client.experimental.tasks.getTask(taskId, SHORT);
    return task.statusMessage?.includes(CHANNEL) ? task : undefined;
  }, 'the task to be held for approval');
}

function approvalIdOf(task: Task): string {
  const id = /approval (apr_[0-9a-f-]+)/.exec(task.statusMessage ?? '')?.[1];
  if (!id) throw new Error(`no approval id in ${task.statusMessage}`);
  return id;
}

async function cardFor(approvalId: string): Promise<RecordedCall> {
  return slack.waitForCall(
    'chat.postMessage',
    (c) => Array.isArray(c.args.blocks) && JSON.stringify(c.args.blocks).includes(approvalId),
    20_000,
  );
}

async function clickApprove(child: ServeChild, card: RecordedCall, approvalId: string): Promise<void> {
  const sender = new SlackRequestSender(`http://127.0.0.1:${child.running.slackPort}/slack/events`, SIGNING_SECRET);
  const click = await sender.blockAction({
    user: OWNER,
    actionId: 'approval_approve',
    value: approvalId,
    channel: CHANNEL,
    messageTs: card.response!.ts as string,
  });
  expect(click.status).toBe(200);
}

function rows(event: string): AuditRow[] {
  return withDb((db) => db.prepare('SELECT * FROM audit WHERE event = ? ORDER BY seq').all(event) as AuditRow[]);
}

function sentOk(approvalId: string): AuditRow[] {
  return rows('call.completed').filter((r) => r.decision === 'ok' && String(r.detail ?? '').includes(approvalId));
}

function heldTaskRows(): Array<{ approval_id: string; task_id: string | null; ending: string | null }> {
  return withDb(
    (db) =>
      db.prepare('SELECT approval_id, task_id, ending FROM held_calls').all() as Array<{
        approval_id: string;
        task_id: string | null;
        ending: string | null;
      }>,
  );
}

function approvalStatus(approvalId: string): string | undefined {
  return withDb((db) => db.prepare('SELECT status FROM approvals WHERE id = ?').pluck().get(approvalId) as string);
}

describe('a held call made as an MCP task survives a Warden restart', () => {
  it('stopped (SIGTERM) while held: the next Warden answers tasks/get and tasks/list for it, a click there runs it once, tasks/result has the real result', async () => {
    await prepare();
    const first = await serve();
    const client = await connect(first);
    const taskId = await startTask(client);
    const approvalId = approvalIdOf(await held(client, taskId));
    const card = await cardFor(approvalId);
    // Kept with its task from the moment it was held.
    expect(heldTaskRows()).toEqual([{ approval_id: approvalId, task_id: taskId, ending: null }]);
    await stop(first, 'SIGTERM');
    // Let go, not abandoned: the approval goes on for the next Warden.
    expect(approvalStatus(approvalId)).toBe('pending');

    const second = await serve();
    const agent = await connect(second);
    const task = await agent.experimental.tasks.getTask(taskId, SHORT);
    expect(task).toMatchObject({ taskId, status: 'working' });
    expect(task.statusMessage).toMatch(
      new RegExp(`waiting for a human's approval in the Slack channel ${CHANNEL} \\(approval ${approvalId}\\)`),
    );
    expect((await agent.experimental.tasks.listTasks(undefined, SHORT)).tasks.map((t) => t.taskId)).toEqual([taskId]);
    // Another agent: the task does not exist, as before the restart.
    const other = await connect(second, OTHER);
    await expect(other.experimental.tasks.getTask(taskId, SHORT)).rejects.toThrow(/Task not found/);
    await expect(other.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, SHORT)).rejects.toThrow(
      /Task not found/,
    );
    await expect(other.experimental.tasks.cancelTask(taskId, SHORT)).rejects.toThrow(/Task not found/);
    expect((await other.experimental.tasks.listTasks(undefined, SHORT)).tasks).toEqual([]);

    // tasks/result asked before the decision waits for it.
    const result = agent.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, { timeout: 20_000 });
    await clickApprove(second, card, approvalId);
    // count: 1 is the new upstream process's own count of emails sent: it ran once.
    expect(JSON.parse(textOf(await result))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    expect((await agent.experimental.tasks.getTask(taskId, SHORT)).status).toBe('completed');
    // Collected once, through its task; the held call is gone from the database.
    await waitFor(() => rows('approval.collected').length === 1, 'approval.collected');
    expect(rows('approval.collected')[0]).toMatchObject({ reason: "collected with its task's tasks/result" });
    expect(heldTaskRows()).toEqual([]);
    expect(sentOk(approvalId)).toHaveLength(1);
  });

  it('killed (SIGKILL) while held: tasks/cancel in the next Warden cancels the approval, and the call never runs', async () => {
    await prepare();
    const first = await serve();
    const client = await connect(first);
    const taskId = await startTask(client);
    const approvalId = approvalIdOf(await held(client, taskId));
    const card = await cardFor(approvalId);
    await stop(first, 'SIGKILL');

    const second = await serve();
    const agent = await connect(second);
    expect((await agent.experimental.tasks.getTask(taskId, SHORT)).status).toBe('working');
    expect((await agent.experimental.tasks.cancelTask(taskId, SHORT)).status).toBe('cancelled');
    await waitFor(() => approvalStatus(approvalId) === 'cancelled', 'the approval to be cancelled');
    const result = await agent.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, SHORT);
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/was not run: .*cancelled: the agent cancelled its task/);
    // Too late for a human now.
    await clickApprove(second, card, approvalId);
    expect(approvalStatus(approvalId)).toBe('cancelled');
    expect(sentOk(approvalId)).toEqual([]);
    const cancelled = rows('call.completed').filter((r) => String(r.detail ?? '').includes(approvalId));
    expect(cancelled).toMatchObject([{ decision: 'cancelled' }]);
  });

  it('ended before the restart and not yet collected: the next Warden hands its result to tasks/result, once', async () => {
    await prepare();
    const first = await serve();
    const client = await connect(first);
    const taskId = await startTask(client);
    const approvalId = approvalIdOf(await held(client, taskId));
    await clickApprove(first, await cardFor(approvalId), approvalId);
    await waitFor(() => heldTaskRows()[0]?.ending, 'the ending to be stored');
    await stop(first, 'SIGTERM');

    const second = await serve();
    const agent = await connect(second);
    expect((await agent.experimental.tasks.getTask(taskId, SHORT)).status).toBe('completed');
    const result = await agent.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, SHORT);
    expect(JSON.parse(textOf(result))).toEqual({ sent: true, to: 'ada@example.com', count: 1 });
    await waitFor(() => rows('approval.collected').length === 1, 'approval.collected');
    expect(heldTaskRows()).toEqual([]);
    // Run by the first Warden only.
    expect(sentOk(approvalId)).toHaveLength(1);
  });
});
