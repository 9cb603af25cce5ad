import type { ErrorCode } from '../errors.ts';

/**
 * Every event Warden writes to the trail. The list is the vocabulary: the
 * compiler checks each write against it, the query language accepts only
 * these (or a prefix of them), and a test checks that the README documents
 * each one.
 */
export const AUDIT_EVENTS = [
  'call.decided',
  'call.completed',
  'auth.failed',
  'request.refused',
  'token.created',
  'token.rotated',
  'token.revoked',
  'approval.requested',
  'approval.decided',
  'approval.refused',
  'approval.cli',
  'approval.deferred',
  'approval.collected',
  'control.halt',
  'control.resume',
  'control.refused',
  'audit.queried',
  'audit.refused',
  'drill.completed',
  'pin.changed',
  'pin.approved',
  'anomaly',
  'policy.changed',
  'grant.created',
  'grant.used',
  'grant.ended',
  'run.started',
  'run.stopped',
  'sandbox.egress_denied',
] as const;

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

/**
 * Every value of the `decision` column. What a value means depends on the
 * event: a policy decision (allow, deny, approve), how a call or approval
 * ended, a control action's result, the anomaly rule that fired, or the kind
 * of read of the trail.
 */
export const AUDIT_DECISIONS = [
  // call.decided: the policy's decision, or why the call was refused before it
  'allow',
  'deny',
  'approve',
  'halted',
  // call.completed, approval.decided, drill.completed: how it ended
  'ok',
  'error',
  'blocked',
  'pending',
  'approved',
  'rejected',
  'expired',
  'cancelled',
  'abandoned',
  'failed',
  // approval.refused, approval.cli, control.refused, audit.refused
  'reject',
  'refused',
  'forbidden',
  // control.resume
  'resumed',
  'not_halted',
  // token.*
  'created',
  'rotated',
  'revoked',
  // anomaly: the rule that fired
  'rate',
  'rate_baseline',
  'denials',
  'rejections',
  'long_run',
  // run.started, run.stopped: how a `warden run` ended (halted: by the kill switch)
  'started',
  'exited',
  'interrupted',
  // audit.queried: what was read
  'query',
  'export',
  'next_page',
  'agent_status',
] as const;

export type AuditDecision = (typeof AUDIT_DECISIONS)[number];

/**
 * Every value of `detail.code`: why a call, a request or a collection was
 * refused or how it stopped, one snake_case spelling each. Failures that
 * carry an ErrorCode reach the trail through refusalCodeOf, never as the
 * ErrorCode itself. A test checks that the README documents each one.
 */
export const REFUSAL_CODES = [
  // policy: decide()
  'halted',
  'unknown_agent',
  'unknown_server',
  'unknown_tool',
  'out_of_scope',
  'rule',
  // the gateway's own checks before and after a hold
  'invalid_arguments',
  'pin_blocked',
  'approval_mismatch',
  'token_revoked',
  // warden__await_approval (or a repeat) found nothing to collect
  'not_found',
  // how a call that was admitted stopped short
  'cancelled',
  'abandoned',
  'audit_write_failed',
  'internal',
  // the upstream
  'upstream_unavailable',
  'upstream_timeout',
  'upstream_protocol',
  'upstream_payload_too_large',
  'upstream_error',
  // the HTTP edge: auth.failed and request.refused (gateway/refusals.ts)
  'token_missing',
  'token_malformed',
  'token_unknown',
  'agent_mismatch',
  'session_mismatch',
  'headers_too_large',
  'prototype_key',
  'too_many_connections',
  'too_many_connections_from_address',
  'headers_timeout',
  'body_timeout',
] as const;

export type RefusalCode = (typeof REFUSAL_CODES)[number];

/**
 * The trail's spelling of a failure that carries an ErrorCode. A Record, so a
 * new ErrorCode does not compile until someone decides how the trail names it;
 * codes no call can end with fall back to 'internal'.
 */
