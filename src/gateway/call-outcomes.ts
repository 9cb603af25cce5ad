import { McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ApprovalStatus } from '../approvals/types.ts';
import type { AuditDecision, RefusalCode } from '../audit/types.ts';
import type { DenyCode } from '../policy/types.ts';
import type { ArgumentProblemCode } from './arguments.ts';
import { AWAIT_TOOL_NAME } from './deferred.ts';

/**
 * Every way one tools/call can end. A call's steps only say which outcome
 * they reached; ENDINGS below is the one place that says what each means for
 * the audit trail (which row, its decision and code), for the humans who
 * approved it (the card's thread) and for the agent (its answer).
 */
export type CallOutcome =
  // Refused before it was decided: the refusal is the call's call.decided row.
  | { kind: 'shutting_down'; message: string }
  | { kind: 'check_failed'; code: RefusalCode }
  | { kind: 'halted'; reason: string; scope: 'org' | 'agent'; actor: string }
  | { kind: 'not_a_tool'; reason: string }
  | { kind: 'bad_arguments'; message: string; problem: ArgumentProblemCode }
  | { kind: 'denied'; code: DenyCode; reason: string; detail?: Record<string, unknown> | undefined }
  | { kind: 'pin_blocked'; server: string; tool: string }
  | { kind: 'abandoned_undecided'; message: string }
  | { kind: 'cancelled_undecided' }
  | { kind: 'upstream_unreachable'; server: string; code: RefusalCode; message: string }
  // Its call.decided row could not be written: nothing records it, so nothing runs.
  | { kind: 'unrecorded' }
  // Deferred, then let go (this Warden shuts down) or run by another process: the ending is recorded there.
  | { kind: 'carried_on' }
  // Decided and recorded: the ending is its call.completed row.
  | { kind: 'not_approved'; status: Exclude<ApprovalStatus, 'approved' | 'pending'> | 'error'; reason: string }
  | { kind: 'approval_mismatch' }
  | { kind: 'policy_changed'; code: DenyCode; reason: string }
  /** Only a call that waited for a human is re-checked (ToolCall's recheck). */
  | { kind: 'token_revoked' }
  | { kind: 'stopped'; message: string }
  | { kind: 'abandoned'; message: string }
  | { kind: 'cancelled' }
  | { kind: 'pin_changed'; message: string }
  | { kind: 'internal'; message: string }
  | { kind: 'upstream_failed'; code: RefusalCode; message: string }
  | { kind: 'undurable'; message: string }
  | { kind: 'upstream_error'; error: McpError }
  | { kind: 'answered'; result: CallToolResult }
  // Collecting a held call (warden__await_approval, or the same call again) that was refused: a call.decided row.
  | { kind: 'collect_without_id' }
  | { kind: 'collect_not_found'; approvalId: string; agent: string }
  | { kind: 'collect_halted'; approvalId: string; reason: string }
  | { kind: 'collected_already'; approvalId: string; heldName: string };

export type CallOutcomeKind = CallOutcome['kind'];

/** What one outcome means: what end() records, reports and answers. */
export interface Ending {
  /** The row that records it: the refusal's call.decided, the call's call.completed, or none (none could be written). */
  row: 'decided' | 'completed' | 'none';
  decision: AuditDecision;
  code?: RefusalCode | undefined;
  reason?: string | undefined;
  /** Facts beside the code (and the approval id, which end() adds). */
  detail?: Record<string, unknown> | undefined;
  result?: CallToolResult | undefined;
  /** A refusal the owner should hear of: alerted with the row. */
  alert?: boolean | undefined;
  /** What the approval's card is told, for a call a human approved; absent: nothing to tell. */
  report?: { ok: boolean; summary: string } | undefined;
  /** The agent's answer; an McpError is relayed as a JSON-RPC error. */
  answer: CallToolResult | McpError;
}

