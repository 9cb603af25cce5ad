import { systemClock, type Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { AuditReader } from '../audit/reader.ts';
import type { ApprovalStore } from '../approvals/store.ts';
import type { AuditSink } from '../audit/types.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';
import type { ReplicaRecord } from './replicas.ts';

/** The `reason` of a recovered completion: what a compliance reader sees in place of a result. */
export const ABANDONED_CALL_REASON = 'Warden stopped before the call finished';

/** Floor of the grace window: well past any upstream timeout a sane policy sets. */
export const DEFAULT_RECOVERY_GRACE_MS = 10 * 60_000;

const DAY = 86_400_000;

export interface CallRecoveryOptions {
  /** The audit table is audit/'s: released calls without a completion are asked of its reader. */
  auditReader: Pick<AuditReader, 'openCalls' | 'hasCompletion'>;
  /** Held calls: whether the approval is still pending or was approved late. */
  approvals: Pick<ApprovalStore, 'latestForCall'>;
  audit: AuditSink;
  /**
   * Widens the grace window to the longest server `timeout_ms`, so a call
   * another live process is still allowed to run is never declared dead.
   */
  policy?: PolicySource | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** When this process started. Default: now. */
  startedAt?: number | undefined;
  /** A call is presumed dead only when it was released this long before `startedAt`. Default: see `recoveryGraceMs`. */
  graceMs?: number | undefined;
  /**
   * Whether a call is a held call that a Warden will still run (approved, or
   * waiting, and kept to run after a restart: ApprovalService.heldCalls):
   * such a call is not dead, whenever it was decided.
   */
  stillToRun?: ((callId: string) => boolean) | undefined;
  /**
   * How far back to look. Every start runs recovery, so older rows were seen
   * by an earlier start; bounding the scan keeps start-up cheap on a large
   * audit table. Default 30 days.
   */
  lookbackMs?: number | undefined;
}

export interface RecoveredCall {
  callId: string;
  agent: string | null;
  server: string | null;
  tool: string | null;
  /** seq of the `call.decided` row left without a completion. */
  decidedSeq: number;
}

/** max(10 min, the longest upstream timeout in the policy). */
export function recoveryGraceMs(policy?: PolicySource): number {
  if (!policy) return DEFAULT_RECOVERY_GRACE_MS;
  const servers = Object.values(policyGetter(policy)().servers);
  return Math.max(DEFAULT_RECOVERY_GRACE_MS, ...servers.map((s) => s.timeoutMs));
}

/**
 * At start-up, closes the audit story of calls whose process died mid-call:
 * a `call.decided` row (allow, or approve) with no `call.completed` gets one
 * with decision `abandoned`, so every decided call ends in the trail.
 *
 * Several processes may share the database, and a row carries no process id,
 * so "dead" is inferred: the call was released (decided, or for a held call,
 * approved) more than a grace window before this process started, and a held
 * call is not still waiting for a human (its approval is not pending;
 * `ApprovalService.recover()` runs first and abandons the orphaned ones).
 * A live call that keeps reporting progress can outlast any window (the
 * upstream timeout restarts on progress); the grace is sized for calls that
 * do not, and the row's detail says it was inferred (`recovered: true`).
 * Idempotent: a recovered call has its completion and is not seen again.
 * Two processes starting in the same instant could both recover one call;
 * the second row is a duplicate of the first, not a contradiction.
 */
export async function recoverAbandonedCalls(opts: CallRecoveryOptions): Promise<RecoveredCall[]> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? silentLogger();
  const startedAt = opts.startedAt ?? clock.now();
  const graceMs = opts.graceMs ?? recoveryGraceMs(opts.policy);
  const cutoff = startedAt - graceMs;
  const since = cutoff - (opts.lookbackMs ?? 30 * DAY);
  const rows = opts.auditReader.openCalls(since, cutoff);

  const recovered: RecoveredCall[] = [];
  for (const row of rows) {
    if (row.decision === 'approve') {
      const a = opts.approvals.latestForCall(row.call_id);
      // Still waiting for a human in a live process.
      if (a?.status === 'pending') continue;
      // Approved late, so it may have only just started running upstream. (Refused, expired or
      // abandoned approvals never run: their missing completion means the process is gone.)
      if (a?.status === 'approved' && (a.decidedAt ?? row.ts) >= cutoff) continue;
    }
    if (opts.stillToRun?.(row.call_id)) continue;
    // Re-checked per row, narrowing the window in which another starting process recovers the same call.
    if (opts.auditReader.hasCompletion(row.call_id)) continue;
    try {
      await opts.audit.append({
        event: 'call.completed',
        callId: row.call_id,
        agent: row.agent ?? undefined,
        owner: row.owner ?? undefined,
        server: row.server ?? undefined,
        tool: row.tool ?? undefined,
        decision: 'abandoned',
        reason: ABANDONED_CALL_REASON,
        // No durationMs: nobody knows how long it ran, and a made-up one would feed the long-run anomaly rule.
        detail: { recovered: true, decidedSeq: row.seq, decidedAt: row.ts, graceMs },
        ts: clock.now(),
      });
      recovered.push({
        callId: row.call_id,
        agent: row.agent,
        server: row.server,
        tool: row.tool,
        decidedSeq: row.seq,
      });
    } catch (err) {
      // One row that cannot be written must not stop start-up or the others; the next start retries it.
      logger.error({ err: describeError(err), callId: row.call_id }, 'recording an abandoned call failed');
    }
  }
  return recovered;
}