const REFUSAL_CODE_OF_ERROR: Readonly<Record<ErrorCode, RefusalCode>> = {
  CONFIG_INVALID: 'internal',
  POLICY_INVALID: 'internal',
  POLICY_NOT_FOUND: 'internal',
  STORE_MIGRATION: 'internal',
  STORE_UNAVAILABLE: 'internal',
  AUDIT_CHAIN_BROKEN: 'audit_write_failed',
  AUDIT_WRITE_FAILED: 'audit_write_failed',
  QUERY_INVALID: 'internal',
  UNAUTHENTICATED: 'token_unknown',
  FORBIDDEN: 'internal',
  NOT_FOUND: 'not_found',
  UPSTREAM_UNAVAILABLE: 'upstream_unavailable',
  UPSTREAM_TIMEOUT: 'upstream_timeout',
  UPSTREAM_PAYLOAD_TOO_LARGE: 'upstream_payload_too_large',
  UPSTREAM_PROTOCOL: 'upstream_protocol',
  TOOL_PIN_MISMATCH: 'pin_blocked',
  APPROVAL_CONFLICT: 'internal',
  APPROVAL_NOT_FOUND: 'not_found',
  SLACK_UNAVAILABLE: 'internal',
  SLACK_REPLAYED_REQUEST: 'internal',
  BODY_TOO_LARGE: 'invalid_arguments',
  HALTED: 'halted',
  INVALID_INPUT: 'invalid_arguments',
  CONTROL_WRITE_FAILED: 'internal',
  DRILL_IN_PROGRESS: 'internal',
  CALL_ABANDONED: 'abandoned',
  CALL_CANCELLED: 'cancelled',
  // A stdio upstream whose sandbox cannot be built does not start: to a call, that upstream is unavailable.
  SANDBOX_UNAVAILABLE: 'upstream_unavailable',
  INTERNAL: 'internal',
};

export function refusalCodeOf(code: ErrorCode): RefusalCode {
  return REFUSAL_CODE_OF_ERROR[code];
}

/** An entry's `detail`: free facts, except that a `code` is one of the vocabulary. */
export type AuditDetail = Record<string, unknown> & { code?: RefusalCode | undefined };

/** What callers hand to the audit log. Redaction happens inside `append`. */
export interface AuditEntry {
  event: AuditEvent;
  callId?: string | undefined;
  agent?: string | undefined;
  owner?: string | undefined;
  server?: string | undefined;
  tool?: string | undefined;
  args?: unknown;
  result?: unknown;
  decision?: AuditDecision | undefined;
  reason?: string | undefined;
  approver?: string | undefined;
  durationMs?: number | undefined;
  detail?: AuditDetail | undefined;
  /** Defaults to the log's clock. */
  ts?: number | undefined;
}

/** A stored row as read back (JSON columns still as text). */
export interface AuditRow {
  seq: number;
  ts: number;
  event: string;
  call_id: string | null;
  agent: string | null;
  owner: string | null;
  server: string | null;
  tool: string | null;
  args: string | null;
  result: string | null;
  decision: string | null;
  reason: string | null;
  approver: string | null;
  duration_ms: number | null;
  detail: string | null;
  prev_hash: string;
  hash: string;
}

export interface AppendOptions {
  /**
   * true (default): resolve once the row is on stable storage (its COMMIT
   * was fsynced), so it survives a crash of Warden, of the OS or of power.
   * false: resolve once the row is committed (written to the WAL: a crash
   * of Warden loses nothing); it reaches stable storage with the next synced
   * commit, from any connection, or the log's own fsync `syncWithinMs` later
   * (if that fsync fails, the log says so and `sync()` rejects from then on).
   */
  sync?: boolean | undefined;
}

export interface SyncOptions {
  /**
   * The caller is about to wait for I/O of its own and nothing else is
   * running (a lone call about to be forwarded): the fsync may then run on
   * the event loop, once the I/O queued this tick has been handed to the
   * kernel, rather than on the thread pool. Waking a pool thread costs a
   * quiet machine more than the fsync saves by running beside the loop.
   */
  quiet?: boolean | undefined;
}

/** What the gateway, approvals and control need from the audit trail. */
export interface AuditSink {
  /** Resolves once the row is committed (group commit), with its chain position; see AppendOptions for how durably. */
  append(entry: AuditEntry, options?: AppendOptions): Promise<{ seq: number; hash: string }>;
  /** Resolves once every row committed so far is on stable storage. A sink without it is treated as syncing every row. */
  sync?(options?: SyncOptions): Promise<void>;
}