type EndingOf<Kind extends CallOutcomeKind> = (outcome: Extract<CallOutcome, { kind: Kind }>, name: string) => Ending;

/** The one table: each outcome → status, code, text. `name` is the namespaced tool name the agent called. */
const ENDINGS: { readonly [Kind in CallOutcomeKind]: EndingOf<Kind> } = {
  shutting_down: (o, name) =>
    refusedBefore('abandoned', 'abandoned', `${name} was not run: ${o.message}; try again once it is back`),
  check_failed: (o) =>
    refusedBefore(
      'error',
      o.code,
      `Warden could not decide this call because one of its checks failed (${o.code}), so it was not run; try again later or ask an operator to look at the gateway log`,
    ),
  halted: (o) => refusedBefore('halted', 'halted', o.reason, { detail: { scope: o.scope, actor: o.actor } }),
  not_a_tool: (o) => refusedBefore('deny', 'unknown_tool', o.reason, { alert: true }),
  bad_arguments: (o, name) =>
    refusedBefore('deny', 'invalid_arguments', `${name} was not run: ${o.message}`, {
      detail: { problem: o.problem },
      alert: true,
    }),
  denied: (o) => refusedBefore('deny', o.code, o.reason, { alert: true, ...(o.detail ? { detail: o.detail } : {}) }),
  pin_blocked: (o, name) =>
    refusedBefore(
      'deny',
      'pin_blocked',
      `${name} is blocked: its definition changed since it was approved, so Warden will not call it until an operator reviews the change (\`warden tools approve ${o.server} ${o.tool}\`)`,
      { alert: true },
    ),
  abandoned_undecided: (o) =>
    refusedBefore('abandoned', 'abandoned', `the agent went away before the call was decided (${o.message})`),
  cancelled_undecided: () =>
    refusedBefore('cancelled', 'cancelled', 'the agent cancelled the call before it was decided'),
  upstream_unreachable: (o) =>
    refusedBefore('error', o.code, `Warden could not reach upstream "${o.server}": ${o.message}`),
  unrecorded: () => {
    const reason =
      'the call could not be recorded in the audit trail (audit_write_failed), and Warden never runs a call it cannot record. Try again later.';
    return { row: 'none', decision: 'error', code: 'audit_write_failed', reason, answer: refusedText(reason) };
  },

  // Nobody hears this answer: the agent was told "not run yet" already and collects the ending from the trail's owner.
  carried_on: (_o, name) => ({
    row: 'none',
    decision: 'pending',
    answer: refusal(`${name} is carried on by another Warden`),
  }),

  // A refused approval is the card's own ending: nothing more to tell it.
  not_approved: (o, name) => ({
    row: 'completed',
    decision: o.status,
    reason: `${name} was not run: it needs a human's approval and the request was ${o.reason}`,
    answer: refusedText(`${name} was not run: it needs a human's approval and the request was ${o.reason}`),
  }),
  approval_mismatch: (_o, name) =>
    stoppedAfter(
      'blocked',
      'approval_mismatch',
      `${name} was not run: the approval does not match these exact arguments`,
    ),
  policy_changed: (o, name) =>
    stoppedAfter(
      'deny',
      o.code,
      `${name} was approved but not run: the policy changed while it waited and now refuses it (${o.reason})`,
    ),
  token_revoked: (_o, name) =>
    stoppedAfter(
      'deny',
      'token_revoked',
      `${name} was not run: the agent token it was made with has been revoked while it waited for approval`,
    ),
  stopped: (o, name) => stoppedAfter('cancelled', 'halted', `${name} was stopped: ${o.message}`),
  // Ended by the agent itself: said plainly, not as Warden's refusal.
  abandoned: (o, name) => stoppedAfter('abandoned', 'abandoned', `${name} was abandoned: ${o.message}`, 'plain'),
  cancelled: (_o, name) => stoppedAfter('cancelled', 'cancelled', `${name} was cancelled by the agent`, 'plain'),
  pin_changed: (o) => stoppedAfter('blocked', 'pin_blocked', o.message),
  internal: (o, name) => stoppedAfter('error', 'internal', `${name} was not run: ${o.message}`),
  upstream_failed: (o, name) => stoppedAfter('error', o.code, `${name} failed upstream: ${o.message}`, 'plain'),
  // Only a plain read answers before its record is durable, and a read is never held: no card to tell.
  undurable: (o, name) => {
    const reason = `${name} ran, but Warden could not make its audit record durable (${o.message}), so the answer was withheld`;
    return {
      row: 'completed',
      decision: 'error',
      code: 'audit_write_failed',
      reason,
      answer: refusedText(`${reason}. Try again later.`),
    };
  },
  upstream_error: (o) => ({
    row: 'completed',
    decision: 'error',
    code: 'upstream_error',
    reason: o.error.message,
    detail: { rpcCode: o.error.code },
    report: { ok: false, summary: o.error.message },
    // The upstream answered with a JSON-RPC error: relayed as one.
    answer: new McpError(o.error.code, stripMcpPrefix(o.error.message), o.error.data),
  }),
  answered: (o) => {
    const ok = o.result.isError !== true;
    return {
      row: 'completed',
      decision: ok ? 'ok' : 'error',
      result: o.result,
      report: { ok, summary: summarise(o.result) },
      answer: o.result,
    };
  },

  collect_without_id: () =>
    refusedBefore(
      'deny',
      'invalid_arguments',
      `${AWAIT_TOOL_NAME} needs {"id": "<approval id>"}, the id from the "not run yet" answer`,
    ),
  collect_not_found: (o) =>
    refusedBefore(
      'deny',
      'not_found',
      `there is no held call ${o.approvalId} for ${o.agent} to collect (it was collected already, its approval expired, or it is not this agent's)`,
      { detail: { approvalId: o.approvalId } },
    ),
  collect_halted: (o) => refusedBefore('halted', 'halted', o.reason, { detail: { approvalId: o.approvalId } }),
  collected_already: (o) =>
    refusedBefore('deny', 'not_found', `the result of ${o.heldName} (approval ${o.approvalId}) was already collected`, {
      detail: { approvalId: o.approvalId },
    }),
};

