import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { argsHash } from '../approvals/canonical.ts';
import type { HeldCall } from '../approvals/types.ts';
import type { CallRecords } from '../audit/call-records.ts';
import { refusalCodeOf, type AuditDecision, type AuditDetail, type AuditEntry } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { HaltState } from '../control/types.ts';
import { describeError, isWardenError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { decide } from '../policy/decide.ts';
import { annotationsOf, haltError } from './call.ts';
import { refusal, stripMcpPrefix, summarise } from './call-outcomes.ts';
import type { PipelineOptions } from './pipeline.ts';
import type { Catalogue } from './upstream.ts';

/**
 * A held call taken over from a stopped Warden (its agent was told "not run
 * yet, check back", then the process went away). No agent request is attached:
 * the agent collects the ending later, with warden__await_approval or the same
 * call again. Its call.decided row was written by the first process; this
 * writes the call.completed, so the trail tells one story across the restart.
 */

/** What a held call needs from the pipeline that runs it. */
export interface HeldRunContext {
  readonly options: Pick<PipelineOptions, 'policy' | 'upstreams' | 'approvals'>;
  /** The call's call.completed row, as durable as the pipeline's options say. */
  readonly records: CallRecords;
  readonly clock: Clock;
  readonly log: Logger;
  /** The kill switch, failing closed (throws when it cannot answer). */
  haltCheck(agent: string): HaltState | undefined;
  /** While the call waits or runs, halts and close() reach it through its controller. */
  enter(callId: string, agent: string, controller: AbortController): void;
  leave(callId: string): void;
  /**
   * The decision, unless this Warden lets go of the call first (it is shutting
   * down: the approval stays pending for the next one) or another process took
   * the approved call to run it: undefined then.
   */
  untilDecided<T extends { status: string }>(
    callId: string,
    approvalId: string,
    decision: Promise<T>,
  ): Promise<T | undefined>;
  /** The definition about to be called must still be the pinned one (throws TOOL_PIN_MISMATCH). */
  verifyLive(server: string, tool: string, name: string, live: Catalogue | undefined): void;
  /** Whether the agent token with this id still stands (read from the database: a CLI revocation counts). */
  tokenLive(tokenId: string): boolean;
}

/**
 * Waits for the decision, then checks again what a call checks after its
 * approval (the exact arguments the human saw, the policy in force, the kill
 * switch, the pin) and forwards it, once. Resolves with what the agent is to
 * collect; throws McpError when the upstream answered with one.
 */
export async function runHeldCall(context: HeldRunContext, call: HeldCall): Promise<CallToolResult> {
  return new HeldRun(context, call).run();
}

class HeldRun {
  readonly #context: HeldRunContext;
  readonly #call: HeldCall;
  readonly #facts: Omit<AuditEntry, 'event'>;
  readonly #started: number;
  readonly #controller = new AbortController();
  #approver: string | undefined;

  constructor(context: HeldRunContext, call: HeldCall) {
    this.#context = context;
    this.#call = call;
    this.#started = context.clock.monotonic();
    this.#facts = {
      callId: call.callId,
      agent: call.agent,
      owner: context.options.policy().agents[call.agent]?.owner,
      server: call.server,
      tool: call.tool,
      args: call.args,
    };
  }

  async run(): Promise<CallToolResult> {
    const { callId, agent, approvalId } = this.#call;
    const { options } = this.#context;
    const signal = this.#controller.signal;
    this.#context.enter(callId, agent, this.#controller);
    try {
      const outcome = await this.#context.untilDecided(
        callId,
        approvalId,
        options.approvals.awaitDecision(approvalId, signal),
      );
      if (outcome === undefined) return refusal(`${this.#call.name} is carried on by another Warden`);
      if (outcome.status !== 'approved') {
        this.#approver = outcome.approver;
        return await this.#notRun(
          outcome.status,
          `${this.#call.name} was not run: it needs a human's approval and the request was ${outcome.reason}`,
          {},
          false,
        );
      }
      this.#approver = outcome.approver;
      return await this.#forward(outcome.argsHash);
    } catch (err) {
      return await this.#failed(err);
    } finally {
      this.#context.leave(callId);
    }
  }

  async #forward(approvedHash: string | undefined): Promise<CallToolResult> {
    const { options, log } = this.#context;
    const { callId, agent, approvalId, name, server, tool } = this.#call;
    // An approval covers the exact arguments a human saw, nothing else.
    if (this.#call.args === undefined || approvedHash === undefined || approvedHash !== argsHash(this.#call.args)) {
      log.error({ callId, approvalId, agent }, 'approved arguments do not match the stored call: refusing it');
      return this.#notRun('blocked', `${name} was not run: the approval does not match these exact arguments`, {
        code: 'approval_mismatch',
      });
    }
    const args = this.#call.args as Record<string, unknown>;
    // This process may not have started the upstream yet; fetching the catalogue also pins its definitions.
    const catalogue = await options.upstreams.catalogue(server, this.#controller.signal);
    // The wait can be long: an approval does not outrank the policy in force.
    const now = decide(options.policy(), agent, server, tool, args, {
      now: this.#context.clock.now(),
      annotations: annotationsOf(catalogue.byName.get(tool)),
      upstreamTools: catalogue.names,
    });
    if (now.kind === 'deny') {
      return this.#notRun(
        'deny',
        `${name} was approved but not run: the policy changed while it waited and now refuses it (${now.reason})`,
        { code: now.code },
      );
    }
    const halted = this.#context.haltCheck(agent);
    if (halted) throw haltError(halted);
    // A revocation ends the agent's authority over calls already made, as it does without a restart.
    const { tokenId } = this.#call;
    if (tokenId !== undefined && !this.#context.tokenLive(tokenId)) {
      log.warn(
        { callId, agent, tool: name, approvalId },
        'token revoked before the held call was forwarded: refusing it',
      );
      return this.#notRun(
        'deny',
        `${name} was not run: the agent token it was made with has been revoked while it waited for approval`,
        { code: 'token_revoked' },
      );
    }
    const result = await options.upstreams.callTool(server, tool, args, {
      controller: this.#controller,
      verify: (live) => this.#context.verifyLive(server, tool, name, live),
    });
    const ok = result.isError !== true;
    await this.#completed(ok ? 'ok' : 'error', { result });
    await this.#report(ok, summarise(result));
    return result;
  }

  /** Why the call stopped: a halt or Warden's shutdown first, whatever the step then threw. */
  async #failed(err: unknown): Promise<CallToolResult> {
    const { name } = this.#call;
    const signal = this.#controller.signal;
    const aborted = signal.aborted ? signal.reason : undefined;
    if (err instanceof McpError && !aborted) {
      // The upstream answered with a JSON-RPC error: recorded, and relayed as one when collected.
      await this.#completed('error', { reason: err.message, detail: { code: 'upstream_error', rpcCode: err.code } });
      await this.#report(false, err.message);
      throw new McpError(err.code, stripMcpPrefix(err.message), err.data);
    }
    const halted = isWardenError(aborted, 'HALTED') ? aborted : isWardenError(err, 'HALTED') ? err : undefined;
    const abandoned = isWardenError(aborted, 'CALL_ABANDONED') ? aborted : undefined;
    const pinChanged = isWardenError(err, 'TOOL_PIN_MISMATCH') ? err : undefined;
    const reason = halted
      ? `${name} was stopped: ${halted.message}`
      : abandoned
        ? `${name} was abandoned: ${abandoned.message}`
        : pinChanged
          ? pinChanged.message
          : `${name} failed: ${describeError(err)}`;
    const decision = halted ? 'cancelled' : abandoned ? 'abandoned' : pinChanged ? 'blocked' : 'error';
    const code = halted
      ? 'halted'
      : abandoned
        ? 'abandoned'
        : isWardenError(err)
          ? refusalCodeOf(err.code)
          : 'upstream_error';
    return this.#notRun(decision, reason, { code });
  }

  async #notRun(
    decision: AuditDecision,
    reason: string,
    detail: AuditDetail,
    report = this.#approver !== undefined,
  ): Promise<CallToolResult> {
    await this.#completed(decision, { reason, detail });
    if (report) await this.#report(false, reason);
    return refusal(`Refused by Warden: ${reason}`);
  }

  /** call.completed; a failed write is logged, not thrown (as for any call). */
  #completed(
    decision: AuditDecision,
    extra: { result?: unknown; reason?: string; detail?: AuditDetail },
  ): Promise<void> {
    const { records, clock, log } = this.#context;
    const entry: AuditEntry = {
      ...this.#facts,
      event: 'call.completed',
      decision,
      result: extra.result,
      reason: extra.reason,
      approver: this.#approver,
      durationMs: Math.round(clock.monotonic() - this.#started),
      detail: { approvalId: this.#call.approvalId, adopted: true, ...extra.detail },
      ts: clock.now(),
    };
    return records
      .completed(entry)
      .catch((err) =>
        log.error({ err: describeError(err), callId: entry.callId }, 'audit write failed for call.completed'),
      );
  }

  async #report(ok: boolean, summary: string): Promise<void> {
    try {
      await this.#context.options.approvals.reportOutcome(this.#call.approvalId, { ok, summary });
    } catch (err) {
      this.#context.log.warn(
        { err: describeError(err), approvalId: this.#call.approvalId },
        'could not report the outcome of an approved call',
      );
    }
  }
}
