import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { ChangeWatch, noteLocalWrite } from '../store/change-watch.ts';
import type { Db } from '../store/db.ts';
import type { Consequence } from '../policy/types.ts';
import type {
  ApprovalRecord,
  ApprovalResultReport,
  ApprovalStatus,
  HeldCall,
  HeldCallBook,
  HeldCallEnding,
  NewHeldCall,
} from './types.ts';

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
  grantable: number;
  grant_max_ms: number | null;
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
    | 'grantable'
    | 'grantMaxMs'
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
    grantable: row.grantable !== 0,
    grantMaxMs: row.grant_max_ms ?? undefined,
  };
}

export class ApprovalStore {
  readonly #stmts;

  constructor(db: Db) {
    this.#stmts = {
      insert: db.prepare(`INSERT INTO approvals
        (id, call_id, agent, owner, server, tool, args, args_hash, rule, consequence, request_reason, approvers,
         status, requested_at, expires_at, channel, process_id, grantable, grant_max_ms)
        VALUES (@id, @callId, @agent, @owner, @server, @tool, @args, @argsHash, @rule, @consequence, @requestReason, @approvers,
         'pending', @requestedAt, @expiresAt, @channel, @processId, @grantable, @grantMaxMs)`),
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
      // Taking a row over from a process that is gone: one starting process wins it.
      claim: db.prepare(`UPDATE approvals SET process_id = @to
        WHERE id = @id AND status = 'pending' AND process_id IS @from`),
      pendingForAgent: db.prepare(
        `SELECT * FROM approvals WHERE status = 'pending' AND agent = ? ORDER BY requested_at`,
      ),
      pendingCounts: db.prepare<[string | null, string | null], { agent: string; n: number }>(
        `SELECT agent, count(*) AS n FROM approvals WHERE status = 'pending' AND (CAST(? AS TEXT) IS NULL OR agent = ?) GROUP BY agent`,
      ),
      latestForCall: db.prepare<[string], { status: ApprovalStatus; decided_at: number | null }>(
        'SELECT status, decided_at FROM approvals WHERE call_id = ? ORDER BY requested_at DESC LIMIT 1',
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
      grantable: a.grantable === false ? 0 : 1,
      grantMaxMs: a.grantable === false ? null : (a.grantMaxMs ?? null),
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

  /** Makes a pending row this process's; false when it is no longer pending or another process took it first. */
  claim(id: string, from: string | undefined, to: string): boolean {
    return this.#stmts.claim.run({ id, from: from ?? null, to }).changes === 1;
  }

  pending(filter: { agent?: string | undefined } = {}): ApprovalRecord[] {
    const rows = (
      filter.agent === undefined ? this.#stmts.pending.all() : this.#stmts.pendingForAgent.all(filter.agent)
    ) as ApprovalRow[];
    return rows.map(toRecord);
  }

  /** Pending approvals per agent (one agent when `only` is given); agents with none are absent. */
  pendingCountsByAgent(only?: string): Map<string, number> {
    const rows = this.#stmts.pendingCounts.all(only ?? null, only ?? null);
    return new Map(rows.map((row) => [row.agent, row.n]));
  }

  /** Status of the newest approval requested for a call, if the call was ever held. */
  latestForCall(callId: string): { status: ApprovalStatus; decidedAt: number | undefined } | undefined {
    const row = this.#stmts.latestForCall.get(callId);
    return row ? { status: row.status, decidedAt: row.decided_at ?? undefined } : undefined;
  }
}

interface HeldCallRow {
  approval_id: string;
  call_id: string;
  agent: string;
  name: string;
  server: string;
  tool: string;
  args_hash: string;
  args: string | null;
  token_id: string | null;
  channel: string | null;
  runner: string | null;
  answer_within_ms: number;
  expires_at: number;
  ending: string | null;
  ended_at: number | null;
  task_id: string | null;
  task_created_at: number | null;
  task_ttl_ms: number | null;
}

/** The stored ending is read back through this: a row that does not parse is not handed to an agent. */
const endingSchema: z.ZodType<HeldCallEnding> = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('result'), result: z.record(z.string(), z.unknown()) }),
  z.object({ kind: z.literal('error'), code: z.number().int(), message: z.string(), data: z.unknown().optional() }),
]);

