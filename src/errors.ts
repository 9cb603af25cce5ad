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
  HALTED: 'HALTED',
  INVALID_INPUT: 'INVALID_INPUT',
  CONTROL_WRITE_FAILED: 'CONTROL_WRITE_FAILED',
  DRILL_IN_PROGRESS: 'DRILL_IN_PROGRESS',
  /** The agent's connection or session went away while its call was held or running. */
  CALL_ABANDONED: 'CALL_ABANDONED',
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

export function isWardenError(err: unknown, code?: ErrorCode): err is WardenError {
  return err instanceof WardenError && (code === undefined || err.code === code);
}

/** A message safe to show a person, whatever was thrown. */
export function describeError(err: unknown): string {
  if (err instanceof WardenError) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}
