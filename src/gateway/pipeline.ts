import { randomUUID } from 'node:crypto';
import { McpError, type CallToolResult, type Progress, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { argsHash } from '../approvals/canonical.ts';
import type { ApprovalGate, ApprovalOutcome, ApprovalRequestInput } from '../approvals/types.ts';
import { RESERVED_SERVER } from '../policy/load.ts';
import {
  refusalCodeOf,
  type AuditDecision,
  type AuditDetail,
  type AuditEntry,
  type AuditSink,
} from '../audit/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { AlertSink, HaltCheck, HaltState, Alert } from '../control/types.ts';
import { WardenError, describeError, isWardenError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { decide, qualifiedToolName, splitQualifiedName } from '../policy/decide.ts';
import type { AgentPolicy, Decision, Policy, ToolAnnotations } from '../policy/types.ts';
import { argumentProblem, DEFAULT_ARGUMENT_LIMITS, type ArgumentLimits } from './arguments.ts';
import {
  AWAIT_TOOL,
  AWAIT_TOOL_NAME,
  DeferredCalls,
  pendingAnswer,
  type DeferredCall,
  type DeferredFacts,
} from './deferred.ts';
import type { ToolPins } from './pins.ts';
import type { Upstreams } from './upstream.ts';

/**
 * The call pipeline, free of any transport: halt → decide → pin check →
 * audit (durable) → approval → forward → audit. The MCP edge (session.ts)
 * turns its answers into JSON-RPC; nothing here knows about HTTP.
 *
 * Policy outcomes come back as tool results with `isError: true` and a
 * sentence a model can act on; only malformed requests and upstream protocol
 * errors are thrown, as McpError.
 */

export interface PipelineOptions {
  policy: () => Policy;
  audit: AuditSink;
  approvals: ApprovalGate;
  halt: HaltCheck;
  alerts: AlertSink;
  upstreams: Upstreams;
  /** Built before the pipeline and wired to the upstreams' onCatalogue. */
  pins: ToolPins;
  logger: Logger;
  clock?: Clock | undefined;
  /**
   * How much of a call's record is on stable storage, and when. Either way
   * each row is committed before the step it records is acted on, and
   * call.decided is fsynced before a call that can change something (write
   * scope, a consequence beyond reversible, or held for a human) is
   * forwarded.
   * 'fast' (default): a plain read is forwarded once its call.decided is
   * committed, the fsync running alongside, and answered once it is done;
   * call.completed is fsynced by the next synced commit or within the audit
   * log's syncWithinMs (20 ms). A crash of Warden loses nothing; a power or
   * OS failure in that window can lose those rows, and crash recovery then
   * records the call's outcome as unknown.
   * 'strict': every row is fsynced before the step after it (two fsyncs per
   * call on the path).
   */
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
}

export type AuditDurability = 'fast' | 'strict';

/** What every audit row of one call repeats. */
type CallFacts = Omit<AuditEntry, 'event'>;

interface InFlight {
  agent: string;
  controller: AbortController;
}

/** What steps 1–3 conclude: refused (already audited), or admitted with the decision to act on. */
type Admission =
  | { kind: 'refused'; result: CallToolResult }
  | {
      kind: 'admitted';
      agentPolicy: AgentPolicy;
      server: string;
      tool: string;
      decision: Exclude<Decision, { kind: 'deny' }>;
      annotations: ToolAnnotations | undefined;
      upstreamTools: ReadonlySet<string>;
    };

const APPROVAL_NOTE = ' [Warden: each call is held until a human approves it]';
/** How long close() waits for aborted calls to write their call.completed rows. */
const CLOSE_WAIT_MS = 5_000;
/** MCP tool names are at most 128 characters; a namespaced one, twice that at most. */
const MAX_NAME_CHARS = 256;

export function refusal(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

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
  /** Set by close(): calls still starting are abandoned with it instead of being forwarded. */
  #closing: WardenError | undefined;

  constructor(options: PipelineOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger.child({ module: 'gateway' });
    this.#deferred = new DeferredCalls(this.#clock);
    this.#offHalt = options.halt.onHalt((state) => this.#abortForHalt(state));
    this.#offPins = options.pins.onChange(() => this.notifyToolsChanged());
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
    for (const f of this.#inFlight.values()) f.controller.abort(this.#closing);
    if (this.#running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => {
        timer = this.#clock.setTimeout(resolve, CLOSE_WAIT_MS);
        timer.unref?.();
      });
      await Promise.race([Promise.allSettled([...this.#running]), bound]);
      if (timer) this.#clock.clearTimeout(timer);
    }
  }

  /** The tools this agent may see: granted by its scopes, offered by a reachable upstream, pin approved. */
  async listTools(agent: string): Promise<Tool[]> {
    const policy = this.#options.policy();
    const a = policy.agents[agent];
    if (!a) return [];
    const servers = Object.keys(a.scopes).filter((s) => (a.scopes[s]?.length ?? 0) > 0 && policy.servers[s]?.transport);
    const catalogues = await Promise.allSettled(servers.map((s) => this.#options.upstreams.catalogue(s)));
    const tools: Tool[] = [];
    let holds = false;
    catalogues.forEach((c, i) => {
      const server = servers[i]!;
      if (c.status === 'rejected') {
        // A down upstream hides its tools; the others are still offered.
        this.#log.warn({ server, agent, err: describeError(c.reason) }, 'upstream unavailable while listing tools');
        return;
      }
      for (const tool of c.value.tools) {
        const d = decide(policy, agent, server, tool.name, undefined, {
          annotations: annotationsOf(tool),
          upstreamTools: c.value.names,
        });
        if (d.kind === 'deny') continue;
        // A blocked tool is hidden: its new description is exactly what must not reach the model yet.
        if (!this.#options.pins.approved(server, tool.name)) continue;
        if (d.kind === 'approve') holds = true;
        tools.push({
          name: qualifiedToolName(server, tool.name),
          ...(tool.title !== undefined ? { title: tool.title } : {}),
          description: (tool.description ?? '') + (d.kind === 'approve' ? APPROVAL_NOTE : ''),
          inputSchema: tool.inputSchema,
          ...(tool.outputSchema !== undefined ? { outputSchema: tool.outputSchema } : {}),
          ...(tool.annotations !== undefined ? { annotations: tool.annotations } : {}),
        });
      }
    });
    // Only an agent that can be told "not run yet" needs the way to collect.
    if (holds && a.answerWithinMs !== undefined) tools.push(AWAIT_TOOL);
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
      // run is set: defer() is only called once #call has gone past its first await.
      this.#deferred.add(facts, run!);
      answerEarly(pendingAnswer(facts, this.#clock));
    };
    run = this.#track(this.#call(input, defer));
    return Promise.race([run, early]);
  }

  /**
   * Only hashes the arguments when something is deferred; arguments the
   * pipeline will refuse (too deep to hash) are never a repeat.
   */
  #repeatOf(input: CallInput): DeferredCall | undefined {
    if (
      this.#deferred.size === 0 ||
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
      return this.#refuse(
        base,
        'deny',
        `${AWAIT_TOOL_NAME} needs {"id": "<approval id>"}, the id from the "not run yet" answer`,
        { code: 'invalid_arguments' },
        false,
      );
    }
    const call = this.#deferred.get(id, input.agent);
    if (!call) {
      return this.#refuse(
        base,
        'deny',
        `there is no held call ${id} for ${input.agent} to collect (it was collected already, its approval expired, or it is not this agent's)`,
        { code: 'not_found', approvalId: id },
        false,
      );
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
      return this.#refuse(base, 'halted', haltReason(halted), { code: 'halted', approvalId: call.approvalId }, false);
    }
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      call.result.then(
        () => 'ended' as const,
        () => 'ended' as const,
      ),
      new Promise<'waiting'>((resolve) => {
        timer = this.#clock.setTimeout(() => resolve('waiting'), call.answerWithinMs);
        input.signal.addEventListener('abort', () => resolve('waiting'), { once: true });
      }),
    ]);
    if (timer) this.#clock.clearTimeout(timer);
    if (call.discarded) {
      return this.#refuse(base, 'cancelled', call.discarded, { code: 'halted', approvalId: call.approvalId }, false);
    }
    if (waited === 'waiting') return pendingAnswer(call, this.#clock);
    if (!this.#deferred.take(call)) {
      return this.#refuse(
        base,
        'deny',
        `the result of ${call.name} (approval ${call.approvalId}) was already collected`,
        { code: 'not_found', approvalId: call.approvalId },
        false,
      );
    }
    await this.#options.approvals
      .collected(call.approvalId, { agent: input.agent, callId: call.callId, how })
      .catch((err) => this.#log.warn({ err: describeError(err) }, 'could not audit approval.collected'));
    return call.result;
  }

  async #call(input: CallInput, defer: (facts: DeferredFacts) => void): Promise<CallToolResult> {
    const started = this.#clock.monotonic();
    const callId = `call_${randomUUID()}`;
    const { agent, name, args } = input;
    const split = splitQualifiedName(name);
    const base: CallFacts = { callId, agent, server: split?.server, tool: split?.tool ?? name, args };

    if (this.#closing) {
      return this.#refuse(
        base,
        'abandoned',
        `${name} was not run: ${this.#closing.message}; try again once it is back`,
        { code: 'abandoned' },
        false,
      );
    }

    // 1–3. Everything that decides whether the call may run. A check that
    // throws is a check that failed: the call is refused, never waved through.
    let admission: Admission;
    try {
      admission = await this.#admit(input, base, split);
    } catch (err) {
      this.#log.error(
        { err: describeError(err), callId, agent, tool: name },
        'a check failed while deciding a call: refusing it',
      );
      return this.#refuse(
        base,
        'error',
        `Warden could not decide this call because one of its checks failed (${isWardenError(err) ? refusalCodeOf(err.code) : 'internal'}), so it was not run; try again later or ask an operator to look at the gateway log`,
        { code: isWardenError(err) ? refusalCodeOf(err.code) : 'internal' },
        false,
      );
    }
    if (admission.kind === 'refused') return admission.result;
    const { agentPolicy, server, tool, decision, annotations } = admission;

    // 4. The record of the decision, before anything can happen upstream. A
    // call that may change something (write scope, a consequence beyond
    // reversible, or held for a human) waits until the record is on stable
    // storage. A plain read only changes what the agent knows, so it may start
    // once its record is committed: the fsync runs alongside the upstream
    // call, and the agent gets nothing until it is done.
    const read =
      this.#options.auditDurability !== 'strict' &&
      decision.kind === 'allow' &&
      decision.tool.scope === 'read' &&
      decision.tool.consequence === 'reversible' &&
      this.#options.audit.sync !== undefined;
    let decidedDurable: Promise<void> | undefined;
    // Whether the agent may hear anything yet: progress before then is dropped (it is advisory).
    let durable = !read;
    try {
      await this.#options.audit.append(
        {
          ...base,
          event: 'call.decided',
          decision: decision.kind,
          reason: decision.kind === 'approve' ? decision.reason : undefined,
          detail:
            decision.kind === 'approve'
              ? { rule: decision.rule, scope: decision.tool.scope, consequence: decision.tool.consequence }
              : { scope: decision.tool.scope, consequence: decision.tool.consequence },
        },
        { sync: !read },
      );
      if (read) {
        // No other call anywhere in the pipeline: the fsync may overlap the upstream call on the event loop.
        decidedDurable = this.#options.audit.sync!({ quiet: this.#running.size === 1 });
        // A failure is handled where the answer awaits it; until then it must not surface as unhandled.
        decidedDurable.then(
          () => (durable = true),
          () => {},
        );
      }
    } catch (err) {
      this.#log.error(
        { err: describeError(err), callId, agent, server, tool },
        'audit write failed: refusing the call',
      );
      return refusal(
        `Refused by Warden: the call could not be recorded in the audit trail (audit_write_failed), and Warden never runs a call it cannot record. Try again later.`,
      );
    }

    // One controller for the whole call: the agent's cancel or disconnect, a
    // halt and the upstream timeout all abort it, each with its own reason.
    const controller = new AbortController();
    const signal = controller.signal;
    const onAgentAbort = () => controller.abort(input.signal.reason ?? new Error('cancelled by the agent'));
    if (input.signal.aborted) onAgentAbort();
    else input.signal.addEventListener('abort', onAgentAbort, { once: true });
    this.#inFlight.set(callId, { agent, controller });
    // Admitted while close() was aborting the others: it must not start now.
    if (this.#closing) controller.abort(this.#closing);
    const progress = new ProgressRelay(input.onProgress);
    let approvalId: string | undefined;
    let approver: string | undefined;
    try {
      // 5. A human decides, when the policy says so.
      if (decision.kind === 'approve') {
        let requested: { approvalId: string; expiresAt: number; channel: string | undefined } | undefined;
        const approval = this.#requestApproval(
          callId,
          agentPolicy,
          server,
          tool,
          args,
          decision,
          signal,
          progress,
          (r) => {
            requested = r;
          },
        );
        let outcome: Awaited<typeof approval>;
        const answerWithinMs = agentPolicy.answerWithinMs;
        if (answerWithinMs === undefined) outcome = await approval;
        else {
          let timer: NodeJS.Timeout | undefined;
          const first = await Promise.race([
            approval,
            new Promise<'answer_now'>((resolve) => {
              timer = this.#clock.setTimeout(() => resolve('answer_now'), answerWithinMs);
            }),
          ]);
          if (timer) this.#clock.clearTimeout(timer);
          if (first === 'answer_now' && requested) {
            // The agent's request is answered now; the call itself goes on. From here the agent going
            // away no longer abandons it (a halt, the expiry and Warden's shutdown still end it).
            input.signal.removeEventListener('abort', onAgentAbort);
            progress.mute();
            defer({ ...requested, callId, agent, name, argsHash: argsHash(args), answerWithinMs });
            void this.#options.approvals
              .deferred(requested.approvalId, { agent, callId })
              .catch((err) => this.#log.warn({ err: describeError(err) }, 'could not record the deferral'));
            outcome = await approval;
          } else outcome = first === 'answer_now' ? await approval : first;
        }
        if (outcome.status !== 'approved') {
          const reason = `${name} was not run: it needs a human's approval and the request was ${outcome.reason ?? outcome.status}`;
          await this.#completed(base, outcome.status, started, {
            reason,
            approver: outcome.approver,
            detail: { approvalId: outcome.approvalId },
          });
          return refusal(`Refused by Warden: ${reason}`);
        }
        approvalId = outcome.approvalId;
        approver = outcome.approver;
        // An approval covers the exact arguments a human saw, nothing else:
        // anything but a matching hash (including none) is not that approval.
        if (outcome.argsHash === undefined || outcome.argsHash !== argsHash(args)) {
          const reason = `${name} was not run: the approval does not match these exact arguments`;
          this.#log.error({ callId, approvalId, agent }, 'approved arguments do not match the call: refusing it');
          await this.#completed(base, 'blocked', started, {
            reason,
            approver,
            detail: { approvalId, code: 'approval_mismatch' },
          });
          await this.#reportOutcome(approvalId, false, reason);
          return refusal(`Refused by Warden: ${reason}`);
        }
        // The wait can be long: a policy reload meanwhile may have taken the
        // tool away, and an approval does not outrank the policy in force.
        let now: Decision;
        try {
          now = decide(this.#options.policy(), agent, server, tool, args, {
            annotations,
            upstreamTools: this.#options.upstreams.cachedCatalogue(server)?.names ?? admission.upstreamTools,
          });
        } catch (err) {
          // Not the upstream's failure: Warden could not confirm the policy, so it refuses.
          this.#log.error(
            { err: describeError(err), callId, approvalId, agent, tool: name },
            'the policy check after approval failed: refusing the call',
          );
          throw new WardenError(
            'INTERNAL',
            "Warden's policy check after the approval failed (internal), so Warden refused the call rather than run it unchecked; try again later or ask an operator to look at the gateway log",
            { cause: err },
          );
        }
        if (now.kind === 'deny') {
          const reason = `${name} was approved but not run: the policy changed while it waited and now refuses it (${now.reason})`;
          await this.#completed(base, 'deny', started, { reason, approver, detail: { approvalId, code: now.code } });
          await this.#reportOutcome(approvalId, false, reason);
          return refusal(`Refused by Warden: ${reason}`);
        }
      }
      // A halt may have landed while we waited.
      const haltedNow = this.#haltCheck(agent);
      if (haltedNow) throw haltError(haltedNow);
      // So may a revocation of the token the call came with: it ends the
      // agent's authority over calls already made, not only over new requests.
      if (!this.#credentialStands(input, callId)) {
        const reason = `${name} was not run: the agent token it was made with has been revoked${approvalId ? ' while it waited for approval' : ''}`;
        this.#log.warn(
          { callId, agent, tool: name, approvalId },
          'token revoked before the call was forwarded: refusing it',
        );
        await this.#completed(base, 'deny', started, {
          reason,
          approver,
          detail: { code: 'token_revoked', ...(approvalId ? { approvalId } : {}) },
        });
        if (approvalId) await this.#reportOutcome(approvalId, false, reason);
        return refusal(`Refused by Warden: ${reason}`);
      }

      // 6. Forward. A read's answer (its result, an upstream error, even
      // progress text) reaches the agent only once its call.decided row is on
      // stable storage.
      let outcome: { result: CallToolResult } | { error: unknown };
      try {
        const result = await this.#options.upstreams.callTool(server, tool, args, {
          controller,
          onProgress: input.onProgress
            ? (p) => {
                if (durable) progress.upstream(p);
              }
            : undefined,
          verify: (live) => this.#options.pins.verifyLive(server, tool, name, live),
        });
        outcome = { result };
      } catch (err) {
        outcome = { error: err };
      }
      if (decidedDurable) {
        try {
          await decidedDurable;
        } catch (err) {
          // Fail closed: an answer the trail might not keep is not given, whatever it was.
          this.#log.error(
            { err: describeError(err), callId, agent, server, tool },
            'could not fsync the audit trail: withholding the answer',
          );
          const reason = `${name} ran, but Warden could not make its audit record durable (${describeError(err)}), so the answer was withheld`;
          await this.#completed(base, 'error', started, { reason, detail: { code: 'audit_write_failed' } });
          return refusal(`Refused by Warden: ${reason}. Try again later.`);
        }
      }
      if ('error' in outcome) {
        const err = outcome.error;
        if (signal.aborted || !(err instanceof McpError)) throw err;
        // The upstream answered with a JSON-RPC error: record it, relay it as one.
        await this.#completed(base, 'error', started, {
          approver,
          reason: err.message,
          detail: { approvalId, code: 'upstream_error', rpcCode: err.code },
        });
        if (approvalId) await this.#reportOutcome(approvalId, false, err.message);
        throw new McpError(err.code, stripMcpPrefix(err.message), err.data);
      }
      const result = outcome.result;
      const ok = result.isError !== true;
      await this.#completed(base, ok ? 'ok' : 'error', started, {
        result,
        approver,
        detail: approvalId ? { approvalId } : undefined,
      });
      if (approvalId) await this.#reportOutcome(approvalId, ok, summarise(result));
      return result;
    } catch (err) {
      if (err instanceof McpError) throw err;
      const aborted = signal.aborted ? signal.reason : undefined;
      const haltedErr = isWardenError(aborted, 'HALTED') ? aborted : isWardenError(err, 'HALTED') ? err : undefined;
      const abandoned = isWardenError(aborted, 'CALL_ABANDONED')
        ? aborted
        : isWardenError(err, 'CALL_ABANDONED')
          ? err
          : undefined;
      const cancelledByAgent = !haltedErr && !abandoned && input.signal.aborted;
      const pinBlocked = isWardenError(err, 'TOOL_PIN_MISMATCH') ? err : undefined;
      const internal = isWardenError(err, 'INTERNAL') ? err : undefined;
      const status =
        haltedErr || cancelledByAgent ? 'cancelled' : abandoned ? 'abandoned' : pinBlocked ? 'blocked' : 'error';
      const reason = haltedErr
        ? `${name} was stopped: ${haltedErr.message}`
        : abandoned
          ? `${name} was abandoned: ${abandoned.message}`
          : cancelledByAgent
            ? `${name} was cancelled by the agent`
            : pinBlocked
              ? pinBlocked.message
              : internal
                ? `${name} was not run: ${internal.message}`
                : `${name} failed upstream: ${describeError(err)}`;
      const code = haltedErr
        ? 'halted'
        : abandoned
          ? 'abandoned'
          : cancelledByAgent
            ? 'cancelled'
            : isWardenError(err)
              ? refusalCodeOf(err.code)
              : 'upstream_error';
      await this.#completed(base, status, started, {
        reason,
        approver,
        detail: { code, ...(approvalId ? { approvalId } : {}) },
      });
      if (approvalId) await this.#reportOutcome(approvalId, false, reason);
      return refusal(haltedErr || pinBlocked || internal ? `Refused by Warden: ${reason}` : reason);
    } finally {
      input.signal.removeEventListener('abort', onAgentAbort);
      this.#inFlight.delete(callId);
    }
  }

  /**
   * Steps 1–3: kill switch, policy (with the upstream's catalogue when it is
   * needed), pin. Refusals are audited here; anything thrown is turned into a
   * refusal by the caller.
   */
  async #admit(input: CallInput, base: CallFacts, split: { server: string; tool: string } | null): Promise<Admission> {
    const { agent, name, args } = input;
    const policy = this.#options.policy();
    const agentPolicy = Object.hasOwn(policy.agents, agent) ? policy.agents[agent] : undefined;
    base.owner = agentPolicy?.owner;
    const refused = async (
      decision: 'deny' | 'halted' | 'error' | 'cancelled' | 'abandoned',
      reason: string,
      detail: AuditDetail,
      alert: boolean,
    ): Promise<Admission> => ({
      kind: 'refused',
      result: await this.#refuse(base, decision, reason, detail, alert),
    });

    // 1. Kill switch: before anything else, from memory.
    const halted = this.#haltCheck(agent);
    if (halted) {
      const d = decide(policy, agent, split?.server ?? '', split?.tool ?? name, args, {
        halted: { scope: halted.scope, reason: haltReason(halted) },
      });
      const reason = d.kind === 'deny' ? d.reason : haltReason(halted);
      return refused('halted', reason, { code: 'halted', scope: halted.scope, actor: halted.actor }, false);
    }
    if (name.length > MAX_NAME_CHARS) {
      base.server = undefined;
      base.tool = `${name.slice(0, 64)}…`;
      return refused(
        'deny',
        `a tool name of ${name.length} characters is not a Warden tool name (at most ${MAX_NAME_CHARS}; see tools/list)`,
        { code: 'unknown_tool' },
        true,
      );
    }
    if (!split) {
      return refused(
        'deny',
        `"${name}" is not a Warden tool name; tools are named <server>__<tool>, e.g. tickets__read_ticket (see tools/list)`,
        { code: 'unknown_tool' },
        true,
      );
    }
    const { server, tool } = split;
    // Arguments Warden could not record or show whole are not forwarded.
    const bad = argumentProblem(args, this.#options.argumentLimits ?? DEFAULT_ARGUMENT_LIMITS);
    if (bad)
      return refused(
        'deny',
        `${name} was not run: ${bad.message}`,
        { code: 'invalid_arguments', problem: bad.code },
        true,
      );

    // 2. Policy. Without the upstream's catalogue a denial is already final
    // (annotations can only tighten), so refuse before touching the upstream.
    let catalogue = this.#options.upstreams.cachedCatalogue(server);
    if (!catalogue) {
      const pre = decide(policy, agent, server, tool, args);
      if (pre.kind === 'deny') return refused('deny', pre.reason, { code: pre.code }, true);
      try {
        catalogue = await this.#options.upstreams.catalogue(server, input.signal);
      } catch (err) {
        if (input.signal.aborted) {
          return isWardenError(input.signal.reason, 'CALL_ABANDONED')
            ? refused(
                'abandoned',
                `the agent went away before the call was decided (${input.signal.reason.message})`,
                { code: 'abandoned' },
                false,
              )
            : refused('cancelled', 'the agent cancelled the call before it was decided', { code: 'cancelled' }, false);
        }
        return refused(
          'error',
          `Warden could not reach upstream "${server}": ${describeError(err)}`,
          { code: isWardenError(err) ? refusalCodeOf(err.code) : 'upstream_unavailable' },
          false,
        );
      }
    }
    const annotations = annotationsOf(catalogue.byName.get(tool));
    const decision = decide(policy, agent, server, tool, args, { annotations, upstreamTools: catalogue.names });
    if (decision.kind === 'deny') return refused('deny', decision.reason, { code: decision.code }, true);

    // 3. Pin: a changed definition is refused until re-approved.
    if (!this.#options.pins.approved(server, tool)) {
      const reason = `${name} is blocked: its definition changed since it was approved, so Warden will not call it until an operator reviews the change (\`warden tools approve ${server} ${tool}\`)`;
      return refused('deny', reason, { code: 'pin_blocked' }, true);
    }
    // decide() only holds or allows a call for an agent in the policy.
    return {
      kind: 'admitted',
      agentPolicy: agentPolicy!,
      server,
      tool,
      decision,
      annotations,
      upstreamTools: catalogue.names,
    };
  }

  /** The call's credential, failing closed: a check that cannot answer is not a "still valid". */
  #credentialStands(input: CallInput, callId: string): boolean {
    if (!input.stillAuthorized) return true;
    try {
      return input.stillAuthorized();
    } catch (err) {
      this.#log.error(
        { err: describeError(err), callId, agent: input.agent },
        'the token check before forwarding failed: refusing the call',
      );
      throw new WardenError(
        'INTERNAL',
        "Warden's token check before forwarding failed (internal), so Warden refused the call; try again later or ask an operator to look at the gateway log",
        { cause: err },
      );
    }
  }

  /** The kill switch, failing closed: a check that cannot answer is not a "not halted". */
  #haltCheck(agent: string): HaltState | undefined {
    try {
      return this.#options.halt.check(agent) ?? undefined;
    } catch (err) {
      throw new WardenError('INTERNAL', `the kill switch could not be checked (${describeError(err)})`, { cause: err });
    }
  }

  async #requestApproval(
    callId: string,
    agent: AgentPolicy,
    server: string,
    tool: string,
    args: unknown,
    decision: Extract<Decision, { kind: 'approve' }>,
    signal: AbortSignal,
    progress: ProgressRelay,
    onRequested: NonNullable<ApprovalRequestInput['onRequested']>,
  ): Promise<ApprovalOutcome | { status: 'error'; approvalId?: undefined; approver?: undefined; reason: string }> {
    try {
      return await this.#options.approvals.request({
        callId,
        agent,
        server,
        tool,
        args,
        rule: decision.rule,
        consequence: decision.tool.consequence,
        reason: decision.reason,
        signal,
        onWaiting: (elapsedMs) => progress.waiting(elapsedMs),
        onRequested,
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      this.#log.error({ err: describeError(err), callId }, 'approval request failed');
      return { status: 'error', reason: `not decided: the approval request failed (${describeError(err)})` };
    }
  }

  async #refuse(
    base: CallFacts,
    decision: 'deny' | 'halted' | 'error' | 'cancelled' | 'abandoned',
    reason: string,
    detail: AuditDetail,
    alert: boolean,
  ): Promise<CallToolResult> {
    try {
      await this.#options.audit.append({ ...base, event: 'call.decided', decision, reason, detail });
    } catch (err) {
      // Refusing anyway: the answer is the same, only the record is missing.
      this.#log.error({ err: describeError(err), callId: base.callId }, 'audit write failed for a refused call');
    }
    if (alert) {
      this.#alert({
        kind: 'denied',
        severity: 'warning',
        agent: base.agent,
        text: `${base.agent} was refused ${base.server ? qualifiedToolName(base.server, base.tool ?? '') : base.tool}: ${reason}`,
        detail: { callId: base.callId, server: base.server, tool: base.tool, ...detail },
      });
    }
    return refusal(`Refused by Warden: ${reason}`);
  }

  /**
   * Records call.completed and resolves once it is committed (durable as
   * `auditDurability` says); a failed write is logged, not thrown: the
   * call already happened, and hiding its result would not undo it.
   */
  #completed(
    base: CallFacts,
    decision: AuditDecision,
    started: number,
    extra: {
      result?: unknown;
      reason?: string | undefined;
      approver?: string | undefined;
      detail?: AuditDetail | undefined;
    },
  ): Promise<void> {
    const entry: AuditEntry = {
      ...base,
      event: 'call.completed',
      decision,
      result: extra.result,
      reason: extra.reason,
      approver: extra.approver,
      durationMs: Math.round(this.#clock.monotonic() - started),
      detail: extra.detail,
      ts: this.#clock.now(),
    };
    return this.#options.audit.append(entry, { sync: this.#options.auditDurability === 'strict' }).then(
      () => undefined,
      // The call already happened; hiding its result would not undo it.
      (err) =>
        this.#log.error({ err: describeError(err), callId: entry.callId }, 'audit write failed for call.completed'),
    );
  }

  async #reportOutcome(approvalId: string, ok: boolean, summary: string): Promise<void> {
    try {
      await this.#options.approvals.reportOutcome(approvalId, { ok, summary });
    } catch (err) {
      this.#log.warn({ err: describeError(err), approvalId }, 'could not report the outcome of an approved call');
    }
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

  get send(): ((p: Progress) => void) | undefined {
    return this.#send;
  }

  waiting(elapsedMs: number): void {
    if (!this.send) return;
    this.#ticks++;
    this.send({ progress: this.#ticks, message: `waiting for a human to approve (${Math.round(elapsedMs / 1000)}s)` });
  }

  upstream(p: Progress): void {
    if (!this.send) return;
    this.send({
      progress: this.#ticks + p.progress,
      ...(p.total !== undefined ? { total: this.#ticks + p.total } : {}),
      ...(p.message !== undefined ? { message: p.message } : {}),
    });
  }
}

function haltReason(state: HaltState): string {
  const who = state.scope === 'org' ? 'all agents (org-wide)' : `agent ${state.agent}`;
  return `${who} halted by ${state.actor}${state.reason ? `: ${state.reason}` : ''}`;
}

/** The abort reason for a halt: approvals records a HALTED abort as 'cancelled'. */
function haltError(state: HaltState): WardenError {
  return new WardenError('HALTED', haltReason(state));
}

function annotationsOf(tool: Tool | undefined): ToolAnnotations | undefined {
  return tool?.annotations as ToolAnnotations | undefined;
}

function stripMcpPrefix(message: string): string {
  return message.replace(/^MCP error -?\d+: /, '');
}

function summarise(result: CallToolResult): string {
  const text = result.content?.find((c) => c.type === 'text');
  const s = text && 'text' in text ? String(text.text) : `${result.content?.length ?? 0} content item(s)`;
  return (result.isError ? 'error: ' : 'ok: ') + (s.length > 300 ? `${s.slice(0, 300)}…` : s);
}
