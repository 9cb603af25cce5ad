import { randomUUID } from 'node:crypto';
import type { CallToolResult, Progress, Tool } from '@modelcontextprotocol/sdk/types.js';
import { argsHash } from '../approvals/canonical.ts';
import type { ApprovalGate, HeldTask } from '../approvals/types.ts';
import { CallRecords, type AuditDurability } from '../audit/call-records.ts';
import type { AuditSink } from '../audit/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Alert, AlertSink, HaltCheck, HaltState } from '../control/types.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { decide, qualifiedToolName, splitQualifiedName } from '../policy/decide.ts';
import { RESERVED_SERVER } from '../policy/load.ts';
import type { Policy } from '../policy/types.ts';
import { argumentProblem, DEFAULT_ARGUMENT_LIMITS, type ArgumentLimits } from './arguments.ts';
import {
  annotationsOf,
  haltError,
  haltReason,
  refuseCall,
  ToolCall,
  type CallContext,
  type CallFacts,
} from './call.ts';
import type { CallOutcome } from './call-outcomes.ts';
import {
  answerOf,
  AWAIT_TOOL,
  AWAIT_TOOL_NAME,
  DeferredCalls,
  pendingAnswer,
  taskEndingOf,
  type DeferredCall,
  type DeferredFacts,
} from './deferred.ts';
import type { ToolPins } from './pins.ts';
import { endTaskWith, type TaskRegistry } from './tasks.ts';
import type { Upstreams } from './upstream.ts';

export { refusal } from './call-outcomes.ts';

/**
 * The call pipeline, free of any transport: lists an agent's tools, runs each
 * tools/call as one ToolCall (call.ts: admit → record → hold → recheck →
 * forward, one end()), and keeps held calls the agent may collect later. The
 * MCP edge (session.ts) turns its answers into JSON-RPC; nothing here knows
 * about HTTP.
 *
 * Policy outcomes come back as tool results with `isError: true` and a
 * sentence a model can act on; only malformed requests and upstream protocol
 * errors are thrown, as McpError.
 */

export interface PipelineOptions {
  policy: () => Policy;
  audit: AuditSink;
  /** Whether the trail shows a halt of the org or this agent since `since` (read from the audit table). */
  haltedSince?: ((agent: string, since: number) => boolean) | undefined;
  approvals: ApprovalGate;
  halt: HaltCheck;
  alerts: AlertSink;
  upstreams: Upstreams;
  /** Built before the pipeline and wired to the upstreams' onCatalogue. */
  pins: ToolPins;
  logger: Logger;
  clock?: Clock | undefined;
  /** How much of a call's record is on stable storage, and when (default 'fast'; see AuditDurability). */
  auditDurability?: AuditDurability | undefined;
  /** Arguments beyond these are refused (default DEFAULT_ARGUMENT_LIMITS). */
  argumentLimits?: ArgumentLimits | undefined;
}

export interface CallInput {
  agent: string;
  /** The namespaced name the agent used: `<server>__<tool>`. */
  name: string;
  args: Record<string, unknown> | undefined;
  /** Aborted when the agent cancels the request or goes away. */
  signal: AbortSignal;
  /** Set when the agent asked for progress (sent a progressToken). */
  onProgress?: ((progress: Progress) => void) | undefined;
  /**
   * Whether the credential the call was made with still stands; asked again
   * just before forwarding (after any wait for a human), so a token revoked
   * meanwhile does not get its call run. Absent: nothing to re-check.
   */
  stillAuthorized?: (() => boolean) | undefined;
  /**
   * The agent's request was answered already with this MCP task (the client
   * polls for the ending), so a held call waits for its decision however long
   * it takes and is never answered "not run yet". It is kept with its task as
   * soon as it is held, so the task outlives a Warden restart.
   */
  task?: HeldTask | undefined;
  /** Called once the call is held for a human, with where and until when it waits. */
  onHeld?: ((held: HeldCall) => void) | undefined;
  /** The id of the agent token the call was made with: kept with a deferred call, so a restart still checks it. */
  tokenId?: string | undefined;
}

