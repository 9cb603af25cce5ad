import { randomUUID } from 'node:crypto';
import { isTerminal, type TaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
import {
  ErrorCode as McpErrorCode,
  McpError,
  type CallToolResult,
  type Result,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { isoTime, type Clock } from '../clock.ts';
import type { HaltState } from '../control/types.ts';
import { describeError, WardenError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { HeldTask } from '../approvals/types.ts';
import type { HeldCall } from './pipeline.ts';

/**
 * MCP Tasks (spec 2025-11-25) for tools/call. A client that asks for a task
 * has its request answered at once with a task id and polls for the ending
 * (tasks/get, tasks/result), so a call held for a human's minutes needs no
 * request kept open, whatever the client's request timeout.
 *
 * The registry is gateway-wide: like a deferred call, a task outlives the
 * session and connection that created it. Each task belongs to the agent
 * that created it; for any other agent it does not exist (the same answer as
 * for an id that never existed), so task ids say nothing across agents. The
 * SDK's Server serves tasks/get, tasks/list and tasks/cancel from the
 * per-agent TaskStore view (`storeFor`); tasks/result is session.ts's own,
 * waiting on `result()`.
 */

/** Suggested to clients between tasks/get polls. */
export const TASK_POLL_MS = 1_000;
/** How long a task is kept from its creation when the client asks for no ttl. */
export const DEFAULT_TASK_TTL_MS = 60 * 60_000;
/** The longest ttl granted, whatever the client asks. */
export const MAX_TASK_TTL_MS = 24 * 60 * 60_000;
/** An ended task is kept at least this long, whatever its ttl: time for the client's next poll. */
export const MIN_KEEP_AFTER_END_MS = 60_000;
/** Tasks one agent may have at once; the oldest ended one makes room, a full set of running ones refuses. */
export const MAX_TASKS_PER_AGENT = 256;
const LIST_PAGE = 50;
const STATUS_MESSAGE_CHARS = 500;

/** How a task's call ended: the tool result (a refusal is one too), or the JSON-RPC error it was answered with. */
export type TaskEnding = { result: CallToolResult } | { error: McpError };

interface TaskEntry {
  agent: string;
  task: Task;
  /** Aborted by tasks/cancel: a held call's approval is cancelled, a forwarded call is cancelled upstream. */
  controller: AbortController;
  ending: TaskEnding | undefined;
  /** Resolves once the ending is in (also after a cancel: the call still says how it ended). */
  ended: Promise<void>;
  markEnded: () => void;
  timer: NodeJS.Timeout | undefined;
}

export interface TaskRegistryOptions {
  clock: Clock;
  /** The poll interval suggested to clients (default TASK_POLL_MS). */
  pollIntervalMs?: number | undefined;
}

/** The task a held call is kept with (in the database, with the call): its id, creation and ttl. */
export function heldTaskOf(task: Task): HeldTask {
  return { taskId: task.taskId, createdAt: Date.parse(task.createdAt), ttlMs: task.ttl ?? DEFAULT_TASK_TTL_MS };
}

/** The status message of a task whose call waits for a human. */
export function heldStatusMessage(held: HeldCall): string {
  const where = held.channel ? `in the Slack channel ${held.channel}` : "in Warden's approval queue";
  return `waiting for a human's approval ${where} (approval ${held.approvalId}) until ${isoTime(held.expiresAt)}; the call has not run yet`;
}

function endingMessage(ending: TaskEnding): string {
  if ('error' in ending) return ending.error.message;
  const text = ending.result.content?.find((c) => c.type === 'text');
  const said = text && 'text' in text ? String(text.text) : '';
  if (ending.result.isError !== true) return 'the call ran; its result is ready (tasks/result)';
  return said.length > STATUS_MESSAGE_CHARS ? `${said.slice(0, STATUS_MESSAGE_CHARS)}…` : said || 'the call failed';
}

function notFound(taskId: string): McpError {
  return new McpError(McpErrorCode.InvalidParams, `Task not found: ${taskId}`);
}

export class TaskRegistry {
  readonly #clock: Clock;
  readonly #pollIntervalMs: number;
  readonly #entries = new Map<string, TaskEntry>();

  constructor(options: TaskRegistryOptions) {
    this.#clock = options.clock;
    this.#pollIntervalMs = options.pollIntervalMs ?? TASK_POLL_MS;
  }

  /** The SDK's TaskStore as one agent sees it: only its own tasks. */
  storeFor(agent: string): TaskStore {
    return new AgentTaskStore(this, agent);
  }

  /**
   * A new task for `agent`, status working. The id is 122 random bits: it
   * cannot be guessed, and it would not help another agent anyway.
   */
  create(agent: string, requestedTtl: number | null | undefined): { task: Task; signal: AbortSignal } {
    this.#makeRoom(agent);
    const now = isoTime(this.#clock.now());
    const ttl = Math.min(Math.max(requestedTtl ?? DEFAULT_TASK_TTL_MS, MIN_KEEP_AFTER_END_MS), MAX_TASK_TTL_MS);
    const task: Task = {
      taskId: `task_${randomUUID()}`,
      status: 'working',
      ttl,
      createdAt: now,
      lastUpdatedAt: now,
      pollInterval: this.#pollIntervalMs,
    };
    const entry = this.#newEntry(agent, task);
    return { task: { ...task }, signal: entry.controller.signal };
  }

  #newEntry(agent: string, task: Task): TaskEntry {
    let markEnded: () => void = () => {};
    const ended = new Promise<void>((resolve) => {
      markEnded = resolve;
    });
    const entry: TaskEntry = {
      agent,
      task,
      controller: new AbortController(),
      ending: undefined,
      ended,
      markEnded,
      timer: undefined,
    };
    this.#entries.set(task.taskId, entry);
    return entry;
  }

  /**
   * A task a stopped Warden created, known again from the held call it was
   * made as (kept in the database with its id, agent and lifetime). Still
   * held: working, and the signal returned is what its tasks/cancel aborts
   * (the call taken over runs with it). Ended: its ending, for tasks/result.
   */
  restore(agent: string, held: HeldTask, state: { held: HeldCall } | { ending: TaskEnding }): AbortSignal {
    const known = this.#entries.get(held.taskId);
    if (known) return known.controller.signal;
    const task: Task = {
      taskId: held.taskId,
      status: 'working',
      ttl: held.ttlMs,
      createdAt: isoTime(held.createdAt),
      lastUpdatedAt: isoTime(this.#clock.now()),
      pollInterval: this.#pollIntervalMs,
      ...('held' in state ? { statusMessage: heldStatusMessage(state.held) } : {}),
    };
    const entry = this.#newEntry(agent, task);
    if ('ending' in state) this.end(held.taskId, state.ending);
    return entry.controller.signal;
  }

  /** The task with this id if it is this agent's; another agent's is not even acknowledged. */
  get(taskId: string, agent: string): Task | undefined {
    const entry = this.#entry(taskId, agent);
    return entry ? { ...entry.task } : undefined;
  }

  /** The call is held for a human: the status message says where it waits. */
  held(taskId: string, held: HeldCall): void {
    const entry = this.#entries.get(taskId);
    if (!entry || isTerminal(entry.task.status)) return;
    this.#update(entry, 'working', heldStatusMessage(held));
  }

  /**
   * The call ended. A cancelled task stays cancelled (its status does not
   * move again), but keeps the ending, which says what the cancel did.
   */
  end(taskId: string, ending: TaskEnding): void {
    const entry = this.#entries.get(taskId);
    if (!entry || entry.ending) return;
    entry.ending = ending;
    if (!isTerminal(entry.task.status)) {
      // The spec (2025-11-25): a tool result with isError (a refusal) fails the task, as a JSON-RPC error does;
      // tasks/result still hands over exactly that result.
      const failed = 'error' in ending || ending.result.isError === true;
      this.#update(entry, failed ? 'failed' : 'completed', endingMessage(ending));
      this.#scheduleForget(taskId, entry);
    }
    entry.markEnded();
  }

  /**
   * tasks/cancel: aborts the call with a reason the approval records as
   * cancelled (and its card shows). False when there is no such task of this
   * agent's, or it had ended already.
   */
  cancel(taskId: string, agent: string): boolean {
    const entry = this.#entry(taskId, agent);
    if (!entry || isTerminal(entry.task.status)) return false;
    this.#update(
      entry,
      'cancelled',
      'cancelled by the agent; a call still held for approval is cancelled and never runs',
    );
    this.#scheduleForget(taskId, entry);
    entry.controller.abort(new WardenError('CALL_CANCELLED', 'the agent cancelled its task'));
    return true;
  }

  /**
   * What tasks/result hands over: the ending, or the JSON-RPC error it was.
   * Before the ending it waits for it (as the spec says tasks/result does),
   * until `signal` aborts; after a cancel the ending follows within moments.
   */
  async result(taskId: string, agent: string, signal?: AbortSignal): Promise<CallToolResult> {
    const entry = this.#entry(taskId, agent);
    if (!entry) throw notFound(taskId);
    if (!entry.ending) {
      let onAbort = () => {};
      const aborted = new Promise<'aborted'>((resolve) => {
        onAbort = () => resolve('aborted');
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });
      const waited = await Promise.race([entry.ended, aborted]);
      signal?.removeEventListener('abort', onAbort);
      if (waited === 'aborted') throw new McpError(McpErrorCode.InvalidRequest, 'Request cancelled');
    }
    const ending = entry.ending!;
    if ('error' in ending) throw ending.error;
    return ending.result;
  }

  /** This agent's tasks, oldest first, a page at a time; the cursor is the last task id of the previous page. */
  list(agent: string, cursor: string | undefined): { tasks: Task[]; nextCursor?: string } {
    const mine = [...this.#entries.values()].filter((e) => e.agent === agent).map((e) => e.task);
    const from = cursor === undefined ? 0 : mine.findIndex((t) => t.taskId === cursor) + 1;
    if (cursor !== undefined && from === 0) throw new McpError(McpErrorCode.InvalidParams, `Invalid cursor: ${cursor}`);
    const page = mine.slice(from, from + LIST_PAGE).map((t) => ({ ...t }));
    const more = from + LIST_PAGE < mine.length;
    return more ? { tasks: page, nextCursor: page.at(-1)!.taskId } : { tasks: page };
  }

  /**
   * A halt discards what the halted agents' ended tasks returned, as it does
   * for deferred calls: a result is not handed to an agent that was stopped.
   * Tasks still running end with the halt's refusal from the pipeline itself.
   */
  discardFor(state: HaltState): void {
    const who = state.scope === 'org' ? 'all agents (org-wide)' : `agent ${state.agent}`;
    const text = `Refused by Warden: the result was discarded: ${who} halted by ${state.actor}${state.reason ? `: ${state.reason}` : ''}`;
    for (const entry of this.#entries.values()) {
      if (state.scope !== 'org' && entry.agent !== state.agent) continue;
      if (!entry.ending || 'error' in entry.ending || entry.ending.result.isError === true) continue;
      entry.ending = { result: { content: [{ type: 'text', text }], isError: true } };
      entry.task.statusMessage = text;
      entry.task.lastUpdatedAt = isoTime(this.#clock.now());
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Forgets every task (the gateway is closing; its calls have been answered by then). */
  close(): void {
    for (const entry of this.#entries.values()) if (entry.timer) this.#clock.clearTimeout(entry.timer);
    this.#entries.clear();
  }

  #entry(taskId: string, agent: string): TaskEntry | undefined {
    const entry = this.#entries.get(taskId);
    return entry?.agent === agent ? entry : undefined;
  }

  #update(entry: TaskEntry, status: Task['status'], statusMessage: string): void {
    entry.task.status = status;
    entry.task.statusMessage = statusMessage;
    entry.task.lastUpdatedAt = isoTime(this.#clock.now());
  }

  /** Kept until its ttl from creation, and at least MIN_KEEP_AFTER_END_MS after it ended. */
  #scheduleForget(taskId: string, entry: TaskEntry): void {
    const now = this.#clock.now();
    const until = Math.max(Date.parse(entry.task.createdAt) + (entry.task.ttl ?? 0), now + MIN_KEEP_AFTER_END_MS);
    if (entry.timer) this.#clock.clearTimeout(entry.timer);
    entry.timer = this.#clock.setTimeout(() => {
      if (this.#entries.get(taskId) === entry) this.#entries.delete(taskId);
    }, until - now);
    entry.timer.unref?.();
  }

  /** A task is never dropped while it runs: its ending is what the agent is waiting for. */
  #makeRoom(agent: string): void {
    let count = 0;
    let oldestEnded: string | undefined;
    for (const [id, entry] of this.#entries) {
      if (entry.agent !== agent) continue;
      count++;
      if (oldestEnded === undefined && isTerminal(entry.task.status)) oldestEnded = id;
    }
    if (count < MAX_TASKS_PER_AGENT) return;
    if (oldestEnded === undefined) {
      throw new McpError(
        McpErrorCode.InvalidRequest,
        `agent ${agent} already has ${MAX_TASKS_PER_AGENT} tasks running; wait for some to end before starting another`,
      );
    }
    const entry = this.#entries.get(oldestEnded)!;
    if (entry.timer) this.#clock.clearTimeout(entry.timer);
    this.#entries.delete(oldestEnded);
  }
}

/**
 * The SDK's TaskStore interface over the registry, for one agent. The SDK
 * passes the MCP session id too; it is not used: a task is the agent's, and
 * the agent may poll it from a new session after the first one ended.
 */
class AgentTaskStore implements TaskStore {
  readonly #tasks: TaskRegistry;
  readonly #agent: string;

  constructor(tasks: TaskRegistry, agent: string) {
    this.#tasks = tasks;
    this.#agent = agent;
  }

  /** A task is created with the call it runs (session.ts); one created here would have no call to end it. */
  async createTask(): Promise<Task> {
    throw new McpError(McpErrorCode.InvalidRequest, 'Warden creates a task only for a task-augmented tools/call');
  }

  async getTask(taskId: string): Promise<Task | null> {
    return this.#tasks.get(taskId, this.#agent) ?? null;
  }

  async storeTaskResult(taskId: string, _status: 'completed' | 'failed', result: Result): Promise<void> {
    if (!this.#tasks.get(taskId, this.#agent)) throw notFound(taskId);
    // The status follows from the result (isError fails it), as for every task here.
    this.#tasks.end(taskId, { result: result as CallToolResult });
  }

  getTaskResult(taskId: string): Promise<Result> {
    return this.#tasks.result(taskId, this.#agent);
  }

  /** Only tasks/cancel moves a task from the outside; every other status is the call's own. */
  async updateTaskStatus(taskId: string, status: Task['status']): Promise<void> {
    if (!this.#tasks.get(taskId, this.#agent)) throw notFound(taskId);
    if (status !== 'cancelled') {
      throw new McpError(
        McpErrorCode.InvalidRequest,
        `a Warden task's status is its call's; it cannot be set to ${status}`,
      );
    }
    this.#tasks.cancel(taskId, this.#agent);
  }

  async listTasks(cursor?: string): Promise<{ tasks: Task[]; nextCursor?: string }> {
    return this.#tasks.list(this.#agent, cursor);
  }
}

/** Ends a task with what its call answers (a refusal is a tool result too, a JSON-RPC error is kept as one); never throws. */
export async function endTaskWith(
  tasks: TaskRegistry,
  taskId: string,
  run: Promise<CallToolResult>,
  log: Logger,
  facts: { agent: string; tool: string },
): Promise<void> {
  try {
    tasks.end(taskId, { result: await run });
  } catch (err) {
    if (err instanceof McpError) {
      tasks.end(taskId, { error: err });
      return;
    }
    // Never leak internals to the agent; the log has the details.
    log.error({ err: describeError(err), ...facts, taskId }, 'unexpected failure in a task');
    tasks.end(taskId, {
      error: new McpError(
        McpErrorCode.InternalError,
        'Warden failed internally while handling this call; it was not completed',
      ),
    });
  }
}
