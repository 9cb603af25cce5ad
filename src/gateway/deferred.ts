import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
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
}

export interface DeferredCall extends DeferredFacts {
  /** How the call ends: the answer the agent would have had had it waited. */
  result: Promise<CallToolResult>;
  settled: boolean;
  /** Set once the agent has had the ending: it is handed out once. */
  collected: boolean;
  /** Why an ending that was kept is no longer available (a halt). */
  discarded?: string | undefined;
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

export class DeferredCalls {
  readonly #clock: Clock;
  readonly #calls = new Map<string, DeferredCall>();
  readonly #timers = new Map<string, NodeJS.Timeout>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#calls.size;
  }

  add(facts: DeferredFacts, result: Promise<CallToolResult>): DeferredCall {
    const call: DeferredCall = { ...facts, result, settled: false, collected: false };
    result.then(
      () => (call.settled = true),
      () => (call.settled = true),
    );
    this.#calls.set(facts.approvalId, call);
    // Kept until the approval's expiry: by then a decided call has had all the time the agent was promised.
    const timer = this.#clock.setTimeout(
      () => this.#forget(facts.approvalId),
      Math.max(0, facts.expiresAt - this.#clock.now()),
    );
    timer.unref?.();
    this.#timers.set(facts.approvalId, timer);
    return call;
  }

  /** The deferred call with this approval id, if it is this agent's (another agent's is not even acknowledged). */
  get(approvalId: string, agent: string): DeferredCall | undefined {
    const call = this.#calls.get(approvalId);
    return call?.agent === agent ? call : undefined;
  }

  /** An identical call (same agent, tool and arguments) still waiting or not yet collected. */
  findRepeat(agent: string, name: string, hash: string): DeferredCall | undefined {
    for (const call of this.#calls.values()) {
      if (call.agent === agent && call.name === name && call.argsHash === hash && !call.collected) return call;
    }
    return undefined;
  }

  /** Marks the ending as handed out; false when someone else had it first. */
  take(call: DeferredCall): boolean {
    if (call.collected || this.#calls.get(call.approvalId) !== call) return false;
    call.collected = true;
    this.#forget(call.approvalId);
    return true;
  }

  /**
   * A halt discards the endings kept for the halted agents: what an approved
   * call returned is not handed to an agent that was stopped. Calls still
   * waiting are cancelled by the halt itself and keep that refusal.
   */
  discardFor(state: HaltState, reason: string): void {
    for (const call of this.#calls.values()) {
      if (state.scope !== 'org' && call.agent !== state.agent) continue;
      if (call.settled) call.discarded = reason;
    }
  }

  #forget(approvalId: string): void {
    this.#calls.delete(approvalId);
    const timer = this.#timers.get(approvalId);
    if (timer) this.#clock.clearTimeout(timer);
    this.#timers.delete(approvalId);
  }
}
