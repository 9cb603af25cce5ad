/** What callers hand to the audit log. Redaction happens inside `append`. */
export interface AuditEntry {
  /** e.g. call.decided, call.completed, auth.failed, approval.requested, approval.decided,
   *  approval.refused, control.halt, control.resume, drill.completed, pin.changed, pin.approved,
   *  anomaly, checkpoint */
  event: string;
  callId?: string | undefined;
  agent?: string | undefined;
  owner?: string | undefined;
  server?: string | undefined;
  tool?: string | undefined;
  args?: unknown;
  result?: unknown;
  /** allow | deny | approve | approved | rejected | expired | cancelled | abandoned | ok | error | halted … */
  decision?: string | undefined;
  reason?: string | undefined;
  approver?: string | undefined;
  durationMs?: number | undefined;
  detail?: Record<string, unknown> | undefined;
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
