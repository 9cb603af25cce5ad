import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { systemClock, type Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { Db, Statement } from '../store/db.ts';

/** How often a replica proves it is alive. */
export const DEFAULT_HEARTBEAT_MS = 2_000;
/** How long without a heartbeat before a replica is dead for everyone: several missed beats, not one slow one. */
export const DEFAULT_LEASE_MS = 10_000;
/** Reaped rows are kept this long (who closed whom is worth a look after an incident), then deleted. */
const REAPED_KEPT_MS = 7 * 86_400_000;

/** A Warden process sharing the database, as its row says. */
export interface ReplicaRecord {
  id: string;
  host: string;
  pid: number;
  startedAt: number;
  heartbeatAt: number;
  leaseMs: number;
  stoppedAt?: number | undefined;
}

interface ReplicaRow {
  id: string;
  host: string;
  pid: number;
  started_at: number;
  heartbeat_at: number;
  lease_ms: number;
  stopped_at: number | null;
}

export interface ReplicaRegistryOptions {
  /** Default: `replicaId()`. It is the process id approvals and held calls are stamped with. */
  id?: string | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  heartbeatMs?: number | undefined;
  leaseMs?: number | undefined;
}

/** `host:pid:random`: the random part tells a process from an earlier one that had the same pid. */
export function replicaId(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

function toRecord(row: ReplicaRow): ReplicaRecord {
  return {
    id: row.id,
    host: row.host,
    pid: row.pid,
    startedAt: row.started_at,
    heartbeatAt: row.heartbeat_at,
    leaseMs: row.lease_ms,
    stoppedAt: row.stopped_at ?? undefined,
  };
}

/**
 * Whether a replica is dead, from its row alone (pure): it said it stopped,
 * or its lease ran out. Its own lease counts, so a replica configured with a
 * longer one is not declared dead by a peer with a shorter one.
 */
export function leaseExpired(replica: Pick<ReplicaRecord, 'heartbeatAt' | 'leaseMs' | 'stoppedAt'>, now: number) {
  return replica.stoppedAt !== undefined || replica.heartbeatAt + replica.leaseMs < now;
}

/** Whether a pid on this host is running (EPERM: it is, as another user). */
function pidRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Owns the `replicas` table: each Warden process sharing the database
 * registers, heartbeats, and says when it stops. "Is that process alive" is
 * answered here for every host, by its lease, not by a pid only meaningful
 * on the host that made it. A dead replica is claimed by one survivor
 * (compare-and-set), which closes what it left behind (`onDead`).
 */
export class ReplicaRegistry {
  readonly id: string;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #stmts: {
    insert: Statement;
    beat: Statement;
    stop: Statement;
    get: Statement<[string], ReplicaRow>;
    unreaped: Statement<[], ReplicaRow>;
    reap: Statement;
    prune: Statement;
    live: Statement<[], ReplicaRow>;
  };
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #declaredDead = false;

  constructor(db: Db, options: ReplicaRegistryOptions = {}) {
    this.id = options.id ?? replicaId();
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger();
    this.heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    const columns = 'id, host, pid, started_at, heartbeat_at, lease_ms, stopped_at';
    this.#stmts = {
      insert: db.prepare(`INSERT INTO replicas (id, host, pid, started_at, heartbeat_at, lease_ms)
        VALUES (@id, @host, @pid, @now, @now, @leaseMs)`),
      // A replica already reaped stays dead: what it held was closed by a survivor.
      beat: db.prepare('UPDATE replicas SET heartbeat_at = @now WHERE id = @id AND reaped_by IS NULL'),
      stop: db.prepare('UPDATE replicas SET stopped_at = @now, heartbeat_at = @now WHERE id = @id'),
      get: db.prepare(`SELECT ${columns} FROM replicas WHERE id = ?`),
      unreaped: db.prepare(`SELECT ${columns} FROM replicas WHERE reaped_by IS NULL ORDER BY started_at`),
      reap: db.prepare(`UPDATE replicas SET reaped_by = @by, reaped_at = @now
        WHERE id = @id AND reaped_by IS NULL AND (stopped_at IS NOT NULL OR heartbeat_at + lease_ms < @now)`),
      prune: db.prepare('DELETE FROM replicas WHERE reaped_at IS NOT NULL AND reaped_at < ?'),
      live: db.prepare(
        `SELECT ${columns} FROM replicas WHERE reaped_by IS NULL AND stopped_at IS NULL ORDER BY started_at`,
      ),
    };
  }

  /** Adds this process's row. Called once, before anything this process owns is written. */
  register(): void {
    this.#stmts.insert.run({
      id: this.id,
      host: hostname(),
      pid: process.pid,
      now: this.#clock.now(),
      leaseMs: this.leaseMs,
    });
  }

  /**
   * Moves this replica's lease forward. False when survivors already declared
   * it dead (it stalled past its lease): what it held was closed, and it is
   * logged loudly, since its own calls may now be recorded twice.
   */
  heartbeat(): boolean {
    const alive = this.#stmts.beat.run({ id: this.id, now: this.#clock.now() }).changes === 1;
    if (!alive && !this.#declaredDead) {
      this.#declaredDead = true;
      this.#logger.error(
        { replica: this.id },
        'this Warden missed its lease and was declared dead by another replica; restart it',
      );
    }
    return alive;
  }

  /**
   * Whether the process named `processId` may still be running: true or false
   * when the table knows it (its lease; on this host also its pid, so a
   * crashed one is dead at once), undefined when it has no row (a process
   * from before replicas were tracked, or not a Warden serving calls).
   */
  alive(processId: string | undefined): boolean | undefined {
    if (!processId) return false;
    if (processId === this.id) return true;
    const row = this.#stmts.get.get(processId);
    if (!row) return undefined;
    const replica = toRecord(row);
    if (leaseExpired(replica, this.#clock.now())) return false;
    if (replica.host === hostname() && !pidRunning(replica.pid)) return false;
    return true;
  }

  /** Replicas that have not stopped and were not declared dead, oldest first. */
  live(): ReplicaRecord[] {
    return this.#stmts.live.all().map(toRecord);
  }

  /**
   * Claims every dead replica nobody has claimed yet, one compare-and-set
   * each, so one survivor closes each. Dead = lease expired or stopped, or on
   * this host a pid that is gone.
   */
  claimDead(): ReplicaRecord[] {
    const now = this.#clock.now();
    const claimed: ReplicaRecord[] = [];
    for (const row of this.#stmts.unreaped.all()) {
      if (row.id === this.id) continue;
      const replica = toRecord(row);
      const gone = leaseExpired(replica, now) || (replica.host === hostname() && !pidRunning(replica.pid));
      if (!gone) continue;
      // A pid found gone before the lease ran out: the claim's own condition is the lease, so pass the
      // time at which it has run out (the row is dead either way; this only makes the CAS accept it).
      const at = Math.max(now, replica.heartbeatAt + replica.leaseMs + 1);
      if (this.#stmts.reap.run({ id: replica.id, by: this.id, now: at }).changes === 1) claimed.push(replica);
    }
    this.#stmts.prune.run(now - REAPED_KEPT_MS);
    return claimed;
  }

  /**
   * Heartbeats every `heartbeatMs` and, on each beat, claims dead replicas and
   * hands them to `onDead` (which closes what they left). A beat that fails
   * (the database is away) is logged and retried next time.
   */
  start(onDead: (dead: ReplicaRecord[]) => Promise<void>): void {
    if (this.#timer) return;
    const tick = async () => {
      if (this.#ticking) return;
      this.#ticking = true;
      try {
        this.heartbeat();
        const dead = this.claimDead();
        if (dead.length > 0) {
          this.#logger.warn(
            { replicas: dead.map((r) => r.id) },
            'replicas whose lease expired: closing what they left',
          );
          await onDead(dead);
        }
      } catch (err) {
        this.#logger.warn({ err: describeError(err) }, 'replica heartbeat failed');
      } finally {
        this.#ticking = false;
      }
    };
    this.#timer = this.#clock.setInterval(() => void tick(), this.heartbeatMs);
    this.#timer.unref?.();
    void tick();
  }

  /** Stops the heartbeat and marks this replica stopped, so a survivor takes over its deferred calls at once. */
  stop(): void {
    if (this.#timer) this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
    try {
      this.#stmts.stop.run({ id: this.id, now: this.#clock.now() });
    } catch (err) {
      // The lease expires by itself; a failed mark only delays the takeover.
      this.#logger.warn({ err: describeError(err) }, 'could not mark this replica stopped');
    }
  }
}
