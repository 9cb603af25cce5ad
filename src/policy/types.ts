/**
 * The normalised policy: what `loadPolicy` produces from YAML and what
 * `decide` reads. Both the seed (single agent) form and the full form load into
 * this one shape.
 */
export type Scope = 'read' | 'write';
export type Consequence = 'reversible' | 'irreversible' | 'customer-facing';

export interface ToolClass {
  scope: Scope;
  consequence: Consequence;
}

export type Transport =
  | { type: 'stdio'; command: string; args: string[]; env: Record<string, string>; cwd?: string | undefined }
  | { type: 'http'; url: string; headers: Record<string, string> };

export interface ServerPolicy {
  name: string;
  /** Absent for servers named only in an agent's scopes (the seed form). */
  transport?: Transport | undefined;
  /** Classification by bare tool name. A tool missing here is write + irreversible. */
  tools: Record<string, ToolClass>;
  timeoutMs: number;
  maxResultBytes: number;
  /** A stdio server started in a sandbox (no network, writes only under its cwd); absent or `none`: as it is. */
  sandbox?: SandboxPolicy | undefined;
}

export interface AgentLimits {
  /** Calls a minute before an anomaly alert (and refusal when enforce is set). */
  callsPerMinute?: number | undefined;
  /** Denials within `denialWindowMs` before an alert. */
  maxDenials?: number | undefined;
  denialWindowMs: number;
  /** Rejected approvals within `denialWindowMs` before an alert. */
  maxRejections?: number | undefined;
  /** A call running longer than this raises an alert. */
  maxCallDurationMs?: number | undefined;
  /** Halt this agent automatically when an anomaly fires. */
  autoHalt: boolean;
}

/**
 * What `warden run` builds the agent's sandbox from. `isolated` is the only
 * sandboxed mode: egress to Warden's gateway and `networkAllow`, reads of
 * everything but the host's homes, credentials, Warden's own files and
 * `readDeny`, writes in the workspace, the private temp and `write`.
 */
export interface SandboxPolicy {
  mode: 'isolated' | 'none';
  /** How the file said it, for summaries: the seed string, `none`, a block, or nothing (the strict default). */
  declared: 'seed' | 'none' | 'block' | 'default';
  /** `api.anthropic.com`, `*.github.com` (subdomains only), optionally with `:port`. */
  networkAllow: string[];
  /** Absolute paths, or under `~/` (the host user's home). */
  readDeny: string[];
  write: string[];
  /** Host environment variables passed through by name, besides PATH, LANG and TERM. */
  env: string[];
  /** SIGTERM, then SIGKILL this long after. */
  stopGraceMs: number;
}

export type OnRedacted = 'hold_and_warn' | 'refuse';

export interface AgentPolicy {
  name: string;
  /** Slack user id of the owner, e.g. U012ABC. */
  owner?: string | undefined;
  /** Slack channel id where approval cards and alerts go. */
  channel?: string | undefined;
  /** Slack user ids who may decide this agent's approvals (the owner always may). */
  approvers: string[];
  /** ISO date (YYYY-MM-DD) by which the agent's access must be reviewed. */
  reviewBy?: string | undefined;
  /** server name → granted scopes. Read-only unless 'write' is listed. */
  scopes: Record<string, Scope[]>;
  /** Tool names (bare `send_customer_email` or qualified `crm__send_customer_email`) held for approval. */
  approvalRequired: string[];
  approvalTimeoutMs: number;
  /**
   * A held call still undecided after this long is answered as pending (the
   * approval goes on; the agent collects the result later). Undefined: `never`,
   * the request is held open until the decision.
   */
  answerWithinMs: number | undefined;
  /** A held call whose card would hide values: hold it with a warning on the card, or refuse it outright. */
  onRedacted: OnRedacted;
  /** Held calls of this agent pending at once; the next one is refused with a reason. */
  maxPending: number;
  limits: AgentLimits;
  audit: string;
  sandbox: SandboxPolicy;
  killSwitch?: string | undefined;
}

export interface ControlPolicy {
  /** Slack user ids who may halt. Empty list: anyone in the workspace may halt (stopping is always safe). */
  halters: string[];
  /** Slack user ids who may resume. Empty list: nobody may resume from Slack (CLI only). */
  resumers: string[];
  /**
   * Slack user ids who may read the audit trail from Slack (/audit and its
   * buttons). Non-empty: only these users. Empty: an agent's owner and
   * approvers see that agent's rows, and users listed in halters or resumers
   * see every row (see control/authorize.ts `auditAccess`).
   */
  auditors: string[];
  oncallChannel?: string | undefined;
  complianceChannel?: string | undefined;
  drill: {
    /** node-cron expression, e.g. '0 9 1 * *' (monthly). */
    schedule?: string | undefined;
    canaryAgent: string;
    /** A drill older than this alerts as overdue. */
    overdueAfterDays: number;
  };
  /** node-cron expression for posting audit checkpoints. */
  checkpointSchedule?: string | undefined;
  /** Also checkpoint once this many rows have been appended since the last checkpoint. */
  checkpointEveryRows?: number | undefined;
  /** node-cron expression for review-date reminders. */
  reviewReminderSchedule?: string | undefined;
}

export interface Policy {
  servers: Record<string, ServerPolicy>;
  agents: Record<string, AgentPolicy>;
  control: ControlPolicy;
  /** Where it was loaded from, for error messages. */
  source: string;
}

/** Upstream tool annotations: untrusted hints that may only tighten. */
export interface ToolAnnotations {
  readOnlyHint?: boolean | undefined;
  destructiveHint?: boolean | undefined;
  idempotentHint?: boolean | undefined;
  openWorldHint?: boolean | undefined;
}

export interface DecideContext {
  /** Set when the org or this agent is halted (control reads it; decide stays pure). */
  halted?: { scope: 'org' | 'agent'; reason: string } | undefined;
  /** Annotations the upstream reported for this tool, if any. */
  annotations?: ToolAnnotations | undefined;
  /** When known, the tools the upstream actually offers; a tool outside it is unknown. */
  upstreamTools?: ReadonlySet<string> | undefined;
}

export type DenyCode = 'halted' | 'unknown_agent' | 'unknown_server' | 'unknown_tool' | 'out_of_scope';

export type Decision =
  | { kind: 'allow'; tool: ToolClass }
  | { kind: 'deny'; code: DenyCode; reason: string }
  | { kind: 'approve'; rule: 'approval_required' | 'consequential'; reason: string; tool: ToolClass };