export interface DeadReplicaRecoveryOptions {
  auditReader: Pick<AuditReader, 'openCalls' | 'hasCompletion'>;
  approvals: Pick<ApprovalStore, 'latestForCall'>;
  audit: AuditSink;
  /** The replica a survivor claimed (ReplicaRegistry.claimDead). */
  replica: Pick<ReplicaRecord, 'id' | 'startedAt' | 'heartbeatAt' | 'leaseMs'>;
  /**
   * Whether another, live Warden still has the call: a deferred held call
   * taken over (pending, or approved and not yet run), or one it runs.
   */
  stillLive?: ((callId: string) => boolean) | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
}

/** The replica a call.decided row names in its detail, if any. */
function replicaOf(detail: string | null): string | undefined {
  if (!detail) return undefined;
  try {
    const parsed = JSON.parse(detail) as { replica?: unknown };
    return typeof parsed.replica === 'string' ? parsed.replica : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Closes the calls a replica whose lease expired left running: its
 * `call.decided` rows (stamped with its id) without a completion get a
 * `call.completed` abandoned row (detail.code abandoned, why:
 * replica_lease_expired). Unlike start-up recovery no grace window is needed:
 * the rows say whose calls they are, and that process is dead for everyone.
 * A held call another replica took over is not its any more (`stillLive`).
 */
export async function recoverDeadReplicaCalls(opts: DeadReplicaRecoveryOptions): Promise<RecoveredCall[]> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? silentLogger();
  const { replica } = opts;
  // Its calls were decided while it lived; the upper bound has room for clocks a little apart across hosts.
  const rows = opts.auditReader
    .openCalls(replica.startedAt - replica.leaseMs, clock.now() + 1)
    .filter((row) => replicaOf(row.detail) === replica.id);
  const recovered: RecoveredCall[] = [];
  for (const row of rows) {
    if (row.decision === 'approve' && opts.approvals.latestForCall(row.call_id)?.status === 'pending') continue;
    if (opts.stillLive?.(row.call_id)) continue;
    if (opts.auditReader.hasCompletion(row.call_id)) continue;
    try {
      await opts.audit.append({
        event: 'call.completed',
        callId: row.call_id,
        agent: row.agent ?? undefined,
        owner: row.owner ?? undefined,
        server: row.server ?? undefined,
        tool: row.tool ?? undefined,
        decision: 'abandoned',
        reason: ABANDONED_CALL_REASON,
        detail: {
          recovered: true,
          code: 'abandoned',
          why: 'replica_lease_expired',
          replica: replica.id,
          lastHeartbeat: replica.heartbeatAt,
          leaseMs: replica.leaseMs,
          decidedSeq: row.seq,
          decidedAt: row.ts,
        },
        ts: clock.now(),
      });
      recovered.push({
        callId: row.call_id,
        agent: row.agent,
        server: row.server,
        tool: row.tool,
        decidedSeq: row.seq,
      });
    } catch (err) {
      // The replica stays claimed; start-up recovery (grace window) still closes the call later.
      logger.error({ err: describeError(err), callId: row.call_id }, "recording a dead replica's call failed");
    }
  }
  return recovered;
}
