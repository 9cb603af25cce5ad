import type { Db, Statement } from '../store/db.ts';
import { runQuery, type AuditQuery, type QueryPage } from './query.ts';

/** The columns the anomaly detector's tail needs from each new row. */
export interface AuditTailRow {
  seq: number;
  ts: number;
  event: string;
  call_id: string | null;
  agent: string | null;
  decision: string | null;
  duration_ms: number | null;
  detail: string | null;
}

/** Decided calls and refusals of one agent in a time window (`/agents status`). */
export interface AgentActivity {
  agent: string;
  calls: number;
  denials: number;
}

/** A released call (`call.decided` allow or approve) that has no `call.completed` row. */
export interface OpenCall {
  seq: number;
  ts: number;
  call_id: string;
  agent: string | null;
  owner: string | null;
  server: string | null;
  tool: string | null;
  decision: string;
}

/** Which `call.decided` row a drill waits for. */
export interface DecidedCallMatch {
  agent: string;
  /** The tool as the agent named it and its bare name: rows may hold either. */
  tools: readonly [string, string];
  decision: string;
}

/**
 * The read side of the audit table for every module but audit/ itself. The
 * audit module owns the table; control/ and slack/ ask these questions by
 * name instead of writing SQL against it, so the storage behind them can
 * change without touching its readers.
 */
export class AuditReader {
  readonly #db: Db;
  readonly #head: Statement<[], { seq: number }>;
  readonly #tail: Statement<[number, number], AuditTailRow>;
  readonly #firstDecided: Statement<[number, string, string, string, string], { seq: number }>;
  readonly #activity: Statement<[number, string | null, string | null], AgentActivity>;
  readonly #open: Statement<[number, number], OpenCall>;
  readonly #completed: Statement<[string], { one: number }>;
  readonly #haltedSince: Statement<[number, string], { one: number }>;

  constructor(db: Db) {
    this.#db = db;
    this.#head = db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM audit');
    this.#tail = db.prepare(
      'SELECT seq, ts, event, call_id, agent, decision, duration_ms, detail FROM audit WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    this.#firstDecided = db.prepare(
      "SELECT seq FROM audit WHERE seq > ? AND event = 'call.decided' AND decision = ? AND agent = ? AND tool IN (?, ?) ORDER BY seq LIMIT 1",
    );
    this.#activity = db.prepare(
      `SELECT agent,
              sum(CASE WHEN event = 'call.decided' THEN 1 ELSE 0 END) AS calls,
              sum(CASE WHEN event = 'call.decided' AND decision IN ('deny', 'denied', 'halted') THEN 1 ELSE 0 END) AS denials
         FROM audit WHERE ts >= ? AND agent IS NOT NULL AND (CAST(? AS TEXT) IS NULL OR agent = ?) GROUP BY agent`,
    );
    this.#open = db.prepare(
      `SELECT d.seq, d.ts, d.call_id, d.agent, d.owner, d.server, d.tool, d.decision
         FROM audit d
        WHERE d.event = 'call.decided' AND d.decision IN ('allow', 'approve') AND d.call_id IS NOT NULL
          AND d.ts >= ? AND d.ts < ?
          AND NOT EXISTS (SELECT 1 FROM audit c WHERE c.call_id = d.call_id AND c.event = 'call.completed')
        ORDER BY d.seq`,
    );
    this.#completed = db.prepare("SELECT 1 AS one FROM audit WHERE call_id = ? AND event = 'call.completed' LIMIT 1");
    this.#haltedSince = db.prepare(
      "SELECT 1 AS one FROM audit WHERE event = 'control.halt' AND ts >= ? AND (agent IS NULL OR agent = ?) LIMIT 1",
    );
  }

  /** Whether the org or this agent was halted at or after `since` (resumed since or not). */
  haltedSince(agent: string, since: number): boolean {
    return this.#haltedSince.get(since, agent) !== undefined;
  }

  /** seq of the newest row, 0 for an empty trail. */
  headSeq(): number {
    return this.#head.get()!.seq;
  }

  /** Rows after `afterSeq`, oldest first, at most `limit` of them. */
  tail(afterSeq: number, limit = 5000): AuditTailRow[] {
    return this.#tail.all(afterSeq, limit);
  }

  /** seq of the first `call.decided` row after `afterSeq` that matches, if any. */
  firstDecidedAfter(afterSeq: number, match: DecidedCallMatch): number | undefined {
    return this.#firstDecided.get(afterSeq, match.decision, match.agent, match.tools[0], match.tools[1])?.seq;
  }

  /** Per agent, calls decided and refused since `since`; one agent when `only` is given. */
  activitySince(since: number, only?: string): AgentActivity[] {
    return this.#activity.all(since, only ?? null, only ?? null);
  }

  /** Calls released in [since, before) whose completion was never written, oldest first. */
  openCalls(since: number, before: number): OpenCall[] {
    return this.#open.all(since, before);
  }

  /** Whether the call's `call.completed` row exists. */
  hasCompletion(callId: string): boolean {
    return this.#completed.get(callId) !== undefined;
  }

  /** An /audit query (see query.ts), newest first, one page. */
  query(query: AuditQuery, options: { before?: number | undefined } = {}): QueryPage {
    return runQuery(this.#db, query, options);
  }
}
