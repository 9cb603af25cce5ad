/**
 * Every failure Warden names has a code. Edges map codes to their own
 * vocabulary (HTTP status, MCP error, Slack ephemeral, CLI exit code), so the
 * services never need to know who is asking.
 */
export const ErrorCodes = {
  CONFIG_INVALID: 'CONFIG_INVALID',
  POLICY_INVALID: 'POLICY_INVALID',
  POLICY_NOT_FOUND: 'POLICY_NOT_FOUND',
  STORE_MIGRATION: 'STORE_MIGRATION',
  /** The shared database (PostgreSQL) did not answer, or its connection is gone: the operation is refused. */
  STORE_UNAVAILABLE: 'STORE_UNAVAILABLE',
  AUDIT_CHAIN_BROKEN: 'AUDIT_CHAIN_BROKEN',
  AUDIT_WRITE_FAILED: 'AUDIT_WRITE_FAILED',
  QUERY_INVALID: 'QUERY_INVALID',
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  UPSTREAM_UNAVAILABLE: 'UPSTREAM_UNAVAILABLE',
  UPSTREAM_TIMEOUT: 'UPSTREAM_TIMEOUT',
  UPSTREAM_PAYLOAD_TOO_LARGE: 'UPSTREAM_PAYLOAD_TOO_LARGE',
  UPSTREAM_PROTOCOL: 'UPSTREAM_PROTOCOL',
  TOOL_PIN_MISMATCH: 'TOOL_PIN_MISMATCH',
  APPROVAL_CONFLICT: 'APPROVAL_CONFLICT',
  APPROVAL_NOT_FOUND: 'APPROVAL_NOT_FOUND',
  SLACK_UNAVAILABLE: 'SLACK_UNAVAILABLE',
  /** A signed Slack request whose signature was already accepted (by any Warden process), or that is not fresh. */
  SLACK_REPLAYED_REQUEST: 'SLACK_REPLAYED_REQUEST',
  /** A gateway request body larger than the configured limit. */
  BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  HALTED: 'HALTED',
  INVALID_INPUT: 'INVALID_INPUT',
  CONTROL_WRITE_FAILED: 'CONTROL_WRITE_FAILED',
  DRILL_IN_PROGRESS: 'DRILL_IN_PROGRESS',
  /** The agent's connection or session went away while its call was held or running. */
  CALL_ABANDONED: 'CALL_ABANDONED',
  /** The agent cancelled its call on purpose (tasks/cancel): a held call's approval is cancelled, not abandoned. */
  CALL_CANCELLED: 'CALL_CANCELLED',
  /** `warden run` cannot build the sandbox the policy asks for (no bubblewrap, no user namespaces, the proxy failed). */
  SANDBOX_UNAVAILABLE: 'SANDBOX_UNAVAILABLE',
  /** A Warden component failed unexpectedly; the operation was refused, not guessed. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class WardenError extends Error {
  readonly code: ErrorCode;
  /** Extra facts for logs and error printers; never secrets. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WardenError';
    this.code = code;
    this.details = options?.details;
  }
}

/** Thrown by the Slack replay guard's middleware: the receiver answers 401 and no listener runs. */
export class ReplayedRequestError extends WardenError {
  constructor(reason: string) {
    super('SLACK_REPLAYED_REQUEST', reason);
    this.name = 'ReplayedRequestError';
  }
}

/** A gateway request body over the limit: answered 413 before any of it is parsed. */
export class BodyTooLargeError extends WardenError {
  constructor(limitBytes: number) {
    super('BODY_TOO_LARGE', `requests are limited to ${limitBytes} bytes`, { details: { limitBytes } });
    this.name = 'BodyTooLargeError';
  }
}

export function isWardenError(err: unknown, code?: ErrorCode): err is WardenError {
  return err instanceof WardenError && (code === undefined || err.code === code);
}

/** A message safe to show a person, whatever was thrown. */
export function describeError(err: unknown): string {
  if (err instanceof WardenError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
