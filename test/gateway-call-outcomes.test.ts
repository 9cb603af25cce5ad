import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { AUDIT_DECISIONS, REFUSAL_CODES } from '../src/audit/types.ts';
import { endingOf, type CallOutcome, type CallOutcomeKind } from '../src/gateway/call-outcomes.ts';

const NAME = 'tickets__send_customer_email';

/** One outcome of every kind; a mapped type, so a new kind does not compile until it has a sample here. */
const SAMPLES: { [Kind in CallOutcomeKind]: Extract<CallOutcome, { kind: Kind }> } = {
  shutting_down: { kind: 'shutting_down', message: 'Warden is shutting down' },
  check_failed: { kind: 'check_failed', code: 'internal' },
  halted: { kind: 'halted', reason: 'all agents (org-wide) halted by U1', scope: 'org', actor: 'U1' },
  not_a_tool: { kind: 'not_a_tool', reason: '"x" is not a Warden tool name' },
  bad_arguments: { kind: 'bad_arguments', message: 'arguments must be a JSON object', problem: 'not_an_object' },
  denied: { kind: 'denied', code: 'out_of_scope', reason: 'support-triage has read scope on tickets' },
  pin_blocked: { kind: 'pin_blocked', server: 'tickets', tool: 'send_customer_email' },
  abandoned_undecided: { kind: 'abandoned_undecided', message: 'the agent session ended' },
  cancelled_undecided: { kind: 'cancelled_undecided' },
  upstream_unreachable: { kind: 'upstream_unreachable', server: 'tickets', code: 'upstream_unavailable', message: 'x' },
  unrecorded: { kind: 'unrecorded' },
  carried_on: { kind: 'carried_on' },
  not_approved: { kind: 'not_approved', status: 'rejected', reason: 'rejected by U2' },
  approval_mismatch: { kind: 'approval_mismatch' },
  policy_changed: { kind: 'policy_changed', code: 'out_of_scope', reason: 'no write scope' },
  token_revoked: { kind: 'token_revoked' },
  stopped: { kind: 'stopped', message: 'agent support-triage halted by U1' },
  abandoned: { kind: 'abandoned', message: "the agent's connection closed" },
  cancelled: { kind: 'cancelled' },
  pin_changed: { kind: 'pin_changed', message: `${NAME} is blocked: its definition changed` },
  internal: { kind: 'internal', message: "Warden's token check before forwarding failed (internal)" },
  upstream_failed: { kind: 'upstream_failed', code: 'upstream_timeout', message: 'UPSTREAM_TIMEOUT: took too long' },
  undurable: { kind: 'undurable', message: 'fsync failed' },
  upstream_error: { kind: 'upstream_error', error: new McpError(-32602, 'bad params', { at: 'to' }) },
  answered: { kind: 'answered', result: { content: [{ type: 'text', text: 'sent' }] } },
  collect_without_id: { kind: 'collect_without_id' },
  collect_not_found: { kind: 'collect_not_found', approvalId: 'apr_1', agent: 'support-triage' },
  collect_halted: { kind: 'collect_halted', approvalId: 'apr_1', reason: 'agent support-triage halted by U1' },
  collected_already: { kind: 'collected_already', approvalId: 'apr_1', heldName: NAME },
};

const outcomes = Object.values(SAMPLES) as CallOutcome[];

function textOf(answer: unknown): string {
  const content = (answer as { content: Array<{ text: string }> }).content;
  return content[0]!.text;
}

describe('call outcomes: one table for row, decision, code, report and answer', () => {
  it.each(outcomes.map((o) => [o.kind, o] as const))('%s maps to a decision and code of the vocabulary', (_, o) => {
    const ending = endingOf(o, NAME);
    expect(AUDIT_DECISIONS).toContain(ending.decision);
    if (ending.code !== undefined) expect(REFUSAL_CODES).toContain(ending.code);
    // Every ending but a result the upstream gave carries a code, except a refused approval (its status says why).
    if (!['answered', 'not_approved', 'carried_on'].includes(o.kind)) expect(ending.code).toBeDefined();
  });

  it('a refusal before the decision is its call.decided row, answered as Warden refusing, never reported to a card', () => {
    const decided = outcomes.map((o) => endingOf(o, NAME)).filter((e) => e.row === 'decided');
    expect(decided.length).toBe(14);
    for (const ending of decided) {
      expect(ending.report).toBeUndefined();
      expect(textOf(ending.answer)).toBe(`Refused by Warden: ${ending.reason}`);
    }
  });

  it('only a call that could not be recorded, or that another Warden carries on, has no row here', () => {
    const none = outcomes.filter((o) => endingOf(o, NAME).row === 'none').map((o) => o.kind);
    expect(none).toEqual(['unrecorded', 'carried_on']);
    expect(textOf(endingOf(SAMPLES.unrecorded, NAME).answer)).toMatch(/audit_write_failed.*never runs a call/);
  });

  it('an approved call that did not run or failed tells its card why, with the reason it records', () => {
    for (const kind of ['approval_mismatch', 'policy_changed', 'token_revoked', 'stopped', 'internal'] as const) {
      const ending = endingOf(SAMPLES[kind], NAME);
      expect(ending.row).toBe('completed');
      expect(ending.report).toEqual({ ok: false, summary: ending.reason });
      expect(textOf(ending.answer)).toBe(`Refused by Warden: ${ending.reason}`);
    }
    // The card already shows a refused approval; nothing more to tell it.
    expect(endingOf(SAMPLES.not_approved, NAME).report).toBeUndefined();
  });

  it("endings the agent or the upstream caused are said plainly, not as Warden's refusal", () => {
    for (const kind of ['abandoned', 'cancelled', 'upstream_failed'] as const) {
      const ending = endingOf(SAMPLES[kind], NAME);
      expect(textOf(ending.answer)).toBe(ending.reason);
      expect(textOf(ending.answer)).not.toMatch(/^Refused by Warden/);
    }
  });

  it("an upstream's JSON-RPC error is recorded with its rpc code and relayed as one", () => {
    const ending = endingOf(SAMPLES.upstream_error, NAME);
    expect(ending).toMatchObject({ row: 'completed', decision: 'error', code: 'upstream_error' });
    expect(ending.detail).toEqual({ rpcCode: -32602 });
    expect(ending.answer).toBeInstanceOf(McpError);
    const relayed = ending.answer as McpError;
    expect(relayed.code).toBe(-32602);
    expect(relayed.data).toEqual({ at: 'to' });
    // Relayed once: the SDK adds its own "MCP error -32602:" prefix again.
    expect(relayed.message).toBe('MCP error -32602: bad params');
  });

  it('a result is recorded and handed over as the upstream gave it, ok or not', () => {
    const ok = endingOf(SAMPLES.answered, NAME);
    expect(ok).toMatchObject({ row: 'completed', decision: 'ok', report: { ok: true, summary: 'ok: sent' } });
    expect(ok.answer).toBe(SAMPLES.answered.result);
    const failed = endingOf({ kind: 'answered', result: { content: [], isError: true } }, NAME);
    expect(failed).toMatchObject({ decision: 'error', report: { ok: false } });
  });
});
