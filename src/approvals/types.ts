import type { Grant } from './grants.ts';
import type { AgentPolicy, Consequence } from '../policy/types.ts';

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired' | 'cancelled' | 'abandoned' | 'failed';

export interface ApprovalRequestInput {
  callId: string;
  agent: AgentPolicy;
  server: string;
  tool: string;
  args: unknown;
  rule: 'approval_required' | 'consequential';
  consequence: Consequence;
  reason: string;
  /** False for a call a `grant: never` rule holds: no grant covers it, and none may be given from its card. */
  grantable?: boolean | undefined;
  /** Aborted when the agent cancels or disconnects, or the agent is halted. */
  signal: AbortSignal;
  /** Called periodically while waiting, so the edge can send MCP progress notifications. */
  onWaiting?: ((elapsedMs: number) => void) | undefined;
  /** Called once the request is stored and audited, before its card is posted: the id a deferred answer names. */
  onRequested?:
    | ((requested: { approvalId: string; expiresAt: number; channel: string | undefined }) => void)
    | undefined;
}

export type ApprovalOutcome =
  | {
      approvalId: string;
      status: 'approved';
      approver: string;
      at: number;
      /**
       * sha256 (hex, `argsHash()` in canonical.ts) of the exact arguments the
       * human approved, read back from the stored approval. The gateway must
       * forward only arguments whose `argsHash` equals this; an outcome
       * without it cannot show what was approved and must be treated as a
       * mismatch (fail closed). ApprovalService always sets it.
       */
      argsHash?: string | undefined;
    }
  | {
      approvalId: string;
      status: Exclude<ApprovalStatus, 'approved' | 'pending'>;
      approver?: string | undefined;
      reason: string;
      at: number;
    };

/**
 * How a deferred held call ended, kept for its agent to collect once: the
 * upstream's tool result (an MCP CallToolResult, as JSON), or the JSON-RPC
 * error the upstream answered with.
 */
export type HeldCallEnding =
  | { kind: 'result'; result: Record<string, unknown> }
  | { kind: 'error'; code: number; message: string; data?: unknown };

/** A held call whose agent was told "not run yet, check back", as stored until it is collected or expires. */
export interface HeldCall {
  approvalId: string;
  callId: string;
  agent: string;
  /** The namespaced tool name the agent called (`<server>__<tool>`). */
  name: string;
  server: string;
  tool: string;
  argsHash: string;
  /** The exact arguments: present only until the call ends (then erased). */
  args?: unknown;
  /** The id of the agent token the call was made with: revoked meanwhile, the call is not run. */
  tokenId?: string | undefined;
  channel?: string | undefined;
  answerWithinMs: number;
  expiresAt: number;
  /** Set when the call was made as an MCP task: its task, which outlives a restart with it. */
  task?: HeldTask | undefined;
  /** The process that took the approved call to run it; set once. */
  runner?: string | undefined;
  /** Set once the call ended; handed out once. */
  ending?: HeldCallEnding | undefined;
  /** When it ended (epoch ms). */
  endedAt?: number | undefined;
}

export type NewHeldCall = Omit<HeldCall, 'ending' | 'endedAt' | 'args' | 'runner'> & { args: unknown };

/**
 * The deferred held calls, in the database so they survive a restart. Each
 * method is one statement: several processes sharing the database agree on
 * who ended and who collected a call.
 */
/** How an agent collected a held call's ending: warden__await_approval, the same call again, or its task's tasks/result. */
export type CollectedHow = 'await' | 'repeat' | 'task';

/** The MCP task a held call was made as: its id, and when it was created and for how long it is kept (ms). */
export interface HeldTask {
  taskId: string;
  createdAt: number;
  ttlMs: number;
}

export interface HeldCallBook {
  /** Stores the call (with its exact arguments) when its agent is told to check back. */
  keep(call: NewHeldCall): void;
  /** The call, if it has not expired or been collected. */
  get(approvalId: string): HeldCall | undefined;
  /** An identical call (same agent, tool and argument hash) not yet collected. */
  findRepeat(agent: string, name: string, argsHash: string): HeldCall | undefined;
  /** The held call made as this task, if it has not expired or been collected. */
  getByTask(taskId: string): HeldCall | undefined;
  /** Held calls made as tasks, not expired or collected (ended or not). */
  tasks(): HeldCall[];
  /** Whether this agent has any held call not yet collected (spares hashing every call's arguments). */
  hasAny(agent: string): boolean;
  /**
   * Takes the approved call to run it in this process: true for exactly one
   * caller (in any process sharing the database); whoever gets false must not run it.
   */
  claimRun(approvalId: string): boolean;
  /** Records how the call ended and erases its arguments; false when it had ended already. */
  end(approvalId: string, ending: HeldCallEnding): boolean;
  /** Hands the ending out, once: the row is gone afterwards. Undefined when not ended, or someone had it first. */
  take(approvalId: string): HeldCallEnding | undefined;
  /** Drops the call (its approval's expiry passed). */
  forget(approvalId: string): void;
  /** A halt: endings kept for these agents are replaced by the halt's refusal. Returns how many. */
  discard(filter: { agent?: string | undefined }, ending: HeldCallEnding): number;
}

