import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { ResponseMessage } from '@modelcontextprotocol/sdk/experimental/tasks';
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  type CallToolResult,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { Client as SdkClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, startGateway, type GatewayHandle } from '../src/gateway/index.ts';
import { revokeAgentToken } from '../src/gateway/tokens.ts';
import { TaskRegistry, MAX_TASKS_PER_AGENT, MIN_KEEP_AFTER_END_MS } from '../src/gateway/tasks.ts';
import { silentLogger } from '../src/logger.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';
import { helpdeskServersYaml } from './support/policies.ts';
import { ManualClock } from './support/manual-clock.ts';
import { OWNER as SLACK_OWNER, startSlackHarness, type SlackHarness } from './support/slack-harness.ts';

/**
 * Held calls as MCP tasks (spec 2025-11-25), driven by the SDK's own task
 * client (`client.experimental.tasks`): the tools/call is answered at once
 * with a task, the client polls tasks/get and collects with tasks/result, and
 * the task ends with the real result or the refusal. The agents here have
 * answer_within: 1s, which a task must not be cut short by.
 */

const AGENT = 'mailer';
const OTHER = 'snoop';
const OWNER = 'U0123ABCD';
const CHANNEL = 'C0APPROVALS';
/** Requests of the task client are short; the task outlives every one of them. */
const SHORT = { timeout: 3_000 };
const TASK_CAPABLE = { capabilities: { tasks: { list: {}, cancel: {} } } };
let h: Harness;
let client: Client;
let other: Client;

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
    approval_timeout: 10m
    answer_within: 1s
    owner: ${OWNER}
    channel: ${CHANNEL}
  - agent: ${OTHER}
    mcp_scopes: { tickets: [read, write] }
    approval_timeout: 10m
    answer_within: 1s
    owner: ${OWNER}