function toHeldCall(row: HeldCallRow): HeldCall {
  const ending = row.ending === null ? undefined : endingSchema.safeParse(parseJson<unknown>(row.ending, null));
  return {
    approvalId: row.approval_id,
    callId: row.call_id,
    agent: row.agent,
    name: row.name,
    server: row.server,
    tool: row.tool,
    argsHash: row.args_hash,
    ...(row.args === null ? {} : { args: parseJson<unknown>(row.args, null) }),
    tokenId: row.token_id ?? undefined,
    channel: row.channel ?? undefined,
    runner: row.runner ?? undefined,
    answerWithinMs: row.answer_within_ms,
    expiresAt: row.expires_at,
    ...(row.task_id === null
      ? {}
      : { task: { taskId: row.task_id, createdAt: row.task_created_at ?? 0, ttlMs: row.task_ttl_ms ?? 0 } }),
    endedAt: row.ended_at ?? undefined,
    ending:
      ending === undefined
        ? undefined
        : ending.success
          ? ending.data
          : { kind: 'error', code: -32603, message: 'the stored result of this held call could not be read' },
  };
}

/** The channel held_calls' inserts and updates are heard on (db/postgres/004_change_notify.sql). */
export const HELD_CALLS_CHANNEL = 'warden_held_calls';
/** Agents remembered as having no held call, at most; past it the cache starts again. */
const MAX_CACHED_AGENTS = 10_000;

/**
 * Typed queries on the `held_calls` table (db/005): deferred held calls, their
 * exact arguments until they end, and their endings until collected or expired.
 * A row past its expiry is treated as gone, whether or not it was deleted yet.
 */
export class HeldCallStore implements HeldCallBook {
  readonly #clock: Clock;
  readonly #processId: string;
  readonly #stmts;
  /** With `cache` on PostgreSQL: agents found to have no held call, and when (store/change-watch.ts). */
  readonly #watch: ChangeWatch | undefined;
  readonly #none = new Map<string, { epoch: number; at: number }>();