export function endingOf(outcome: CallOutcome, name: string): Ending {
  // The table is keyed by kind, so each entry gets its own variant; TypeScript cannot see that through the lookup.
  return (ENDINGS[outcome.kind] as (outcome: CallOutcome, name: string) => Ending)(outcome, name);
}

/** A policy outcome as a tool result the model can read (MCP: isError, not a protocol error). */
export function refusal(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

function refusedText(reason: string): CallToolResult {
  return refusal(`Refused by Warden: ${reason}`);
}

function refusedBefore(
  decision: AuditDecision,
  code: RefusalCode,
  reason: string,
  extra: { detail?: Record<string, unknown>; alert?: boolean } = {},
): Ending {
  return { row: 'decided', decision, code, reason, ...extra, answer: refusedText(reason) };
}

function stoppedAfter(
  decision: AuditDecision,
  code: RefusalCode,
  reason: string,
  answer: 'refused' | 'plain' = 'refused',
): Ending {
  return {
    row: 'completed',
    decision,
    code,
    reason,
    report: { ok: false, summary: reason },
    answer: answer === 'refused' ? refusedText(reason) : refusal(reason),
  };
}

export function stripMcpPrefix(message: string): string {
  return message.replace(/^MCP error -?\d+: /, '');
}

export function summarise(result: CallToolResult): string {
  const text = result.content?.find((c) => c.type === 'text');
  const s = text && 'text' in text ? String(text.text) : `${result.content?.length ?? 0} content item(s)`;
  return (result.isError ? 'error: ' : 'ok: ') + (s.length > 300 ? `${s.slice(0, 300)}…` : s);
}