/** A call held for a human: its approval, the channel its card is in, and the approval's expiry. */
export interface HeldCall {
  approvalId: string;
  expiresAt: number;
  channel: string | undefined;
}

export type { AuditDurability } from '../audit/call-records.ts';

interface InFlight {
  agent: string;
  controller: AbortController;
  /**
   * Set while a deferred call waits for its decision: shutting down lets go
   * of it (the approval stays pending and the next Warden takes it over)
   * instead of abandoning it.
   */
  detach?: (() => void) | undefined;
}

/** How often a collector looks for the ending of a call another process is running. */
const ENDING_POLL_MS = 250;
const APPROVAL_NOTE = ' [Warden: each call is held until a human approves it]';
/** How long close() waits for aborted calls to write their call.completed rows. */
const CLOSE_WAIT_MS = 5_000;

export class GatewayPipeline {
  readonly #options: PipelineOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #inFlight = new Map<string, InFlight>();
  /** Every callTool still running, so close() can let them write their last audit rows. */
  readonly #running = new Set<Promise<CallToolResult>>();
  readonly #toolsChanged = new Set<() => void>();
  readonly #deferred: DeferredCalls;
  readonly #offHalt: () => void;
  readonly #offPins: () => void;
  /** What each ToolCall needs from the pipeline that runs it. */
  readonly #context: CallContext;
  /** Set by close(): calls still starting are abandoned with it instead of being forwarded. */
  #closing: WardenError | undefined;