`,
    { taskPollMs: 50 },
  );
  client = await h.connect(AGENT, TASK_CAPABLE);
  other = await h.connect(OTHER, TASK_CAPABLE);
  // The SDK's client asks for a task only for tools it has seen listed with task support.
  await client.listTools();
  await other.listTools();
});

afterAll(async () => {
  await h?.close();
});

let emails = 0;
const email = () => ({ ticket_id: 'T-1001', to: 'ada@example.com', subject: 'Refund', body: `Hello (${++emails})` });

interface Started {
  taskId: string;
  /** Every message the SDK's stream yielded, once it ended (with a result or an error). */
  done: Promise<ResponseMessage<CallToolResult>[]>;
}

/** Calls the held tool the way a task-capable SDK client does, and returns once the task exists. */
async function startTask(via: Client, args: Record<string, unknown>): Promise<Started> {
  const stream = via.experimental.tasks.callToolStream(
    { name: 'tickets__send_customer_email', arguments: args },
    CallToolResultSchema,
    SHORT,
  );
  let created: (taskId: string) => void = () => {};
  const taskId = new Promise<string>((resolve) => {
    created = resolve;
  });
  const done = (async () => {
    const messages: ResponseMessage<CallToolResult>[] = [];
    for await (const message of stream) {
      messages.push(message as ResponseMessage<CallToolResult>);
      if (message.type === 'taskCreated') created(message.task.taskId);
    }
    created('');
    return messages;
  })();
  const id = await taskId;
  if (!id) throw new Error(`no task was created: ${JSON.stringify(await done)}`);
  return { taskId: id, done };
}

/** Waits until the task says it is held for a human in the agent's channel. */
async function held(via: Client, taskId: string): Promise<Task> {
  return waitFor(async () => {
    const task = await via.experimental.tasks.getTask(taskId, SHORT);
    return task.statusMessage?.includes(CHANNEL) ? task : undefined;
  }, 'the task to be held for approval');
}

function approvalIdOf(task: Task): string {
  const id = /approval (apr_[0-9a-f-]+)/.exec(task.statusMessage ?? '')?.[1];
  if (!id) throw new Error(`no approval id in ${task.statusMessage}`);
  return id;
}

function finalResult(messages: ResponseMessage<CallToolResult>[]): CallToolResult {
  const last = messages.at(-1);
  if (last?.type !== 'result') throw new Error(`the task did not end with a result: ${JSON.stringify(last)}`);
  return last.result;
}

/**
 * A refusal fails the task (spec 2025-11-25: a tool result with isError), so the SDK's stream ends
 * with an error; tasks/result then hands over the refusal itself, as the call would have returned it.
 */
async function refusalOf(via: Client, started: Started): Promise<{ result: CallToolResult; task: Task }> {
  const last = (await started.done).at(-1);
  expect(last?.type).toBe('error');
  const task = await via.experimental.tasks.getTask(started.taskId, SHORT);
  expect(task.status).toBe('failed');
  const result = await via.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
  expect(result.isError).toBe(true);
  expect(task.statusMessage).toBe(textOf(result));
  return { result, task };
}

async function sentCount(): Promise<number> {
  await h.flush();
  return h
    .rows({ event: 'call.completed', agent: AGENT })
    .filter((r) => r.tool === 'send_customer_email' && r.decision === 'ok').length;
}

describe('tools/list and capabilities', () => {
  it('advertises task support on the tools that may be held, and the tasks capability', async () => {
    expect(client.getServerCapabilities()?.tasks).toMatchObject({ requests: { tools: { call: {} } }, cancel: {} });
    const tools = (await client.listTools()).tools;
    const held = tools.find((t) => t.name === 'tickets__send_customer_email');
    const read = tools.find((t) => t.name === 'tickets__read_ticket');
    expect(held?.execution).toEqual({ taskSupport: 'optional' });
    expect(read?.execution).toBeUndefined();
  });
});

describe('a held call as a task', () => {
  it('is working while it waits, names the channel, outlasts answer_within, and ends with the real result', async () => {
    const before = await sentCount();
    const started = await startTask(client, email());
    expect(started.taskId).toMatch(/^task_[0-9a-f-]{36}$/);
    const task = await held(client, started.taskId);
    expect(task.status).toBe('working');
    expect(task.statusMessage).toMatch(/waiting for a human's approval in the Slack channel C0APPROVALS/);
    const approvalId = approvalIdOf(task);
    expect(h.approvals.get(approvalId)?.status).toBe('pending');

    // Past answer_within (1 s): a task is not answered "not run yet"; it simply goes on working.
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    expect((await client.experimental.tasks.getTask(started.taskId, SHORT)).status).toBe('working');
    await h.flush();
    // Deferred once, as soon as it was held: the agent was answered with the task (not "not run yet"), and the call
    // is kept with its task in the database, so both outlive a restart (gateway-tasks-restart.test.ts).
    const deferrals = h
      .rows({ event: 'approval.deferred', agent: AGENT })
      .filter((r) => r.detail?.includes(approvalId));
    expect(deferrals).toHaveLength(1);
    expect(deferrals[0]!.reason).toBe(
      `the agent was answered with task ${started.taskId} and polls it; the approval goes on`,
    );

    expect((await h.approvals.decide(approvalId, OWNER, 'approve')).ok).toBe(true);
    const messages = await started.done;
    const result = finalResult(messages);
    expect(result.isError).toBeFalsy();
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true, to: 'ada@example.com' });
    expect(messages.filter((m) => m.type === 'taskStatus').at(-1)).toMatchObject({ task: { status: 'completed' } });
    // Exactly once, and tasks/result hands out the same ending again while the task is kept.
    expect(await sentCount()).toBe(before + 1);
    const again = await client.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
    expect(JSON.parse(textOf(again))).toMatchObject({ sent: true });
    expect(await sentCount()).toBe(before + 1);
    // Collected once, by its task: the kept copy of the ending left the database at the first tasks/result.
    await h.flush();
    const collected = h
      .rows({ event: 'approval.collected', agent: AGENT })
      .filter((r) => r.detail?.includes(approvalId));
    expect(collected.map((r) => r.reason)).toEqual(["collected with its task's tasks/result"]);
    expect(h.approvals.heldCalls.get(approvalId)).toBeUndefined();
  });

  it('tasks/result asked before the decision waits for it and answers when the task ends', async () => {
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    // Asked while the call is still held: an early answer would be an error (nothing to hand over yet).
    const waiting = client.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, { timeout: 10_000 });
    expect((await client.experimental.tasks.getTask(started.taskId, SHORT)).status).toBe('working');
    await h.approvals.decide(approvalId, OWNER, 'approve');
    const result = await waiting;
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true });
    expect(result._meta?.['io.modelcontextprotocol/related-task']).toEqual({ taskId: started.taskId });
    await started.done;
  });

  it('a rejection ends the task with the refusal; the call never runs', async () => {
    const before = await sentCount();
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    await h.approvals.decide(approvalId, OWNER, 'reject', 'wrong customer');
    const { result } = await refusalOf(client, started);
    expect(textOf(result)).toMatch(/was not run: .*rejected by U0123ABCD: wrong customer/);
    expect(await sentCount()).toBe(before);
  });

  it('tasks/cancel cancels the pending approval (audited), and the call never runs', async () => {
    const before = await sentCount();
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    const cancelled = await client.experimental.tasks.cancelTask(started.taskId, SHORT);
    expect(cancelled.status).toBe('cancelled');
    await waitFor(() => h.approvals.get(approvalId)?.status === 'cancelled', 'the approval to be cancelled');
    expect(h.approvals.get(approvalId)?.decisionReason).toMatch(/the agent cancelled its task/);
    await h.flush();
    expect(
      h.rows({ event: 'approval.decided', agent: AGENT }).find((r) => r.detail?.includes(approvalId)),
    ).toMatchObject({ decision: 'cancelled' });

    // The stream sees the cancel; tasks/result says what became of the call.
    const last = (await started.done).at(-1);
    expect(last?.type).toBe('error');
    const result = await client.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/was not run: .*cancelled: the agent cancelled its task/);
    // Too late for a human to approve it now.
    expect((await h.approvals.decide(approvalId, OWNER, 'approve')).ok).toBe(false);
    expect(await sentCount()).toBe(before);
    await expect(client.experimental.tasks.cancelTask(started.taskId, SHORT)).rejects.toThrow(/terminal status/);
  });

  it('another agent cannot read, collect, cancel or list it', async () => {
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    await expect(other.experimental.tasks.getTask(started.taskId, SHORT)).rejects.toThrow(/Task not found/);
    await expect(other.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT)).rejects.toThrow(
      /Task not found/,
    );
    await expect(other.experimental.tasks.cancelTask(started.taskId, SHORT)).rejects.toThrow(/Task not found/);
    expect((await other.experimental.tasks.listTasks(undefined, SHORT)).tasks.map((t) => t.taskId)).not.toContain(
      started.taskId,
    );
    // Untouched for its own agent.
    expect((await client.experimental.tasks.listTasks(undefined, SHORT)).tasks.map((t) => t.taskId)).toContain(
      started.taskId,
    );
    expect((await client.experimental.tasks.getTask(started.taskId, SHORT)).status).toBe('working');
    expect(h.approvals.get(approvalId)?.status).toBe('pending');
    await h.approvals.decide(approvalId, OWNER, 'approve');
    expect(finalResult(await started.done).isError).toBeFalsy();
  });

  it('outlives the session that created it: collected from a new session', async () => {
    const first = await h.connect(AGENT, TASK_CAPABLE);
    // The SDK's client asks for a task only for tools it has seen listed with task support.
    await first.listTools();
    const started = await startTask(first, email());
    const approvalId = approvalIdOf(await held(first, started.taskId));
    await first.close();
    await started.done.catch(() => []);
    await h.approvals.decide(approvalId, OWNER, 'approve');
    const later = await h.connect(AGENT, TASK_CAPABLE);
    await waitFor(
      async () => (await later.experimental.tasks.getTask(started.taskId, SHORT)).status === 'completed',
      'the task to complete',
    );
    const result = await later.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true });
  });

  it('as the same call again after a "not run yet" answer, the task attaches to the held call: one card, one run', async () => {
    const args = email();
    const plain = (await client.callTool(
      { name: 'tickets__send_customer_email', arguments: args },
      undefined,
      SHORT,
    )) as CallToolResult;
    expect(textOf(plain)).toMatch(/has NOT run yet/);
    const approvalId = (plain._meta as Record<string, { id: string }>)['warden/approval']!.id;
    const before = await sentCount();
    const started = await startTask(client, args);
    expect(approvalIdOf(await held(client, started.taskId))).toBe(approvalId);
    expect(h.approvals.pending({ agent: AGENT }).map((a) => a.id)).toEqual([approvalId]);
    await h.approvals.decide(approvalId, OWNER, 'approve');
    expect(JSON.parse(textOf(finalResult(await started.done)))).toMatchObject({ sent: true });
    expect(await sentCount()).toBe(before + 1);
    expect(h.rows({ event: 'approval.collected', agent: AGENT }).at(-1)?.reason).toMatch(/repeating the same call/);
  });

  it('belongs to the agent, not the token: polled with another token, refused if its own token is revoked meanwhile', async () => {
    const second = createAgentToken(h.db, AGENT, { policy: h.policy });
    const via = await h.connect(AGENT, { ...TASK_CAPABLE, token: second });
    await via.listTools();
    const before = await sentCount();
    const started = await startTask(via, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    revokeAgentToken(h.db, second);
    await started.done.catch(() => []);
    await h.approvals.decide(approvalId, OWNER, 'approve');
    await waitFor(
      async () => (await client.experimental.tasks.getTask(started.taskId, SHORT)).status === 'failed',
      'the task to end',
    );
    const result = await client.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/agent token it was made with has been revoked/);
    expect(await sentCount()).toBe(before);
  });

  it('a halt while the task is held ends it with the halt, and the call never runs', async () => {
    const before = await sentCount();
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    await h.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'drill', actor: 'cli:test' });
    try {
      const { result } = await refusalOf(client, started);
      expect(textOf(result)).toMatch(/halted/);
      expect(h.approvals.get(approvalId)?.status).toBe('cancelled');
    } finally {
      await h.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: 'cli:test' });
    }
    expect(await sentCount()).toBe(before);
  });

  it('a task for a tool out of scope is refused and audited like any call', async () => {
    const stream = client.experimental.tasks.callToolStream(
      { name: 'crm__refund_request', arguments: { id: 'T-1001' } },
      CallToolResultSchema,
      { ...SHORT, task: {} },
    );
    let taskId = '';
    for await (const message of stream) if (message.type === 'taskCreated') taskId = message.task.taskId;
    expect((await client.experimental.tasks.getTask(taskId, SHORT)).status).toBe('failed');
    const result = await client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, SHORT);
    expect(result.isError).toBe(true);
    expect(textOf(result)).toMatch(/Refused by Warden/);
    await h.flush();
    expect(h.rows({ event: 'call.decided', agent: AGENT }).at(-1)).toMatchObject({
      server: 'crm',
      tool: 'refund_request',
      decision: 'deny',
    });
  });

  it('a halt discards what an ended task returned, as for a deferred call', async () => {
    const started = await startTask(client, email());
    const approvalId = approvalIdOf(await held(client, started.taskId));
    await h.approvals.decide(approvalId, OWNER, 'approve');
    expect(finalResult(await started.done).isError).toBeFalsy();
    await h.killSwitch.halt({ scope: 'agent', agent: AGENT, reason: 'drill', actor: 'cli:test' });
    try {
      await waitFor(
        async () =>
          /discarded/.test((await client.experimental.tasks.getTask(started.taskId, SHORT)).statusMessage ?? ''),
        'the halt to reach the task',
      );
      const result = await client.experimental.tasks.getTaskResult(started.taskId, CallToolResultSchema, SHORT);
      expect(result.isError).toBe(true);
      expect(textOf(result)).toMatch(/the result was discarded: agent mailer halted by cli:test: drill/);
      expect(textOf(result)).not.toMatch(/"sent":true/);
    } finally {
      await h.killSwitch.resume({ scope: 'agent', agent: AGENT, actor: 'cli:test' });
    }
  });

  it('the task creation carries a sentence for the model meanwhile', async () => {
    const created = await client.request(
      {
        method: 'tools/call',
        params: { name: 'tickets__read_ticket', arguments: { id: 'T-1001' }, task: { ttl: 60_000 } },
      },
      CreateTaskResultSchema,
      SHORT,
    );
    expect(created.task).toMatchObject({ status: 'working', ttl: 60_000, pollInterval: 50 });
    expect(created._meta?.['io.modelcontextprotocol/model-immediate-response']).toMatch(
      /tickets__read_ticket is running as task task_.*do not assume it ran/,
    );
  });

  it('a call that is not held completes as a task at once', async () => {
    const stream = client.experimental.tasks.callToolStream(
      { name: 'tickets__read_ticket', arguments: { id: 'T-1001' } },
      CallToolResultSchema,
      { ...SHORT, task: {} },
    );
    const messages: ResponseMessage<CallToolResult>[] = [];
    for await (const message of stream) messages.push(message as ResponseMessage<CallToolResult>);
    expect(messages[0]?.type).toBe('taskCreated');
    expect(finalResult(messages).isError).toBeFalsy();
  });
});

describe('a task held for a decision in Slack', () => {
  let slack: SlackHarness;
  let killSwitch: KillSwitch;
  let gateway: GatewayHandle;
  let agent: SdkClient;

  beforeAll(async () => {
    slack = await startSlackHarness({
      policyYaml: `