  /** `processId` names this process as a runner (ApprovalService.processId). */
  constructor(db: Db, clock: Clock, processId: string, options: { cache?: boolean | undefined } = {}) {
    this.#clock = clock;
    this.#processId = processId;
    this.#watch = options.cache ? ChangeWatch.open(db, HELD_CALLS_CHANNEL, { clock }) : undefined;
    this.#stmts = {
      insert: db.prepare(`INSERT INTO held_calls
        (approval_id, call_id, agent, name, server, tool, args_hash, args, token_id, channel, answer_within_ms, expires_at,
         task_id, task_created_at, task_ttl_ms)
        VALUES (@approvalId, @callId, @agent, @name, @server, @tool, @argsHash, @args, @tokenId, @channel, @answerWithinMs,
         @expiresAt, @taskId, @taskCreatedAt, @taskTtlMs)`),
      byTask: db.prepare('SELECT * FROM held_calls WHERE task_id = ? AND expires_at > ?'),
      tasks: db.prepare(
        'SELECT * FROM held_calls WHERE task_id IS NOT NULL AND expires_at > ? ORDER BY task_created_at',
      ),
      get: db.prepare('SELECT * FROM held_calls WHERE approval_id = ? AND expires_at > ?'),
      repeat: db.prepare(`SELECT * FROM held_calls
        WHERE agent = ? AND name = ? AND args_hash = ? AND expires_at > ? ORDER BY expires_at LIMIT 1`),
      any: db.prepare('SELECT 1 FROM held_calls WHERE agent = ? AND expires_at > ? LIMIT 1').pluck(),
      claimRun: db.prepare(`UPDATE held_calls SET runner = @runner
        WHERE approval_id = @id AND runner IS NULL AND ending IS NULL`),
      end: db.prepare(`UPDATE held_calls SET ending = @ending, ended_at = @at, args = NULL
        WHERE approval_id = @id AND ending IS NULL`),
      take: db.prepare('DELETE FROM held_calls WHERE approval_id = ? AND ending IS NOT NULL AND expires_at > ?'),
      forget: db.prepare('DELETE FROM held_calls WHERE approval_id = ?'),
      sweep: db.prepare('DELETE FROM held_calls WHERE expires_at <= ?'),
      discardAll: db.prepare(`UPDATE held_calls SET ending = @ending, args = NULL WHERE ending IS NOT NULL`),
      discardAgent: db.prepare(`UPDATE held_calls SET ending = @ending, args = NULL
        WHERE ending IS NOT NULL AND agent = @agent`),
      waiting: db.prepare('SELECT * FROM held_calls WHERE ending IS NULL AND expires_at > ? ORDER BY expires_at'),
      toRun: db
        .prepare('SELECT 1 FROM held_calls WHERE call_id = ? AND ending IS NULL AND runner IS NULL AND expires_at > ?')
        .pluck(),
      runner: db.prepare<[string], { runner: string }>(
        'SELECT runner FROM held_calls WHERE call_id = ? AND ending IS NULL AND runner IS NOT NULL LIMIT 1',
      ),
    };
  }

  keep(call: NewHeldCall): void {
    this.#stmts.insert.run({
      approvalId: call.approvalId,
      callId: call.callId,
      agent: call.agent,
      name: call.name,
      server: call.server,
      tool: call.tool,
      argsHash: call.argsHash,
      args: JSON.stringify(call.args ?? null),
      tokenId: call.tokenId ?? null,
      channel: call.channel ?? null,
      answerWithinMs: call.answerWithinMs,
      expiresAt: call.expiresAt,
      taskId: call.task?.taskId ?? null,
      taskCreatedAt: call.task?.createdAt ?? null,
      taskTtlMs: call.task?.ttlMs ?? null,
    });
    noteLocalWrite(HELD_CALLS_CHANNEL);
  }

  getByTask(taskId: string): HeldCall | undefined {
    const row = this.#stmts.byTask.get(taskId, this.#clock.now()) as HeldCallRow | undefined;
    return row ? toHeldCall(row) : undefined;
  }

  tasks(): HeldCall[] {
    return (this.#stmts.tasks.all(this.#clock.now()) as HeldCallRow[]).map(toHeldCall);
  }

  get(approvalId: string): HeldCall | undefined {
    const row = this.#stmts.get.get(approvalId, this.#clock.now()) as HeldCallRow | undefined;
    return row ? toHeldCall(row) : undefined;
  }

  findRepeat(agent: string, name: string, argsHash: string): HeldCall | undefined {
    const row = this.#stmts.repeat.get(agent, name, argsHash, this.#clock.now()) as HeldCallRow | undefined;
    return row ? toHeldCall(row) : undefined;
  }

  /**
   * On every governed call (an identical repeat attaches to a held call), so
   * with the cache an agent found to have none is not asked about again
   * until a held call is kept or changed anywhere (NOTIFY, or this process),
   * or a second has passed.
   */
  hasAny(agent: string): boolean {
    const none = this.#none.get(agent);
    if (none && this.#watch?.fresh(none)) return false;
    const stamp = this.#watch?.stamp();
    const any = this.#stmts.any.get(agent, this.#clock.now()) !== undefined;
    if (stamp && !any) {
      if (this.#none.size >= MAX_CACHED_AGENTS) this.#none.clear();
      this.#none.set(agent, stamp);
    } else this.#none.delete(agent);
    return any;
  }

  /** Ends the LISTEN connection of a caching store. */
  close(): void {
    this.#watch?.close();
    this.#none.clear();
  }

  claimRun(approvalId: string): boolean {
    return this.#stmts.claimRun.run({ id: approvalId, runner: this.#processId }).changes === 1;
  }

  end(approvalId: string, ending: HeldCallEnding): boolean {
    const info = this.#stmts.end.run({ id: approvalId, ending: JSON.stringify(ending), at: this.#clock.now() });
    return info.changes === 1;
  }

  take(approvalId: string): HeldCallEnding | undefined {
    const call = this.get(approvalId);
    if (!call?.ending) return undefined;
    // The delete is the compare-and-set: of two collectors (in any process), one removes the row.
    return this.#stmts.take.run(approvalId, this.#clock.now()).changes === 1 ? call.ending : undefined;
  }

  forget(approvalId: string): void {
    this.#stmts.forget.run(approvalId);
  }

  discard(filter: { agent?: string | undefined }, ending: HeldCallEnding): number {
    const text = JSON.stringify(ending);
    const info =
      filter.agent === undefined
        ? this.#stmts.discardAll.run({ ending: text })
        : this.#stmts.discardAgent.run({ ending: text, agent: filter.agent });
    return info.changes;
  }

  /** Deletes rows past their expiry (their endings were promised only until then). */
  sweep(): number {
    return this.#stmts.sweep.run(this.#clock.now()).changes;
  }

  /** Whether this call is a held call not yet taken to run nor ended: a Warden (this one or the next) may still run it. */
  stillToRun(callId: string): boolean {
    return this.#stmts.toRun.get(callId, this.#clock.now()) !== undefined;
  }

  /** The process that took this held call to run it, while it has not ended (undefined: nobody, or no such call). */
  runnerOf(callId: string): string | undefined {
    return this.#stmts.runner.get(callId)?.runner ?? undefined;
  }

  /** Calls not ended yet (waiting for a decision, or approved and running somewhere). */
  waiting(): HeldCall[] {
    return (this.#stmts.waiting.all(this.#clock.now()) as HeldCallRow[]).map(toHeldCall);
  }
}
