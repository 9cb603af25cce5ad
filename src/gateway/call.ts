import { randomUUID } from 'node:crypto';
import { McpError, type CallToolResult, type Progress, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { argsHash } from '../approvals/canonical.ts';
import type { ApprovalOutcome, ApprovalRequestInput, HeldCall as StoredHeldCall } from '../approvals/types.ts';
import type { CallRecords } from '../audit/call-records.ts';
import { refusalCodeOf, type AuditDetail, type AuditEntry } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { Alert, HaltState } from '../control/types.ts';
import { WardenError, describeError, isWardenError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { decide, qualifiedToolName, splitQualifiedName } from '../policy/decide.ts';
import { POLICY_DEFAULTS } from '../policy/load.ts';
import type { AgentPolicy, Decision, ToolAnnotations } from '../policy/types.ts';
import { argumentProblem, DEFAULT_ARGUMENT_LIMITS } from './arguments.ts';
import { endingOf, type CallOutcome, type Ending } from './call-outcomes.ts';
import type { DeferredFacts } from './deferred.ts';
import type { CallInput, HeldCall, PipelineOptions } from './pipeline.ts';

/** What every audit row of one call repeats. */
export type CallFacts = Omit<AuditEntry, 'event'>;

/** What a call needs from the pipeline that runs it. */
export interface CallContext {
  readonly options: PipelineOptions;
  /** The call's call.decided and call.completed rows, as durable as the options say. */
  readonly records: CallRecords;
  readonly clock: Clock;
  readonly log: Logger;
  /** The kill switch, failing closed (throws when it cannot answer). */
  haltCheck(agent: string): HaltState | undefined;
  /** Set once the pipeline is closing: what calls still starting are abandoned with. */
  closing(): WardenError | undefined;
  /** No other call is running anywhere in the pipeline. */
  alone(): boolean;
  /** While a call holds or runs, halts and close() reach it through its controller. */
  enter(callId: string, agent: string, controller: AbortController): void;
  leave(callId: string): void;
  alert(alert: Alert): void;
  /**
   * A deferred call's decision, unless this Warden lets go of the call first
   * (shutting down: the approval stays pending for the next one) or another
   * process took the approved call to run it: undefined then.
   */
  untilDecided<T extends { status: string }>(
    callId: string,
    approvalId: string,
    decision: Promise<T>,
  ): Promise<T | undefined>;
}

/** What admit() concludes when the call may go on: the decision to act on and what it rests on. */
interface Admitted {
  kind: 'admitted';
  agentPolicy: AgentPolicy;
  server: string;
  tool: string;
  decision: Exclude<Decision, { kind: 'deny' }>;
  annotations: ToolAnnotations | undefined;
  upstreamTools: ReadonlySet<string>;
}

/** How a hold ended: the approval's outcome, or the request's own failure. */
type HoldOutcome = ApprovalOutcome | { status: 'error'; approvalId?: undefined; approver?: undefined; reason: string };

/** What the steps after the hold need of an admitted call: where it goes and what its tool declares. */
type Target = Pick<Admitted, 'server' | 'tool' | 'annotations' | 'upstreamTools'>;

/** MCP tool names are at most 128 characters; a namespaced one, twice that at most. */
const MAX_NAME_CHARS = 256;

/**
 * One tools/call, from the agent's request to its answer, in staged steps:
 * admit (kill switch, name, arguments, policy, pin) → record (call.decided,
 * durable before anything can happen upstream) → hold (a human decides, when
 * the policy says so) → recheck (what may have changed while it waited) →
 * forward. Each step either lets the call go on or names its outcome; end()
 * is the one exit, acting on the outcome as call-outcomes.ts maps it.
 */
export class ToolCall {
  readonly #context: CallContext;
  readonly #input: CallInput;
  readonly #facts: CallFacts;
  readonly #callId: string;
  readonly #split: { server: string; tool: string } | null;
  readonly #started: number;
  readonly #progress: ProgressRelay;
  /** One controller for the whole call: the agent's cancel or disconnect, a halt and the upstream timeout abort it, each with its own reason. */
  readonly #controller = new AbortController();
  readonly #onAgentAbort = () =>
    this.#controller.abort(this.#input.signal.reason ?? new Error('cancelled by the agent'));
  /** The approval a human gave (or refused), once the hold has ended. */
  #approvalId: string | undefined;
  #approver: string | undefined;
  /** Set when a human approved: the hash of the arguments they saw (absent: the approval cannot show it). */
  #approved: { argsHash: string | undefined } | undefined;
  /** Set when a plain read's call.decided may reach stable storage alongside its upstream call: settles when it has. */
  #decidedDurable: Promise<void> | undefined;
  /** Whether the agent may hear anything yet: progress before then is dropped (it is advisory). */
  #durable = true;
  /** Set for a held call taken over from a stopped Warden: the approval it waits for (its call.decided is the first process's). */
  readonly #adoptedFrom: string | undefined;

  /** `adopted`: a held call a stopped Warden left deferred, run by resume() under its own call id. */
  constructor(context: CallContext, input: CallInput, adopted?: { callId: string; approvalId: string }) {
    this.#context = context;
    this.#input = input;
    this.#started = context.clock.monotonic();
    this.#callId = adopted?.callId ?? `call_${randomUUID()}`;
    this.#adoptedFrom = adopted?.approvalId;
    this.#split = splitQualifiedName(input.name);
    this.#facts = {
      callId: this.#callId,
      agent: input.agent,
      server: this.#split?.server,
      tool: this.#split?.tool ?? input.name,
      args: input.args,
    };
    this.#progress = new ProgressRelay(input.onProgress);
  }

  /**
   * Runs the call to its end. `defer` is told when the agent is answered
   * "not run yet" while the call goes on waiting for its human.
   */
  async run(defer: (facts: DeferredFacts) => void): Promise<CallToolResult> {
    const closing = this.#context.closing();
    if (closing) return this.end({ kind: 'shutting_down', message: closing.message });
    const admission = await this.#admitFailingClosed();
    if (admission.kind !== 'admitted') return this.end(admission);
    const unrecorded = await this.#record(admission);
    if (unrecorded) return this.end(unrecorded);
    this.#enter();
    try {
      return await this.end(await this.#proceed(admission, defer));
    } finally {
      this.#leave();
    }
  }

  /**
   * Runs a held call taken over from a stopped Warden (its agent was told
   * "not run yet, check back", then the process went away): no agent request
   * is attached, and admit and record were done by the first process. It
   * waits for the decision, then goes through the same recheck, forward and
   * end() as any call; its agent collects what end() answers.
   */
  static adopt(
    context: CallContext,
    held: StoredHeldCall,
    options: { signal?: AbortSignal | undefined; tokenLive: (tokenId: string) => boolean },
  ): Promise<CallToolResult> {
    const { tokenId } = held;
    const input: CallInput = {
      agent: held.agent,
      name: held.name,
      args: held.args as Record<string, unknown> | undefined,
      // Nobody's request is open: only a task's cancel (when the call is a task's) reaches it from the agent.
      signal: options.signal ?? new AbortController().signal,
      stillAuthorized: tokenId === undefined ? undefined : () => options.tokenLive(tokenId),
      tokenId,
    };
    return new ToolCall(context, input, { callId: held.callId, approvalId: held.approvalId }).#resume(held);
  }

  async #resume(held: StoredHeldCall): Promise<CallToolResult> {
    this.#facts.owner = this.#context.options.policy().agents[held.agent]?.owner;
    this.#enter();
    try {
      return await this.end(await this.#proceedAdopted(held));
    } finally {
      this.#leave();
    }
  }

  /** Hold (the decision only: the card is up already) → recheck → forward, as #proceed. */
  async #proceedAdopted(held: StoredHeldCall): Promise<CallOutcome> {
    const { options } = this.#context;
    const signal = this.#controller.signal;
    try {
      const decided = await this.#context.untilDecided(
        this.#callId,
        held.approvalId,
        options.approvals.awaitDecision(held.approvalId, signal),
      );
      if (decided === undefined) return { kind: 'carried_on' };
      const refused = this.#decided(decided);
      if (refused) return refused;
      // This process may not have started the upstream yet; fetching the catalogue also pins its definitions.
      const catalogue = await options.upstreams.catalogue(held.server, signal);
      const target: Target = {
        server: held.server,
        tool: held.tool,
        annotations: annotationsOf(catalogue.byName.get(held.tool)),
        upstreamTools: catalogue.names,
      };
      return this.#recheck(target) ?? (await this.#forward(target));
    } catch (err) {
      return this.#failure(err);
    }
  }

  /**
   * The one exit: writes the row that records how the call ended (the
   * refusal's call.decided or the call's call.completed), tells an approved
   * call's card how it went, and builds the agent's answer.
   */
  async end(outcome: CallOutcome): Promise<CallToolResult> {
    const ending = endingOf(outcome, this.#input.name);
    if (ending.row === 'decided') await recordDecided(this.#context, this.#facts, ending);
    else if (ending.row === 'completed') {
      await this.#completed(ending);
      if (this.#approvalId && ending.report) await this.#reportOutcome(this.#approvalId, ending.report);
    }
    if (ending.answer instanceof McpError) throw ending.answer;
    return ending.answer;
  }

  /** A check that throws is a check that failed: the call is refused, never waved through. */
  async #admitFailingClosed(): Promise<Admitted | CallOutcome> {
    try {
      return await this.#admit();
    } catch (err) {
      this.#context.log.error(
        { err: describeError(err), callId: this.#callId, agent: this.#input.agent, tool: this.#input.name },
        'a check failed while deciding a call: refusing it',
      );
      return { kind: 'check_failed', code: isWardenError(err) ? refusalCodeOf(err.code) : 'internal' };
    }
  }

  /** Admit: kill switch, name, arguments, policy (with the upstream's catalogue when it is needed), pin. */
  async #admit(): Promise<Admitted | CallOutcome> {
    const { agent, name, args } = this.#input;
    const { options } = this.#context;
    const split = this.#split;
    const policy = options.policy();
    const agentPolicy = Object.hasOwn(policy.agents, agent) ? policy.agents[agent] : undefined;
    this.#facts.owner = agentPolicy?.owner;

    // The kill switch: before anything else, from memory.
    const halted = this.#context.haltCheck(agent);
    if (halted) {
      const decision = decide(policy, agent, split?.server ?? '', split?.tool ?? name, args, {
        halted: { scope: halted.scope, reason: haltReason(halted) },
      });
      const reason = decision.kind === 'deny' ? decision.reason : haltReason(halted);
      return { kind: 'halted', reason, scope: halted.scope, actor: halted.actor };
    }
    if (name.length > MAX_NAME_CHARS) {
      this.#facts.server = undefined;
      this.#facts.tool = `${name.slice(0, 64)}…`;
      return {
        kind: 'not_a_tool',
        reason: `a tool name of ${name.length} characters is not a Warden tool name (at most ${MAX_NAME_CHARS}; see tools/list)`,
      };
    }
    if (!split) {
      return {
        kind: 'not_a_tool',
        reason: `"${name}" is not a Warden tool name; tools are named <server>__<tool>, e.g. tickets__read_ticket (see tools/list)`,
      };
    }
    const { server, tool } = split;
    // Arguments Warden could not record or show whole are not forwarded.
    const bad = argumentProblem(args, options.argumentLimits ?? DEFAULT_ARGUMENT_LIMITS);
    if (bad) return { kind: 'bad_arguments', message: bad.message, problem: bad.code };

    // Without the upstream's catalogue a denial is already final (annotations
    // can only tighten), so refuse before touching the upstream.
    let catalogue = options.upstreams.cachedCatalogue(server);
    if (!catalogue) {
      const early = decide(policy, agent, server, tool, args, { now: this.#context.clock.now() });
      if (early.kind === 'deny')
        return { kind: 'denied', code: early.code, reason: early.reason, detail: ruleDetail(early) };
      try {
        catalogue = await options.upstreams.catalogue(server, this.#input.signal);
      } catch (err) {
        if (this.#input.signal.aborted) {
          const why = this.#input.signal.reason;
          return isWardenError(why, 'CALL_ABANDONED')
            ? { kind: 'abandoned_undecided', message: why.message }
            : { kind: 'cancelled_undecided' };
        }
        return {
          kind: 'upstream_unreachable',
          server,
          code: isWardenError(err) ? refusalCodeOf(err.code) : 'upstream_unavailable',
          message: describeError(err),
        };
      }
    }
    const annotations = annotationsOf(catalogue.byName.get(tool));
    const decision = decide(policy, agent, server, tool, args, {
      annotations,
      upstreamTools: catalogue.names,
      now: this.#context.clock.now(),
    });
    if (decision.kind === 'deny')
      return { kind: 'denied', code: decision.code, reason: decision.reason, detail: ruleDetail(decision) };

    // A changed definition is refused until re-approved.
    if (!options.pins.approved(server, tool)) return { kind: 'pin_blocked', server, tool };
    return {
      kind: 'admitted',
      // decide() only holds or allows a call for an agent in the policy.
      agentPolicy: agentPolicy!,
      server,
      tool,
      decision,
      annotations,
      upstreamTools: catalogue.names,
    };
  }

  /**
   * Record: call.decided, before anything can happen upstream. A plain read
   * (allowed, read scope, reversible) only changes what the agent knows, so
   * CallRecords may let it start before its record is on stable storage; the
   * agent then gets nothing until it is.
   */
  async #record({ decision }: Admitted): Promise<CallOutcome | undefined> {
    const changesNothing =
      decision.kind === 'allow' && decision.tool.scope === 'read' && decision.tool.consequence === 'reversible';
    try {
      const { durable } = await this.#context.records.decided(
        {
          ...this.#facts,
          event: 'call.decided',
          decision: decision.kind,
          reason: decision.kind === 'approve' ? decision.reason : undefined,
          detail: {
            ...(decision.kind === 'approve'
              ? { rule: decision.rule, scope: decision.tool.scope, consequence: decision.tool.consequence }
              : { scope: decision.tool.scope, consequence: decision.tool.consequence }),
            ...ruleDetail(decision),
            // Whose call it is: if that replica dies mid-call, a survivor closes the call by this (control/recovery.ts).
            ...replicaDetail(this.#context.options.approvals.processId),
          },
        },
        { changesNothing, alone: () => this.#context.alone() },
      );
      if (durable) {
        this.#decidedDurable = durable;
        this.#durable = false;
        durable.then(
          () => (this.#durable = true),
          () => {},
        );
      }
      return undefined;
    } catch (err) {
      this.#context.log.error(
        {
          err: describeError(err),
          callId: this.#callId,
          agent: this.#input.agent,
          server: this.#split?.server,
          tool: this.#split?.tool,
        },
        'audit write failed: refusing the call',
      );
      return { kind: 'unrecorded' };
    }
  }

  /** Hold → recheck → forward; whatever they throw is classified by #failure. */
  async #proceed(admitted: Admitted, defer: (facts: DeferredFacts) => void): Promise<CallOutcome> {
    try {
      return (await this.#hold(admitted, defer)) ?? this.#recheck(admitted) ?? (await this.#forward(admitted));
    } catch (err) {
      return this.#failure(err);
    }
  }

  /** Hold: a human decides, when the policy says so; an agent with answer_within is answered "not run yet" meanwhile. */
  async #hold(admitted: Admitted, defer: (facts: DeferredFacts) => void): Promise<CallOutcome | undefined> {
    const { decision, agentPolicy } = admitted;
    if (decision.kind !== 'approve') return undefined;
    let requested: HeldCall | undefined;
    let markHeld: () => void = () => {};
    const held = new Promise<'held'>((resolve) => {
      markHeld = () => resolve('held');
    });
    const approval = this.#requestApproval(admitted, decision, (r) => {
      requested = r;
      this.#input.onHeld?.(r);
      markHeld();
    });
    let outcome: Awaited<typeof approval>;
    const answerWithinMs = agentPolicy.answerWithinMs;
    if (this.#input.task) {
      // A task's request was answered already (with the task): the call is kept with its task as soon as it is
      // held, and waits for the decision however long it takes.
      const first = await Promise.race([approval, held]);
      if (first !== 'held') outcome = first;
      else {
        const decided = await this.#defer(
          requested!,
          approval,
          answerWithinMs ?? POLICY_DEFAULTS.answerWithinMs,
          defer,
        );
        if (decided === undefined) return { kind: 'carried_on' };
        outcome = decided;
      }
    } else if (answerWithinMs === undefined) outcome = await approval;
    else {
      const clock = this.#context.clock;
      let timer: NodeJS.Timeout | undefined;
      const first = await Promise.race([
        approval,
        new Promise<'answer_now'>((resolve) => {
          timer = clock.setTimeout(() => resolve('answer_now'), answerWithinMs);
        }),
      ]);
      if (timer) clock.clearTimeout(timer);
      if (first === 'answer_now' && requested) {
        const decided = await this.#defer(requested, approval, answerWithinMs, defer);
        if (decided === undefined) return { kind: 'carried_on' };
        outcome = decided;
      } else outcome = first === 'answer_now' ? await approval : first;
    }
    return this.#decided(outcome);
  }

  /**
   * The agent's request is answered now ("not run yet", or it was answered
   * with its task); the call itself goes on, kept in the database, so a
   * restarted Warden takes it over. From here the agent going away no longer
   * abandons it (a halt, the expiry and Warden's shutdown still end it, and a
   * task's cancel). Undefined: this Warden let go of it (see untilDecided).
   */
  async #defer(
    requested: HeldCall,
    approval: Promise<HoldOutcome>,
    answerWithinMs: number,
    defer: (facts: DeferredFacts) => void,
  ): Promise<HoldOutcome | undefined> {
    const { agent, name, args, task } = this.#input;
    if (!task) this.#input.signal.removeEventListener('abort', this.#onAgentAbort);
    this.#progress.mute();
    defer({ ...requested, callId: this.#callId, agent, name, argsHash: argsHash(args), answerWithinMs, task });
    void this.#context.options.approvals
      .deferred(requested.approvalId, { agent, callId: this.#callId, taskId: task?.taskId })
      .catch((err) => this.#context.log.warn({ err: describeError(err) }, 'could not record the deferral'));
    return this.#context.untilDecided(this.#callId, requested.approvalId, approval);
  }

  /** The hold ended with a human's decision (or the request's failure): a refusal ends the call. */
  #decided(outcome: HoldOutcome): CallOutcome | undefined {
    this.#approvalId = outcome.approvalId ?? this.#adoptedFrom;
    this.#approver = outcome.approver;
    if (outcome.status !== 'approved') {
      return { kind: 'not_approved', status: outcome.status, reason: outcome.reason ?? outcome.status };
    }
    this.#approved = { argsHash: outcome.argsHash };
    return undefined;
  }

  /** Recheck: what may have changed while the call waited (the approval's arguments, the policy, a halt, the token). */
  #recheck(admitted: Target): CallOutcome | undefined {
    const { agent, name, args } = this.#input;
    const { options, log } = this.#context;
    if (this.#approved) {
      // An approval covers the exact arguments a human saw, nothing else:
      // anything but a matching hash (including none) is not that approval.
      if (this.#approved.argsHash === undefined || this.#approved.argsHash !== argsHash(args)) {
        log.error(
          { callId: this.#callId, approvalId: this.#approvalId, agent },
          'approved arguments do not match the call: refusing it',
        );
        return { kind: 'approval_mismatch' };
      }
      // The wait can be long: a policy reload meanwhile may have taken the
      // tool away, and an approval does not outrank the policy in force.
      let now: Decision;
      try {
        now = decide(options.policy(), agent, admitted.server, admitted.tool, args, {
          now: this.#context.clock.now(),
          annotations: admitted.annotations,
          upstreamTools: options.upstreams.cachedCatalogue(admitted.server)?.names ?? admitted.upstreamTools,
        });
      } catch (err) {
        // Not the upstream's failure: Warden could not confirm the policy, so it refuses.
        log.error(
          { err: describeError(err), callId: this.#callId, approvalId: this.#approvalId, agent, tool: name },
          'the policy check after approval failed: refusing the call',
        );
        throw new WardenError(
          'INTERNAL',
          "Warden's policy check after the approval failed (internal), so Warden refused the call rather than run it unchecked; try again later or ask an operator to look at the gateway log",
          { cause: err },
        );
      }
      if (now.kind === 'deny') return { kind: 'policy_changed', code: now.code, reason: now.reason };
    }
    // A halt may have landed while we waited.
    const haltedNow = this.#context.haltCheck(agent);
    if (haltedNow) throw haltError(haltedNow);
    // So may a revocation of the token the call came with: it ends the
    // agent's authority over calls already made, not only over new requests.
    // A call that did not wait for a human was authenticated by this very
    // request a moment ago; asking the database again would only cost a round
    // trip per call (on PostgreSQL a large share of a governed call's time).
    if (this.#approved !== undefined && !this.#credentialStands()) {
      log.warn(
        { callId: this.#callId, agent, tool: name, approvalId: this.#approvalId },
        'token revoked before the call was forwarded: refusing it',
      );
      return { kind: 'token_revoked' };
    }
    return undefined;
  }

  /**
   * Forward. A read's answer (its result, an upstream error, even progress
   * text) reaches the agent only once its call.decided row is on stable
   * storage.
   */
  async #forward({ server, tool }: Target): Promise<CallOutcome> {
    const { options, log } = this.#context;
    const { name, args } = this.#input;
    let upstream: { result: CallToolResult } | { error: unknown };
    try {
      const result = await options.upstreams.callTool(server, tool, args, {
        controller: this.#controller,
        onProgress: this.#input.onProgress
          ? (p) => {
              if (this.#durable) this.#progress.upstream(p);
            }
          : undefined,
        verify: (live) => options.pins.verifyLive(server, tool, name, live),
      });
      upstream = { result };
    } catch (err) {
      upstream = { error: err };
    }
    if (this.#decidedDurable) {
      try {
        await this.#decidedDurable;
      } catch (err) {
        // Fail closed: an answer the trail might not keep is not given, whatever it was.
        log.error(
          { err: describeError(err), callId: this.#callId, agent: this.#input.agent, server, tool },
          'could not fsync the audit trail: withholding the answer',
        );
        return { kind: 'undurable', message: describeError(err) };
      }
    }
    if ('error' in upstream) {
      const err = upstream.error;
      if (this.#controller.signal.aborted || !(err instanceof McpError)) return this.#failure(err);
      return { kind: 'upstream_error', error: err };
    }
    return { kind: 'answered', result: upstream.result };
  }

  /** Why a call that was under way stopped: a halt or the agent's going away first, whatever the step then threw. */
  #failure(err: unknown): CallOutcome {
    const signal = this.#controller.signal;
    const aborted = signal.aborted ? signal.reason : undefined;
    const halted = isWardenError(aborted, 'HALTED') ? aborted : isWardenError(err, 'HALTED') ? err : undefined;
    if (halted) return { kind: 'stopped', message: halted.message };
    const abandoned = isWardenError(aborted, 'CALL_ABANDONED')
      ? aborted
      : isWardenError(err, 'CALL_ABANDONED')
        ? err
        : undefined;
    if (abandoned) return { kind: 'abandoned', message: abandoned.message };
    if (this.#input.signal.aborted) return { kind: 'cancelled' };
    if (isWardenError(err, 'TOOL_PIN_MISMATCH')) return { kind: 'pin_changed', message: err.message };
    if (isWardenError(err, 'INTERNAL')) return { kind: 'internal', message: err.message };
    return {
      kind: 'upstream_failed',
      code: isWardenError(err) ? refusalCodeOf(err.code) : 'upstream_error',
      message: describeError(err),
    };
  }

  #enter(): void {
    const input = this.#input;
    if (input.signal.aborted) this.#onAgentAbort();
    else input.signal.addEventListener('abort', this.#onAgentAbort, { once: true });
    this.#context.enter(this.#callId, input.agent, this.#controller);
    // Admitted while close() was aborting the others: it must not start now. (A call taken
    // over is let go instead, still pending for the next Warden: untilDecided sees the closing.)
    const closing = this.#adoptedFrom === undefined ? this.#context.closing() : undefined;
    if (closing) this.#controller.abort(closing);
  }

  #leave(): void {
    this.#input.signal.removeEventListener('abort', this.#onAgentAbort);
    this.#context.leave(this.#callId);
  }

  async #requestApproval(
    admitted: Admitted,
    decision: Extract<Decision, { kind: 'approve' }>,
    onRequested: NonNullable<ApprovalRequestInput['onRequested']>,
  ): Promise<HoldOutcome> {
    const signal = this.#controller.signal;
    try {
      return await this.#context.options.approvals.request({
        callId: this.#callId,
        agent: admitted.agentPolicy,
        server: admitted.server,
        tool: admitted.tool,
        args: this.#input.args,
        rule: decision.rule,
        consequence: decision.tool.consequence,
        reason: decision.reason,
        grantable: decision.policyRule?.grantNever !== true,
        signal,
        onWaiting: (elapsedMs) => this.#progress.waiting(elapsedMs),
        onRequested,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.#context.log.error({ err: describeError(err), callId: this.#callId }, 'approval request failed');
      return { status: 'error', reason: `not decided: the approval request failed (${describeError(err)})` };
    }
  }

  /** The call's credential, failing closed: a check that cannot answer is not a "still valid". */
  #credentialStands(): boolean {
    const { stillAuthorized } = this.#input;
    if (!stillAuthorized) return true;
    try {
      return stillAuthorized();
    } catch (err) {
      this.#context.log.error(
        { err: describeError(err), callId: this.#callId, agent: this.#input.agent },
        'the token check before forwarding failed: refusing the call',
      );
      throw new WardenError(
        'INTERNAL',
        "Warden's token check before forwarding failed (internal), so Warden refused the call; try again later or ask an operator to look at the gateway log",
        { cause: err },
      );
    }
  }

  /**
   * Records call.completed and resolves once it is committed (durable as
   * `auditDurability` says); a failed write is logged, not thrown: the
   * call already happened, and hiding its result would not undo it.
   */
  #completed(ending: Ending): Promise<void> {
    const { clock, log } = this.#context;
    const detail: AuditDetail = {
      ...(ending.code ? { code: ending.code } : {}),
      ...ending.detail,
      ...(this.#approvalId || this.#adoptedFrom ? { approvalId: this.#approvalId ?? this.#adoptedFrom } : {}),
      // Taken over from a stopped Warden: the call.decided row before it is that process's.
      ...(this.#adoptedFrom ? { adopted: true } : {}),
    };
    const entry: AuditEntry = {
      ...this.#facts,
      event: 'call.completed',
      decision: ending.decision,
      result: ending.result,
      reason: ending.reason,
      approver: this.#approver,
      durationMs: Math.round(clock.monotonic() - this.#started),
      detail: Object.keys(detail).length > 0 ? detail : undefined,
      ts: clock.now(),
    };
    return this.#context.records
      .completed(entry)
      .catch((err) =>
        log.error({ err: describeError(err), callId: entry.callId }, 'audit write failed for call.completed'),
      );
  }

  async #reportOutcome(approvalId: string, report: { ok: boolean; summary: string }): Promise<void> {
    try {
      await this.#context.options.approvals.reportOutcome(approvalId, report);
    } catch (err) {
      this.#context.log.warn(
        { err: describeError(err), approvalId },
        'could not report the outcome of an approved call',
      );
    }
  }
}

/**
 * A call refused before it was decided: records the outcome's call.decided
 * row (and alerts it when the table says so) and gives the agent's answer.
 * Also what the pipeline ends a refused collection of a held call with.
 */
export async function refuseCall(
  context: CallContext,
  facts: CallFacts,
  outcome: CallOutcome,
  name: string,
): Promise<CallToolResult> {
  const ending = endingOf(outcome, name);
  if (ending.row !== 'decided' || ending.answer instanceof McpError) {
    throw new WardenError('INTERNAL', `${outcome.kind} is not a refusal before the decision`);
  }
  await recordDecided(context, facts, ending);
  return ending.answer;
}

/** A failed write is logged: the refusal stands, only its record is missing. */
async function recordDecided(context: CallContext, facts: CallFacts, ending: Ending): Promise<void> {
  const reason = ending.reason ?? '';
  const detail: AuditDetail = { ...(ending.code ? { code: ending.code } : {}), ...ending.detail };
  try {
    await context.options.audit.append({ ...facts, event: 'call.decided', decision: ending.decision, reason, detail });
  } catch (err) {
    context.log.error({ err: describeError(err), callId: facts.callId }, 'audit write failed for a refused call');
  }
  if (ending.alert) {
    context.alert({
      kind: 'denied',
      severity: 'warning',
      agent: facts.agent,
      text: `${facts.agent} was refused ${facts.server ? qualifiedToolName(facts.server, facts.tool ?? '') : facts.tool}: ${reason}`,
      detail: { callId: facts.callId, server: facts.server, tool: facts.tool, ...detail },
    });
  }
}

/**
 * Progress toward the agent: one increasing sequence across the wait for a
 * human (ticks) and the upstream's own reports (offset past the ticks).
 */
class ProgressRelay {
  #ticks = 0;
  #send: ((p: Progress) => void) | undefined;
  constructor(send: ((p: Progress) => void) | undefined) {
    this.#send = send;
  }

  /** The request was answered: nothing more may be sent for it. */
  mute(): void {
    this.#send = undefined;
  }

  waiting(elapsedMs: number): void {
    if (!this.#send) return;
    this.#ticks++;
    this.#send({ progress: this.#ticks, message: `waiting for a human to approve (${Math.round(elapsedMs / 1000)}s)` });
  }

  upstream(p: Progress): void {
    if (!this.#send) return;
    this.#send({
      progress: this.#ticks + p.progress,
      ...(p.total !== undefined ? { total: this.#ticks + p.total } : {}),
      ...(p.message !== undefined ? { message: p.message } : {}),
    });
  }
}

export function haltReason(state: HaltState): string {
  const who = state.scope === 'org' ? 'all agents (org-wide)' : `agent ${state.agent}`;
  return `${who} halted by ${state.actor}${state.reason ? `: ${state.reason}` : ''}`;
}

/** The abort reason for a halt: approvals records a HALTED abort as 'cancelled'. */
export function haltError(state: HaltState): WardenError {
  return new WardenError('HALTED', haltReason(state));
}

export function annotationsOf(tool: Tool | undefined): ToolAnnotations | undefined {
  return tool?.annotations as ToolAnnotations | undefined;
}

function replicaDetail(processId: string | undefined): { replica?: string } {
  return processId === undefined ? {} : { replica: processId };
}

/** Which of the agent's `rules:` decided, for the call.decided row's detail; empty when none did. */
function ruleDetail(decision: Decision): Record<string, unknown> {
  const r = decision.policyRule;
  if (r === undefined) return {};
  return {
    policy_rule: {
      index: r.index,
      tool: r.tool,
      effect: r.effect,
      ...(r.when !== undefined ? { when: r.when } : {}),
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
      ...(r.error !== undefined ? { error: r.error } : {}),
    },
  };
}