/** What the gateway needs: hold a call until a human (or a timeout) decides. */
export interface ApprovalGate {
  /**
   * The process (replica) whose calls these are: stamped on each call.decided
   * row, so survivors can tell which calls a dead replica left running.
   */
  readonly processId?: string | undefined;
  request(input: ApprovalRequestInput): Promise<ApprovalOutcome>;
  /** After an approved call ran: tell the humans how it ended (thread reply). */
  reportOutcome(approvalId: string, outcome: { ok: boolean; summary: string }): Promise<void>;
  /**
   * The agent's request was answered "not run yet, check back" while the
   * approval goes on: audited (`approval.deferred`) and said in the card's thread.
   */
  /** `taskId`: the agent was answered with this MCP task (it polls the task) rather than "not run yet". */
  deferred(approvalId: string, info: { agent: string; callId: string; taskId?: string | undefined }): Promise<void>;
  /** The agent collected how a deferred call ended (`approval.collected`). */
  collected(approvalId: string, info: { agent: string; callId: string; how: CollectedHow }): Promise<void>;
  /** Deferred held calls' arguments and endings. */
  readonly heldCalls: HeldCallBook;
  /**
   * At start-up: the deferred held calls a stopped Warden left waiting for a
   * decision, now this process's to run on approval (each with its exact
   * arguments). Held calls it left approved but unfinished are ended as
   * unknown, never run again.
   */
  adoptHeldCalls(): Promise<HeldCall[]>;
  /** Waits for the decision on an adopted held call, as `request()` would have. */
  awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome>;
}

/** How an approved call ended, for the humans who approved it. */
export interface ApprovalResultReport {
  ok: boolean;
  /** A short human summary of the result or the error; shown in the card's thread. */
  summary: string;
}

/**
 * One held call as stored. Slack cards are redrawn from this (never from a
 * click's payload), so what people see is what the database says.
 */
export interface ApprovalRecord {
  id: string;
  callId: string;
  agent: string;
  owner?: string | undefined;
  server: string;
  tool: string;
  /** The arguments as shown to people: redacted. The exact arguments are bound by `argsHash`. */
  args: unknown;
  /** sha256 (hex) of the canonical JSON of the exact arguments. */
  argsHash: string;
  rule: 'approval_required' | 'consequential';
  consequence: Consequence;
  /** Why the call is held (the policy's sentence). */
  requestReason?: string | undefined;
  /** Who could decide when the call was held (owner included). */
  approvers: string[];
  status: ApprovalStatus;
  requestedAt: number;
  expiresAt: number;
  decidedAt?: number | undefined;
  /** Slack user id for human decisions; absent for expiry, halts, restarts and failures. */
  decidedBy?: string | undefined;
  decisionReason?: string | undefined;
  /**
   * The audit seq of this decision's `approval.decided` row, set once that
   * row is committed. 'approved' releases a call only when this is set.
   */
  decisionSeq?: number | undefined;
  channel?: string | undefined;
  messageTs?: string | undefined;
  processId?: string | undefined;
  outcome?: ApprovalResultReport | undefined;
  /** False when the rule that held the call says `grant: never`: approve once only (absent: true). */
  grantable?: boolean | undefined;
  /** The agent's grants.max when held; absent: the card offers "Approve once" only. */
  grantMaxMs?: number | undefined;
}

export type DecideResult =
  | { ok: true; record: ApprovalRecord; grant?: Grant | undefined }
  | {
      ok: false;
      /** not_found: no such approval; forbidden: the user may not decide it; not_pending: someone (or something) decided first. */
      code: 'not_found' | 'forbidden' | 'not_pending';
      /** A sentence to show the user who clicked. */
      message: string;
      record?: ApprovalRecord | undefined;
    };

/**
 * Where the service shows held calls to people (Slack implements it). The
 * service stays transport-free: it hands over records, the notifier draws them.
 */
export interface ApprovalNotifier {
  /** Post the card; rejects (after bounded retries) when the card could not be shown. */
  postCard(record: ApprovalRecord): Promise<{ channel: string; ts: string }>;
  /** Redraw the posted card from the stored record. */
  updateCard(record: ApprovalRecord): Promise<void>;
  /** Reply in the card's thread with how the approved call ended. */
  postOutcome(record: ApprovalRecord, outcome: ApprovalResultReport): Promise<void>;
  /** Reply in the card's thread with a line for the approvers (e.g. that the agent was told to check back). */
  postNote(record: ApprovalRecord, text: string): Promise<void>;
  /**
   * After the card is posted: put in its thread whatever the card could not
   * show (e.g. the full redacted arguments when a value was cut or keys were
   * left out); a no-op when the card showed everything. Rejects when it could
   * not, and the request then fails closed, since the card promises the
   * details are there.
   */
  postDetails?(record: ApprovalRecord): Promise<void>;
}
