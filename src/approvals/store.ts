import type { Db } from '../store/db.ts';
import type { Consequence } from '../policy/types.ts';
import type { ApprovalRecord, ApprovalResultReport, ApprovalStatus } from './types.ts';

/** Typed queries on the `approvals` table. All synchronous (better-sqlite3). */
interface ApprovalRow {
  id: string;
  call_id: string;
  agent: string;
  owner: string | null;
  server: string;
  tool: string;
  args: string;
  args_hash: string;
  rule: string;
  consequence: string;
  request_reason: string | null;
  approvers: string;
  status: ApprovalStatus;
  requested_at: number;
  expires_at: number;
  decided_at: number | null;
  decided_by: string | null;
  decision_reason: string | null;
  channel: string | null;
  message_ts: string | null;
  process_id: string | null;
  outcome: string | null;
  decision_seq: number | null;
}

/** A held call as inserted: the record's request fields, pending by definition, with nothing decided yet. */
export interface NewApproval
  extends Pick<
    ApprovalRecord,
    | 'id'
    | 'callId'
    | 'agent'
    | 'owner'
    | 'server'
    | 'tool'
    | 'argsHash'
    | 'rule'
    | 'consequence'
    | 'approvers'
    | 'requestedAt'
    | 'expiresAt'
    | 'channel'
  > {
  /** Already redacted; stored as the record's `args`. */
  displayArgs: unknown;
  /** Required here: every held call says why. */
  requestReason: string;
  processId: string;
}

export interface Transition {
  status: Exclude<ApprovalStatus, 'pending'>;
  at: number;
  by?: string | undefined;
  reason?: string | undefined;
}

function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function toRecord(row: ApprovalRow): ApprovalRecord {
  return {
    id: row.id,
    callId: row.call_id,
    agent: row.agent,
    owner: row.owner ?? undefined,
    server: row.server,
    tool: row.tool,
    args: parseJson<unknown>(row.args, null),
    argsHash: row.args_hash,
    rule: row.rule === 'consequential' ? 'consequential' : 'approval_required',
    consequence: row.consequence as Consequence,
    requestReason: row.request_reason ?? undefined,
    approvers: parseJson<string[]>(row.approvers, []),
    status: row.status,
    requestedAt: row.requested_at,
    expiresAt: row.expires_at,
    decidedAt: row.decided_at ?? undefined,
    decidedBy: row.decided_by ?? undefined,
    decisionReason: row.decision_reason ?? undefined,
    decisionSeq: row.decision_seq ?? undefined,
    channel: row.channel ?? undefined,
    messageTs: row.message_ts ?? undefined,
    processId: row.process_id ?? undefined,
    outcome: parseJson<ApprovalResultReport | undefined>(row.outcome, undefined),
  };
}

export class ApprovalStore {
  readonly #stmts;

  constructor(db: Db) {
    this.#stmts = {
      insert: db.prepare(`INSERT INTO approvals
        (id, call_id, agent, owner, server, tool, args, args_hash, rule, consequence, request_reason, approvers,
         status, requested_at, expires_at, channel, process_id)
        VALUES (@id, @callId, @agent, @owner, @server, @tool, @args, @argsHash, @rule, @consequence, @requestReason, @approvers,
         'pending', @requestedAt, @expiresAt, @channel, @processId)`),
      get: db.prepare('SELECT * FROM approvals WHERE id = ?'),
      status: db.prepare('SELECT status FROM approvals WHERE id = ?').pluck(),
      // The one place a decision is made: it succeeds for exactly one caller.
      transition: db.prepare(`UPDATE approvals
        SET status = @status, decided_at = @at, decided_by = @by, decision_reason = @reason
        WHERE id = @id AND status = 'pending'`),
      // A person's approve/reject: also only before the deadline, so a row whose
      // expiry timer has not fired yet (late timer, dead process) cannot be approved.
      transitionBeforeDeadline: db.prepare(`UPDATE approvals
        SET status = @status, decided_at = @at, decided_by = @by, decision_reason = @reason
        WHERE id = @id AND status = 'pending' AND expires_at > @at`),
      setDecisionSeq: db.prepare(`UPDATE approvals SET decision_seq = @seq
        WHERE id = @id AND status = @status AND decision_seq IS NULL`),
      failUnaudited: db.prepare(`UPDATE approvals SET status = 'failed', decision_reason = @reason
        WHERE id = @id AND status = 'approved' AND decision_seq IS NULL`),
      setMessage: db.prepare('UPDATE approvals SET channel = ?, message_ts = ? WHERE id = ?'),
      setOutcome: db.prepare('UPDATE approvals SET outcome = ? WHERE id = ?'),
      pending: db.prepare(`SELECT * FROM approvals WHERE status = 'pending' ORDER BY requested_at`),
      pendingForAgent: db.prepare(
        `SELECT * FROM approvals WHERE status = 'pending' AND agent = ? ORDER BY requested_at`,
      ),
    };
  }

  insert(a: NewApproval): void {
    this.#stmts.insert.run({
      id: a.id,
      callId: a.callId,
      agent: a.agent,
      owner: a.owner ?? null,
      server: a.server,
      tool: a.tool,
      args: JSON.stringify(a.displayArgs ?? null),
      argsHash: a.argsHash,
      rule: a.rule,
      consequence: a.consequence,
      requestReason: a.requestReason,
      approvers: JSON.stringify(a.approvers),
      requestedAt: a.requestedAt,
      expiresAt: a.expiresAt,
      channel: a.channel ?? null,
      processId: a.processId,
    });
  }

  get(id: string): ApprovalRecord | undefined {
    const row = this.#stmts.get.get(id) as ApprovalRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  status(id: string): ApprovalStatus | undefined {
    return this.#stmts.status.get(id) as ApprovalStatus | undefined;
  }

  /**
   * Compare-and-set out of 'pending'. True for the single caller that made the
   * decision. Approve and reject also need the request not to have expired
   * (`expires_at > t.at`); expiry, cancellation and failures do not.
   */
  transition(id: string, t: Transition): boolean {
    const stmt =
      t.status === 'approved' || t.status === 'rejected'
        ? this.#stmts.transitionBeforeDeadline
        : this.#stmts.transition;
    const info = stmt.run({ id, status: t.status, at: t.at, by: t.by ?? null, reason: t.reason ?? null });
    return info.changes === 1;
  }

  /**
   * Records that the decision's audit row is committed (its seq). False when
   * the row has moved on meanwhile (e.g. an unaudited approval was failed).
   */
  setDecisionSeq(id: string, status: Exclude<ApprovalStatus, 'pending'>, seq: number): boolean {
    return this.#stmts.setDecisionSeq.run({ id, status, seq }).changes === 1;
  }

  /**
   * approved -> failed, only while the approval's audit row is not recorded:
   * an approval the trail does not hold is not an approval. True when it moved.
   */
  failUnaudited(id: string, reason: string): boolean {
    return this.#stmts.failUnaudited.run({ id, reason }).changes === 1;
  }

  setMessage(id: string, channel: string, ts: string): void {
    this.#stmts.setMessage.run(channel, ts, id);
  }

  setOutcome(id: string, outcome: ApprovalResultReport): void {
    this.#stmts.setOutcome.run(JSON.stringify(outcome), id);
  }

  pending(filter: { agent?: string | undefined } = {}): ApprovalRecord[] {
    const rows = (
      filter.agent === undefined ? this.#stmts.pending.all() : this.#stmts.pendingForAgent.all(filter.agent)
    ) as ApprovalRow[];
    return rows.map(toRecord);
  }
}