  constructor(options: PipelineOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger.child({ module: 'gateway' });
    this.#deferred = new DeferredCalls(this.#clock, options.approvals.heldCalls, options.haltedSince);
    this.#offHalt = options.halt.onHalt((state) => this.#abortForHalt(state));
    this.#offPins = options.pins.onChange(() => this.notifyToolsChanged());
    this.#context = {
      options,
      records: new CallRecords(options.audit, options.auditDurability),
      clock: this.#clock,
      log: this.#log,
      haltCheck: (agent) => this.#haltCheck(agent),
      closing: () => this.#closing,
      alone: () => this.#running.size === 1,
      enter: (callId, agent, controller) => this.#inFlight.set(callId, { agent, controller }),
      leave: (callId) => this.#inFlight.delete(callId),
      alert: (alert) => this.#alert(alert),
      untilDecided: (callId, approvalId, decision) => this.#decisionUnlessDetached(callId, approvalId, decision),
    };
  }

  /** How many calls are running (forwarded or waiting for approval). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Subscribe to "the tools some agent sees may have changed" (new upstream list, pin change, policy reload). */
  onToolsChanged(listener: () => void): () => void {
    this.#toolsChanged.add(listener);
    return () => this.#toolsChanged.delete(listener);
  }

  notifyToolsChanged(): void {
    for (const l of this.#toolsChanged) {
      try {
        l();
      } catch (err) {
        this.#log.warn({ err: describeError(err) }, 'tools-changed listener failed');
      }
    }
  }

  /**
   * Stops listening for halts, aborts running calls (their approvals become
   * abandoned, their upstream requests are cancelled), waits briefly for them
   * to record how they ended.
   */
  async close(): Promise<void> {
    this.#offHalt();
    this.#offPins();
    this.#closing ??= new WardenError('CALL_ABANDONED', 'Warden is shutting down');
    for (const f of this.#inFlight.values()) {
      if (f.detach) f.detach();
      else f.controller.abort(this.#closing);
    }
    if (this.#running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, CLOSE_WAIT_MS);
        timer.unref?.();
      });
      await Promise.race([Promise.allSettled([...this.#running]), bound]);
      if (timer) this.#clock.clearTimeout(timer);
    }
    this.#deferred.close();
  }

  /** The tools this agent may see: granted by its scopes, offered by a reachable upstream, pin approved. */
  async listTools(agent: string): Promise<Tool[]> {
    const policy = this.#options.policy();
    const agentPolicy = policy.agents[agent];
    if (!agentPolicy) return [];
    const servers = Object.keys(agentPolicy.scopes).filter(
      (name) => (agentPolicy.scopes[name]?.length ?? 0) > 0 && policy.servers[name]?.transport,
    );
    const catalogues = await Promise.allSettled(servers.map((name) => this.#options.upstreams.catalogue(name)));
    const tools: Tool[] = [];
    let holds = false;
    catalogues.forEach((catalogue, i) => {
      const server = servers[i]!;
      if (catalogue.status === 'rejected') {
        // A down upstream hides its tools; the others are still offered.
        this.#log.warn(
          { server, agent, err: describeError(catalogue.reason) },
          'upstream unavailable while listing tools',
        );
        return;
      }
      for (const tool of catalogue.value.tools) {
        const decision = decide(policy, agent, server, tool.name, undefined, {
          annotations: annotationsOf(tool),
          upstreamTools: catalogue.value.names,
          listing: true,
        });
        if (decision.kind === 'deny') continue;
        // A blocked tool is hidden: its new description is exactly what must not reach the model yet.
        if (!this.#options.pins.approved(server, tool.name)) continue;
        if (decision.kind === 'approve') holds = true;
        tools.push({
          name: qualifiedToolName(server, tool.name),
          ...(tool.title !== undefined ? { title: tool.title } : {}),
          description: (tool.description ?? '') + (decision.kind === 'approve' ? APPROVAL_NOTE : ''),
          inputSchema: tool.inputSchema,
          ...(tool.outputSchema !== undefined ? { outputSchema: tool.outputSchema } : {}),
          ...(tool.annotations !== undefined ? { annotations: tool.annotations } : {}),
          // A held call may take a human's minutes: a client that can poll a task need not keep a request open.
          ...(decision.kind === 'approve' ? { execution: { taskSupport: 'optional' as const } } : {}),
        });
      }
    });
    // Only an agent that can be told "not run yet" needs the way to collect.
    if (holds && agentPolicy.answerWithinMs !== undefined) tools.push(AWAIT_TOOL);
    return tools;
  }

  /**
   * Runs one tools/call. Policy outcomes (and every failure before the call
   * is forwarded) come back as isError results; only protocol faults throw.
   */
  callTool(input: CallInput): Promise<CallToolResult> {
    if (input.name === AWAIT_TOOL_NAME) return this.#track(this.#awaitApproval(input));
    // The same call again while it is held or its ending uncollected: attach to it, never a second card or run.
    const repeat = this.#repeatOf(input);
    if (repeat) return this.#track(this.#collect(input, repeat, 'repeat'));
    let run: Promise<CallToolResult> | undefined;
    let answerEarly: (answer: CallToolResult) => void = () => {};
    const early = new Promise<CallToolResult>((resolve) => {
      answerEarly = resolve;
    });
    const defer = (facts: DeferredFacts) => {
      // Only an admitted call is deferred, so its name splits.
      const split = splitQualifiedName(input.name)!;
      // run is set: defer() is only called once the call has gone past its first await.
      this.#deferred.add(facts, { ...split, args: input.args, tokenId: input.tokenId }, run!);
      // A task's request was answered with the task: its ending is the run's own.
      if (!input.task) answerEarly(pendingAnswer(facts, this.#clock));
    };
    run = this.#track(new ToolCall(this.#context, input).run(defer));
    return Promise.race([run, early]);
  }

  /**
   * Only hashes the arguments when something is deferred; arguments the
   * pipeline will refuse (too deep to hash) are never a repeat.
   */
  #repeatOf(input: CallInput): DeferredCall | undefined {
    if (
      !this.#deferred.hasAny(input.agent) ||
      argumentProblem(input.args, this.#options.argumentLimits ?? DEFAULT_ARGUMENT_LIMITS)
    ) {
      return undefined;
    }
    return this.#deferred.findRepeat(input.agent, input.name, argsHash(input.args));
  }

  #track(run: Promise<CallToolResult>): Promise<CallToolResult> {
    this.#running.add(run);
    const untrack = () => this.#running.delete(run);
    run.then(untrack, untrack);
    return run;
  }

  /** `warden__await_approval`: governed and audited like any call; an agent collects only its own approvals. */
  async #awaitApproval(input: CallInput): Promise<CallToolResult> {
    const id = typeof input.args?.id === 'string' ? input.args.id : undefined;
    const base: CallFacts = {
      callId: `call_${randomUUID()}`,
      agent: input.agent,
      server: RESERVED_SERVER,
      tool: 'await_approval',
      args: input.args,
    };
    if (id === undefined) {
      return this.#refuse(input, base, { kind: 'collect_without_id' });
    }
    const call = this.#deferred.get(id, input.agent);
    if (!call) {
      return this.#refuse(input, base, { kind: 'collect_not_found', approvalId: id, agent: input.agent });
    }
    return this.#collect(input, call, 'await');
  }

  /** Waits up to answer_within for a deferred call's ending and hands it over, once; otherwise "not run yet" again. */
  async #collect(input: CallInput, call: DeferredCall, how: 'await' | 'repeat'): Promise<CallToolResult> {
    const base: CallFacts = {
      callId: call.callId,
      agent: input.agent,
      server: RESERVED_SERVER,
      tool: 'await_approval',
      args: { id: call.approvalId },
    };
    const halted = this.#haltCheck(input.agent);
    if (halted) {
      return this.#refuse(input, base, {
        kind: 'collect_halted',
        approvalId: call.approvalId,
        reason: haltReason(halted),
      });
    }
    if (!call.ending) {
      input.onHeld?.({ approvalId: call.approvalId, expiresAt: call.expiresAt, channel: call.channel });
      // A task waits for the ending however long it takes (only its cancel stops the wait).
      await this.#waitForEnding(call, input.signal, input.task !== undefined);
    }
    const ending = this.#deferred.take(call.approvalId);
    if (!ending) {
      if (this.#deferred.get(call.approvalId, input.agent)) return pendingAnswer(call, this.#clock);
      return this.#refuse(input, base, {
        kind: 'collected_already',
        approvalId: call.approvalId,
        heldName: call.name,
      });
    }
    await this.#options.approvals
      .collected(call.approvalId, { agent: input.agent, callId: call.callId, how })
      .catch((err) => this.#log.warn({ err: describeError(err) }, 'could not audit approval.collected'));
    return answerOf(ending);
  }

  /**
   * Up to answer_within for the call to end: its run here, or (run by another
   * process sharing the database) its stored ending, looked for every so often.
   */
  async #waitForEnding(call: DeferredCall, signal: AbortSignal, holdOpen: boolean): Promise<void> {
    const deadline = holdOpen ? Number.POSITIVE_INFINITY : this.#clock.now() + call.answerWithinMs;
    let timer: NodeJS.Timeout | undefined;
    let stop: () => void = () => {};
    const stopped = new Promise<void>((resolve) => {
      stop = resolve;
    });
    signal.addEventListener('abort', stop, { once: true });
    const tick = () => {
      if (this.#clock.now() >= deadline || (!call.run && this.#deferred.ending(call.approvalId))) stop();
      else if (!call.run) timer = this.#clock.setTimeout(tick, ENDING_POLL_MS);
      // Run here: its own promise ends the wait; only a finite deadline needs a timer.
      else if (Number.isFinite(deadline)) timer = this.#clock.setTimeout(tick, deadline - this.#clock.now());
    };
    tick();
    await Promise.race([call.run ?? stopped, stopped]);
    if (timer) this.#clock.clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }

  /**
   * A deferred call's decision, unless Warden shuts down first (undefined):
   * then the call is let go, still pending, for the next Warden to take over.
   * An approval is also taken to run here (HeldCallBook.claimRun): undefined
   * when another process took it. Once decided, shutting down aborts the call
   * like any other.
   */
  async #decisionUnlessDetached<T extends { status: string }>(
    callId: string,
    approvalId: string,
    decision: Promise<T>,
  ): Promise<T | undefined> {
    const flight = this.#inFlight.get(callId);
    let detach: () => void = () => {};
    const detached = new Promise<undefined>((resolve) => {
      detach = () => resolve(undefined);
    });
    if (flight) flight.detach = detach;
    // Shutting down began before this call was deferred.
    if (this.#closing) detach();
    const decided = await Promise.race([decision, detached]);
    if (flight) flight.detach = undefined;
    // An approved deferred call is run by one process only, and a restart can tell it was taken.
    if (decided?.status === 'approved' && !this.#options.approvals.heldCalls.claimRun(approvalId)) {
      this.#log.warn({ callId, approvalId }, 'another Warden process took this approved held call to run');
      this.#deferred.detach(approvalId);
      return undefined;
    }
    // What this run answers now is not how the call ended: the stored call is left as it is.
    if (decided === undefined) this.#deferred.detach(approvalId);
    return decided;
  }

  /**
   * At start-up: takes over the deferred held calls a stopped Warden left
   * waiting for a decision, and runs each on approval, once, with its stored
   * arguments; its agent collects the ending as before. `tokenLive` says
   * whether the agent token a call was made with still stands. Returns how many.
   */
  async resumeHeldCalls(tokenLive: (tokenId: string) => boolean, tasks: TaskRegistry): Promise<number> {
    const calls = await this.#options.approvals.adoptHeldCalls();
    for (const call of calls) {
      // A held call made as a task: its task is known again, and its tasks/cancel still cancels the approval.
      const signal = call.task
        ? tasks.restore(call.agent, call.task, {
            held: { approvalId: call.approvalId, expiresAt: call.expiresAt, channel: call.channel },
          })
        : undefined;
      const run = this.#track(ToolCall.adopt(this.#context, call, { tokenLive, signal }));
      this.#deferred.adopt(call, run);
      if (call.task) void endTaskWith(tasks, call.task.taskId, run, this.#log, { agent: call.agent, tool: call.name });
    }
    // Tasks whose call ended (before the stop, or as adoptHeldCalls found it) and whose ending was not collected.
    const restored = this.#deferred.endedTasks();
    for (const { call, ending } of restored) {
      if (call.task) tasks.restore(call.agent, call.task, { ending: taskEndingOf(ending) });
    }
    if (calls.length > 0 || restored.length > 0)
      this.#log.info(
        { calls: calls.length, endedTasks: restored.length },
        'took over held calls a stopped Warden left deferred',
      );
    return calls.length;
  }

  /**
   * A task's tasks/result handed over its call's ending: a held call kept
   * with the task is collected then (once; audited), as warden__await_approval
   * collects a deferred one.
   */
  async taskCollected(taskId: string, agent: string): Promise<void> {
    const call = this.#deferred.byTask(taskId, agent);
    if (!call?.ending || !this.#deferred.take(call.approvalId)) return;
    await this.#options.approvals
      .collected(call.approvalId, { agent, callId: call.callId, how: 'task' })
      .catch((err) => this.#log.warn({ err: describeError(err) }, 'could not audit approval.collected'));
  }

  /** The kill switch, failing closed: a check that cannot answer is not a "not halted". */
  #haltCheck(agent: string): HaltState | undefined {
    try {
      return this.#options.halt.check(agent) ?? undefined;
    } catch (err) {
      throw new WardenError('INTERNAL', `the kill switch could not be checked (${describeError(err)})`, { cause: err });
    }
  }

  #refuse(input: CallInput, base: CallFacts, outcome: CallOutcome): Promise<CallToolResult> {
    return refuseCall(this.#context, base, outcome, input.name);
  }

  #abortForHalt(state: HaltState): void {
    this.#deferred.discardFor(state, `the result was discarded: ${haltReason(state)}`);
    for (const f of this.#inFlight.values()) {
      if (state.scope === 'org' || f.agent === state.agent) f.controller.abort(haltError(state));
    }
  }

  #alert(alert: Alert): void {
    try {
      this.#options.alerts.alert(alert);
    } catch (err) {
      this.#log.error({ err: describeError(err), kind: alert.kind }, 'alert sink threw');
    }
  }
}
