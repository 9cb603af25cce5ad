import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { HeldCall, HeldCallBook, HeldCallEnding, HeldTask } from '../approvals/types.ts';
import { describeError } from '../errors.ts';
import { isoTime, type Clock } from '../clock.ts';
import { formatDuration } from '../policy/duration.ts';
import { RESERVED_SERVER } from '../policy/load.ts';
import type { HaltState } from '../control/types.ts';

/**
 * Held calls whose agent was answered "not run yet, check back". Most MCP
 * clients give up on a request after 60 s, and a human takes minutes, so a
 * held call outlives the request that asked for it: it goes on waiting for
 * the decision, runs at once on approval whether or not the agent is waiting,
 * and its ending (the real result, or the refusal) is kept here until the agent
 * collects it, once, or the approval's expiry passes.
 */

export const AWAIT_TOOL_NAME = `${RESERVED_SERVER}__await_approval`;

export const AWAIT_TOOL: Tool = {
  name: AWAIT_TOOL_NAME,
  title: 'Wait for a held call',
  description:
    'Waits for a call that Warden is holding for a human approval and returns its real result, or why it was refused. ' +
    'Use it with the approval id from a "not run yet" answer; if there is still no decision it answers "not run yet" again, ' +
    'and you may call it again. Repeating the held call with the same arguments does the same.',
  inputSchema: {
    type: 'object',
    properties: { id: { type: 'string', description: 'The approval id from the "not run yet" answer (apr_…)' } },
    required: ['id'],
    additionalProperties: false,
  },
  annotations: { readOnlyHint: true, openWorldHint: false },
};

export interface DeferredFacts {
  approvalId: string;
  callId: string;
  agent: string;
  /** The namespaced tool name the agent called. */
  name: string;
  argsHash: string;
  channel: string | undefined;
  expiresAt: number;
  answerWithinMs: number;
  /** Set when the call was made as an MCP task: kept with it, so the task outlives a restart. */
  task?: HeldTask | undefined;
}

export interface DeferredCall extends DeferredFacts {
  /** How it ended, once it has (stored: survives a restart, handed out once). */
  ending?: HeldCallEnding | undefined;
  /** Settles once this process has stored how the call ended; absent when the call does not run here. */
  run?: Promise<void> | undefined;
}

/** The answer an agent gets for a held call that is not decided yet. */
export function pendingAnswer(call: DeferredFacts, clock: Clock): CallToolResult {
  const until = isoTime(call.expiresAt);
  const where = call.channel ? `in the Slack channel ${call.channel}` : "in Warden's approval queue";
  const text =
    `${call.name} has NOT run yet: it is waiting for a human's approval (approval ${call.approvalId}) ${where}, until ${until}. ` +
    `Do not assume it ran or retry it with other arguments. To get its result, call ${AWAIT_TOOL_NAME} with {"id": "${call.approvalId}"} ` +
    `(it waits up to ${formatDuration(call.answerWithinMs)} for the decision and may answer "not run yet" again), ` +
    `or repeat this same call with the same arguments. If nobody decides by ${until}, the call is refused and never runs.`;
  return {
    content: [{ type: 'text', text }],
    isError: true,
    _meta: {
      'warden/approval': {
        id: call.approvalId,
        status: 'pending',
        expires_at: until,
        seconds_left: Math.max(0, Math.round((call.expiresAt - clock.now()) / 1000)),
      },
    },
  };
}

/**
 * The deferred calls, kept in the database (approvals' held_calls, through
 * HeldCallBook) so that a restarted Warden still runs an approved one and its
 * agent still collects it; this process adds the runs it is carrying out and
 * the expiry timers.
 */
export class DeferredCalls {
  readonly #clock: Clock;
  readonly #book: HeldCallBook;
  readonly #haltedSince: ((agent: string, since: number) => boolean) | undefined;
  /** Runs of deferred calls in this process, each settling once its ending is stored. */
  readonly #runs = new Map<string, Promise<void>>();
  readonly #timers = new Map<string, NodeJS.Timeout>();

  /**
   * `haltedSince` reads the trail: a halt made while no Warden ran (a terminal halt, then a
   * resume) never reached discardFor, and must still keep a result from the agent.
   */
  constructor(clock: Clock, book: HeldCallBook, haltedSince?: (agent: string, since: number) => boolean) {
    this.#clock = clock;
    this.#book = book;
    this.#haltedSince = haltedSince;
  }

  /** Stores a call whose agent is being told to check back (with its exact arguments), and watches its run. */
  add(
    facts: DeferredFacts,
    call: { server: string; tool: string; args: unknown; tokenId?: string | undefined },
    run: Promise<CallToolResult>,
  ): void {
    this.#book.keep({ ...facts, ...call });
    this.#watch(facts.approvalId, facts.expiresAt, run);
  }

  /** A stored call this process took over from a stopped Warden, and its run here. */
  adopt(call: HeldCall, run: Promise<CallToolResult>): void {
    this.#watch(call.approvalId, call.expiresAt, run);
  }

  /** This process stops carrying the call out (it shuts down): the row stays for the next one. */
  detach(approvalId: string): void {
    this.#runs.delete(approvalId);
    this.#clearTimer(approvalId);
  }