${helpdeskServersYaml(['tickets'])}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${SLACK_OWNER}
    channel: ${CHANNEL}
    approval_timeout: 15m
`,
      approvals: { pollMs: 50 },
    });
    killSwitch = new KillSwitch({ db: slack.db, audit: slack.audit, logger: silentLogger(), pollMs: 50 });
    killSwitch.start();
    gateway = await startGateway({
      policy: { current: () => slack.policy },
      db: slack.db,
      audit: slack.audit,
      approvals: slack.approvals,
      halt: killSwitch,
      alerts: new MemoryAlertSink(),
      logger: silentLogger(),
      port: 0,
      taskPollMs: 50,
    });
    const token = createAgentToken(slack.db, 'support-triage', { policy: slack.policy });
    agent = new SdkClient({ name: 'support-triage', version: '1.0.0' }, TASK_CAPABLE);
    await agent.connect(
      new StreamableHTTPClientTransport(new URL(gateway.url), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
      }),
    );
    await agent.listTools();
  });

  afterAll(async () => {
    await agent?.close();
    await gateway?.close();
    killSwitch?.stop();
    await slack?.close();
  });

  /** The card Slack got for this approval. */
  async function cardOf(approvalId: string) {
    return slack.slack.waitForCall(
      'chat.postMessage',
      (c) => Array.isArray(c.args.blocks) && JSON.stringify(c.args.blocks).includes(approvalId),
    );
  }

  it('approved by a signed click on the card: the task ends with the real result', async () => {
    const started = await startTask(agent, email());
    const approvalId = approvalIdOf(await held(agent, started.taskId));
    const card = await cardOf(approvalId);
    expect(card.args.channel).toBe(CHANNEL);
    const click = await slack.sender.blockAction({
      user: SLACK_OWNER,
      actionId: 'approval_approve',
      value: approvalId,
      channel: CHANNEL,
      messageTs: card.response!.ts as string,
    });
    expect(click.status).toBe(200);
    const result = finalResult(await started.done);
    expect(result.isError).toBeFalsy();
    expect(JSON.parse(textOf(result))).toMatchObject({ sent: true, to: 'ada@example.com' });
  });

  it('tasks/cancel redraws the card as cancelled by the agent', async () => {
    const started = await startTask(agent, email());
    const approvalId = approvalIdOf(await held(agent, started.taskId));
    const card = await cardOf(approvalId);
    await agent.experimental.tasks.cancelTask(started.taskId, SHORT);
    const redrawn = await slack.slack.waitForCall(
      'chat.update',
      (c) => c.args.ts === card.response!.ts && JSON.stringify(c.args.blocks).includes('Cancelled'),
    );
    expect(JSON.stringify(redrawn.args.blocks)).toContain('the agent cancelled its task');
    await started.done;
  });
});

describe('how long tasks are kept', () => {
  const ok: CallToolResult = { content: [{ type: 'text', text: 'done' }] };

  it('a running task is never dropped; an ended one is kept for its ttl, and at least a minute after it ends', async () => {
    const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
    const tasks = new TaskRegistry({ clock });
    const { task } = tasks.create('a', 5 * 60_000);
    expect(task.ttl).toBe(5 * 60_000);
    await clock.tick(60 * 60_000);
    expect(tasks.get(task.taskId, 'a')?.status).toBe('working');
    tasks.end(task.taskId, { result: ok });
    // Its ttl from creation is long past: kept for the minimum after its end.
    await clock.tick(MIN_KEEP_AFTER_END_MS - 1_000);
    expect(tasks.get(task.taskId, 'a')?.status).toBe('completed');
    await clock.tick(2_000);
    expect(tasks.get(task.taskId, 'a')).toBeUndefined();
    await expect(tasks.result(task.taskId, 'a')).rejects.toThrow(/Task not found/);
  });

  it('clamps the ttl a client asks for', () => {
    const tasks = new TaskRegistry({ clock: new ManualClock() });
    expect(tasks.create('a', 10 * 24 * 60 * 60_000).task.ttl).toBe(24 * 60 * 60_000);
    expect(tasks.create('a', 0).task.ttl).toBe(MIN_KEEP_AFTER_END_MS);
    expect(tasks.create('a', undefined).task.ttl).toBe(60 * 60_000);
    tasks.close();
  });

  it("one agent's full set of running tasks refuses another; an ended one makes room; other agents are not affected", () => {
    const tasks = new TaskRegistry({ clock: new ManualClock() });
    const ids = Array.from({ length: MAX_TASKS_PER_AGENT }, () => tasks.create('a', undefined).task.taskId);
    expect(() => tasks.create('a', undefined)).toThrow(/already has 256 tasks running/);
    expect(tasks.create('b', undefined).task.status).toBe('working');
    tasks.end(ids[7]!, { result: ok });
    expect(tasks.create('a', undefined).task.status).toBe('working');
    expect(tasks.get(ids[7]!, 'a')).toBeUndefined();
    expect(tasks.get(ids[8]!, 'a')?.status).toBe('working');
    tasks.close();
  });
});