  /** This process stops: its timers go (the rows stay, and the next Warden keeps their expiry). */
  close(): void {
    for (const approvalId of [...this.#timers.keys()]) this.detach(approvalId);
  }

  /** The deferred call with this approval id, if it is this agent's (another agent's is not even acknowledged). */
  get(approvalId: string, agent: string): DeferredCall | undefined {
    const call = this.#book.get(approvalId);
    return call?.agent === agent ? this.#withRun(call) : undefined;
  }

  /** An identical call (same agent, tool and arguments) still waiting or not yet collected. */
  findRepeat(agent: string, name: string, hash: string): DeferredCall | undefined {
    const call = this.#book.findRepeat(agent, name, hash);
    return call ? this.#withRun(call) : undefined;
  }

  /** Whether this agent has anything deferred (so a call's arguments need hashing to look for a repeat). */
  hasAny(agent: string): boolean {
    return this.#book.hasAny(agent);
  }

  /** How the call ended, if it has; a fresh read (another process may have ended it). */
  ending(approvalId: string): HeldCallEnding | undefined {
    return this.#book.get(approvalId)?.ending;
  }

  /** Hands the ending out, once; undefined when it has not ended or someone had it first. */
  take(approvalId: string): HeldCallEnding | undefined {
    const kept = this.#book.get(approvalId);
    const ending = this.#book.take(approvalId);
    if (!ending) return undefined;
    this.detach(approvalId);
    return kept ? this.#asHandedOut(kept, ending) : ending;
  }

  /** The held call made as this task, if it is this agent's. */
  byTask(taskId: string, agent: string): HeldCall | undefined {
    const call = this.#book.getByTask(taskId);
    return call?.agent === agent ? call : undefined;
  }

  /**
   * Held calls made as tasks that ended and were not collected yet, each
   * with its ending as its agent may have it (what a restart restores).
   */
  endedTasks(): { call: HeldCall; ending: HeldCallEnding }[] {
    return this.#book
      .tasks()
      .flatMap((call) => (call.ending ? [{ call, ending: this.#asHandedOut(call, call.ending) }] : []));
  }

  /** A halt since the call ended withholds its result, even one no Warden saw. */
  #asHandedOut(kept: HeldCall, ending: HeldCallEnding): HeldCallEnding {
    if (kept.endedAt !== undefined && this.#haltedSince?.(kept.agent, kept.endedAt))
      return haltedEnding('agents were halted after this call ended, so its result is not handed out');
    return ending;
  }

  /**
   * A halt discards the endings kept for the halted agents: what an approved
   * call returned is not handed to an agent that was stopped. Calls still
   * waiting are cancelled by the halt itself and keep that refusal.
   */
  discardFor(state: HaltState, reason: string): void {
    this.#book.discard(state.scope === 'org' ? {} : { agent: state.agent }, haltedEnding(reason));
  }

  #withRun(call: HeldCall): DeferredCall {
    return { ...call, channel: call.channel, run: this.#runs.get(call.approvalId) };
  }

  #watch(approvalId: string, expiresAt: number, run: Promise<CallToolResult>): void {
    const stored = run.then(
      (result) => this.#end(approvalId, { kind: 'result', result: result as Record<string, unknown> }),
      (err: unknown) => this.#end(approvalId, errorEnding(err)),
    );
    this.#runs.set(approvalId, stored);
    // Kept until the approval's expiry: by then a decided call has had all the time the agent was promised.
    const timer = this.#clock.setTimeout(
      () => {
        this.detach(approvalId);
        this.#book.forget(approvalId);
      },
      Math.max(0, expiresAt - this.#clock.now()),
    );
    timer.unref?.();
    this.#timers.set(approvalId, timer);
  }

  #end(approvalId: string, ending: HeldCallEnding): void {
    // Detached: this process stopped carrying it out, and its run's answer is not the call's ending.
    if (!this.#runs.has(approvalId)) return;
    this.#book.end(approvalId, ending);
  }

  #clearTimer(approvalId: string): void {
    const timer = this.#timers.get(approvalId);
    if (timer) this.#clock.clearTimeout(timer);
    this.#timers.delete(approvalId);
  }
}

/** A run that threw: the upstream's JSON-RPC error, relayed as one when collected. */
function errorEnding(err: unknown): HeldCallEnding {
  if (err instanceof McpError) {
    return {
      kind: 'error',
      code: err.code,
      message: err.message.replace(/^MCP error -?\d+: /, ''),
      ...(err.data !== undefined ? { data: err.data } : {}),
    };
  }
  return { kind: 'error', code: ErrorCode.InternalError, message: describeError(err) };
}

/** What the agent gets for a stored ending. */
export function answerOf(ending: HeldCallEnding): CallToolResult {
  if (ending.kind === 'error') throw new McpError(ending.code, ending.message, ending.data);
  const parsed = CallToolResultSchema.safeParse(ending.result);
  if (parsed.success) return parsed.data;
  throw new McpError(ErrorCode.InternalError, 'the stored result of this held call is not a tool result');
}

/** What an agent collects in place of a result a halt discarded. */
function haltedEnding(reason: string): HeldCallEnding {
  return {
    kind: 'result',
    result: { content: [{ type: 'text', text: `Refused by Warden: ${reason}` }], isError: true },
  };
}

/** A stored ending as a task's: the tool result, or the JSON-RPC error it is relayed as. */
export function taskEndingOf(ending: HeldCallEnding): { result: CallToolResult } | { error: McpError } {
  try {
    return { result: answerOf(ending) };
  } catch (err) {
    return { error: err instanceof McpError ? err : new McpError(ErrorCode.InternalError, describeError(err)) };
  }
}
