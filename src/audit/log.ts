import { closeSync, fsync, fsyncSync, openSync } from 'node:fs';
import { clearImmediate, clearTimeout, setImmediate, setTimeout } from 'node:timers';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { dialectOf, type Db, type Statement } from '../store/db.ts';
import { chainWriter, type ChainHead, type ChainRow, type ChainWriter } from './chain.ts';
import { DEFAULT_MAX_RESULT_CHARS, redactString, serialiseRedacted, truncateText, wellFormed } from './redact.ts';
import type { AppendOptions, AuditEntry, AuditSink, SyncOptions } from './types.ts';
import type { WriterSettings } from './writer-protocol.ts';
import { WriterLink, type BatchOutcome } from './writer-thread.ts';
import { PgChainCommitter } from './pg-chain.ts';
import type { PgDb } from '../store/pg-db.ts';

/** Where commits run: on the calling thread (default) or on the audit writer thread. */
export type AuditWriter = 'worker' | 'inline';

export interface AuditLogOptions {
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** Cap on a stored result's JSON text; longer results are cut with a marker. Default 16 KiB. */
  maxResultChars?: number | undefined;
  /** Cap on stored args and detail JSON text. Default 64 KiB. */
  maxArgsChars?: number | undefined;
  /** Flush at once when this many rows are pending instead of waiting for setImmediate. Default 1000. */
  maxBatch?: number | undefined;
  /**
   * 'inline' (default): commits run on the calling thread, and the fsync of
   * each COMMIT blocks its event loop. 'worker': commits run on the shared
   * audit writer thread (writer-thread.ts), so the loop keeps serving while
   * the disk syncs; rows are written inline while the thread starts, or if
   * it cannot. Same guarantees either way. 'worker' frees 20–30% of the
   * gateway's loop time under load but adds a thread round trip (~0.1 ms) to
   * each commit, and on a 2-core machine already busy with agents and
   * upstreams it did not raise calls/s (bench/audit.ts, bench/gateway.ts), so
   * it is opt-in: for a gateway with spare cores or a disk with slow fsync.
   * An in-memory or read-only database is always inline (another connection
   * cannot share it).
   */
  writer?: AuditWriter | undefined;
  /**
   * Rows appended with `sync: false` are committed without waiting for
   * fsync; if no synced commit follows within this many milliseconds, the
   * log fsyncs the WAL itself. Default 20.
   */
  syncWithinMs?: number | undefined;
}

export type { ChainHead };

interface Pending {
  row: ChainRow;
  /** The caller waits for stable storage (AppendOptions.sync). */
  sync: boolean;
  resolve: (pos: ChainHead) => void;
  reject: (err: unknown) => void;
}

const DEFAULT_MAX_ARGS_CHARS = 64 * 1024;
const DEFAULT_MAX_BATCH = 1000;
const DEFAULT_SYNC_WITHIN_MS = 20;
/** A `quiet` fsync runs on the event loop only while each of the last RECENT_FSYNCS took at most this long: a slow disk must not hold the loop. */
export const LOOP_FSYNC_MAX_MS = 2;
export const RECENT_FSYNCS = 8;
/** PRAGMA synchronous values: below FULL a WAL commit does not fsync. */
const SYNC_NORMAL = 1;
const SYNC_FULL = 2;
/** How a batch was committed: fsynced, without its fsync (owed), or on a connection set below FULL. */
type CommitKind = 'synced' | 'relaxed' | 'unsynced';
const MAX_NAME_CHARS = 512;
const MAX_REASON_CHARS = 4096;

/**
 * The append-only, hash-chained audit trail with group commit.
 *
 * `append` redacts and serialises the entry at once (so later mutation by
 * the caller cannot change what is written), queues it, and resolves only
 * when the transaction holding it has committed. Rows queued in the same
 * tick share one `BEGIN IMMEDIATE` transaction — one fsync for the batch —
 * which reads the head inside the transaction, so several processes sharing
 * the file still build one chain.
 *
 * With `writer: 'worker'` the transaction runs on the audit writer thread
 * (see writer-thread.ts), on a second connection to the same file that
 * mirrors this connection's busy_timeout and synchronous settings; one batch
 * at a time is with the thread, and rows appended meanwhile form the next
 * one. Either way a promise resolves only after its row's transaction
 * committed, and a failed transaction rejects every promise in it and writes
 * none of its rows.
 *
 * On PostgreSQL every group goes to the server as one statement on a
 * connection of the log's own (pg-chain.ts), awaited without blocking the
 * event loop; one group at a time, like the writer thread. `writer` and the
 * fsync settings are SQLite's: a PostgreSQL COMMIT is durable on the server.
 *
 * The Db stays the caller's: `close()` flushes and stops accepting rows but
 * does not close the connection (it ends the log's own PostgreSQL one).
 */
export class AuditLog implements AuditSink {
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;
  readonly #maxResultChars: number;
  readonly #maxArgsChars: number;
  readonly #maxBatch: number;
  readonly #chain: ChainWriter;
  readonly #link: WriterLink | undefined;
  /** PostgreSQL: group commits awaited on a connection of their own (pg-chain.ts), never blocking the loop. */
  readonly #pgChain: PgChainCommitter | undefined;
  readonly #db: Db;
  readonly #readBusyTimeout: Statement<[], number> | undefined;
  readonly #readSynchronous: Statement<[], number> | undefined;
  /** Prepared `PRAGMA synchronous = n`, by n: set twice per relaxed commit, and db.pragma() would compile it each time. */
  readonly #synchronousSetters = new Map<number, Statement<[]>>();
  /** The WAL file, when batches may skip their fsync (a file-backed database in WAL mode). */
  readonly #walFile: string | undefined;
  readonly #syncWithinMs: number;
  /** Relaxed commits so far, and how many of them are known to be on stable storage. */
  #relaxedCommits = 0;
  #syncedThrough = 0;
  #syncTimer: NodeJS.Timeout | undefined;
  #syncing: Promise<void> | undefined;
  #walSyncs = 0;
  #loopWalSyncs = 0;
  /** How long the last fsyncs of the WAL took (ms), newest last; none yet means not on the loop. */
  readonly #recentFsyncMs: number[] = [];
  #walFd: number | undefined;
  /**
   * Set for good when an fsync of the WAL fails. After an I/O error the OS
   * may have dropped the pages it could not write and marked them clean, so
   * a later fsync that succeeds proves nothing about them: the rows
   * committed since the last good sync are never reported durable again,
   * and no batch skips its own fsync any more (SQLite then reports faults
   * on the commit itself).
   */
  #durabilityLost: WardenError | undefined;
  /** close() has finished: no timer or fsync may touch the file again. */
  #finished = false;
  #pending: Pending[] = [];
  /** The last row appended and not yet settled: flush() waits for it. */
  #tail: Pending | undefined;
  /** A batch is with the writer thread: later rows wait here and go together when it settles. */
  #inFlight = false;
  // From node:timers, not the global: group commit is I/O scheduling, not
  // time, so a test that fakes timers must not stall every audit write.
  #scheduled: NodeJS.Immediate | undefined;
  #closed = false;

  constructor(db: Db, opts: AuditLogOptions = {}) {
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger;
    this.#maxResultChars = positiveInt(opts.maxResultChars, DEFAULT_MAX_RESULT_CHARS, 'maxResultChars');
    this.#maxArgsChars = positiveInt(opts.maxArgsChars, DEFAULT_MAX_ARGS_CHARS, 'maxArgsChars');
    this.#maxBatch = positiveInt(opts.maxBatch, DEFAULT_MAX_BATCH, 'maxBatch');
    const writer = opts.writer ?? 'inline';
    if (writer !== 'worker' && writer !== 'inline')
      throw new WardenError(
        'INVALID_INPUT',
        `AuditLog option writer must be 'worker' or 'inline', got ${String(writer)}`,
      );
    this.#syncWithinMs = positiveInt(opts.syncWithinMs, DEFAULT_SYNC_WITHIN_MS, 'syncWithinMs');
    this.#db = db;
    this.#chain = chainWriter(db);
    const file = sharableFile(db);
    // Read per batch: the settings this connection has now decide how a batch commits.
    this.#readSynchronous = file !== undefined ? db.prepare<[], number>('PRAGMA synchronous').pluck() : undefined;
    // Skipping a commit's fsync is safe only in WAL mode: the WAL is append-only, so a power
    // loss can cut its tail but not corrupt it, and any later fsync of it covers earlier commits.
    this.#walFile =
      file !== undefined && String(db.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal'
        ? `${file}-wal`
        : undefined;
    this.#pgChain =
      dialectOf(db) === 'postgres' && !db.readonly
        ? new PgChainCommitter(db as unknown as PgDb, (message) =>
            this.#logger?.warn({ err: message }, 'audit connection trouble'),
          )
        : undefined;
    if (writer === 'worker' && file !== undefined) {
      this.#readBusyTimeout = db.prepare<[], number>('PRAGMA busy_timeout').pluck();
      this.#link = new WriterLink(file, (message) =>
        this.#logger?.warn({ err: message }, 'audit writer thread trouble'),
      );
    }
  }

  /** Where the next batch will be committed: 'worker' once the writer thread is up, else 'inline'. */
  get writer(): AuditWriter {
    return this.#link?.usable() ? 'worker' : 'inline';
  }

  /** True while some committed rows (appended with `sync: false`) are not yet known to be on stable storage. */
  get syncPending(): boolean {
    return this.#syncedThrough < this.#relaxedCommits;
  }

  append(entry: AuditEntry, options?: AppendOptions): Promise<ChainHead> {
    if (this.#closed) return Promise.reject(new WardenError('AUDIT_WRITE_FAILED', 'audit log is closed'));
    let row: ChainRow;
    try {
      row = this.#prepare(entry);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<ChainHead>((resolve, reject) => {
      const p: Pending = { row, sync: options?.sync !== false, resolve, reject };
      this.#pending.push(p);
      this.#tail = p;
      if (this.#pending.length >= this.#maxBatch) this.#flushNow();
      else this.#scheduled ??= setImmediate(() => this.#flushNow());
    });
  }

  /** Commits everything queued so far; rejects if that batch failed. */
  flush(): Promise<void> {
    const last = this.#tail;
    if (last === undefined) return Promise.resolve();
    // Observe the last appended row: batches commit in order, so when it settles all have.
    const settled = new Promise<void>((resolve, reject) => {
      const { resolve: r0, reject: j0 } = last;
      last.resolve = (pos) => {
        r0(pos);
        resolve();
      };
      last.reject = (err) => {
        j0(err);
        reject(err);
      };
    });
    this.#flushNow();
    return settled;
  }

  /** How many times the log fsynced the WAL itself (commits that sync on their own are not counted). */
  get syncs(): number {
    return this.#walSyncs;
  }

  /** How many of those fsyncs ran on the event loop (see SyncOptions.quiet). */
  get loopSyncs(): number {
    return this.#loopWalSyncs;
  }

  /**
   * Brings every row committed so far to stable storage: resolves at once
   * if a synced commit or an fsync already covered them, else fsyncs the WAL
   * (off the event loop unless `quiet` says it may run on it; concurrent
   * callers share one fsync).
   */
  async sync(options: SyncOptions = {}): Promise<void> {
    const target = this.#relaxedCommits;
    while (this.#syncedThrough < target) {
      if (this.#durabilityLost) throw this.#durabilityLost;
      if (this.#syncing) {
        await this.#syncing;
        continue;
      }
      this.#cancelSyncTimer();
      const through = this.#relaxedCommits;
      this.#syncing = this.#fsyncWal(options.quiet === true)
        .then(
          () => {
            this.#syncedThrough = Math.max(this.#syncedThrough, through);
            // Rows committed while this fsync ran are owed one too.
            if (this.syncPending) this.#scheduleSync(this.#syncWithinMs);
          },
          (err: unknown) => {
            this.#durabilityLost ??= new WardenError(
              'AUDIT_WRITE_FAILED',
              `the audit trail could not be fsynced (${describeError(err)}): rows committed since the last good sync may not survive a power loss`,
              { cause: err },
            );
            this.#logger?.error(
              { err: describeError(err), rows: this.#relaxedCommits - this.#syncedThrough },
              'audit: fsync of the WAL failed; from now on every commit waits for its own fsync',
            );
            throw this.#durabilityLost;
          },
        )
        .finally(() => {
          this.#syncing = undefined;
        });
      await this.#syncing;
    }
  }

  /**
   * fsync of the WAL on libuv's thread pool, so the event loop keeps serving;
   * or, when the caller says the loop is quiet and fsyncs are fast, on the
   * loop in the next check phase: by then the caller's own I/O (a request
   * upstream) is with the kernel, and the fsync overlaps the wait for it.
   * The file stays open: SQLite keeps the same WAL file (resetting it in
   * place) for as long as any connection, this log's own included, is open.
   */
  #fsyncWal(quiet: boolean): Promise<void> {
    if (this.#finished) return Promise.reject(new WardenError('AUDIT_WRITE_FAILED', 'audit log is closed'));
    if (this.#walFd === undefined) {
      try {
        this.#walFd = openSync(this.#walFile!, 'r+');
      } catch (err) {
        // No WAL file: the last connection checkpointed it into the database (synced) and removed it.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Promise.resolve();
        return Promise.reject(err);
      }
    }
    const fd = this.#walFd;
    const onLoop = quiet && this.#recentFsyncMs.length > 0 && Math.max(...this.#recentFsyncMs) <= LOOP_FSYNC_MAX_MS;
    return new Promise<void>((resolve, reject) => {
      let started = this.#clock.monotonic();
      const done = (err: unknown) => {
        // On the pool this includes the wait for a thread: it can only err towards the pool.
        this.#recentFsyncMs.push(this.#clock.monotonic() - started);
        if (this.#recentFsyncMs.length > RECENT_FSYNCS) this.#recentFsyncMs.shift();
        if (err) return reject(err);
        this.#walSyncs++;
        if (onLoop) this.#loopWalSyncs++;
        resolve();
      };
      if (!onLoop) return fsync(fd, done);
      setImmediate(() => {
        started = this.#clock.monotonic();
        try {
          fsyncSync(fd);
        } catch (err) {
          return done(err);
        }
        done(null);
      });
    });
  }

  /** Flushes and syncs, then refuses further appends and lets go of the writer thread (stopping it if no log is left). */
  async close(): Promise<void> {
    this.#closed = true;
    try {
      await this.flush();
      await this.sync();
    } finally {
      this.#cancelSyncTimer();
      // A timer's fsync may still be running on the thread pool: let it end before its descriptor goes.
      await this.#syncing?.catch(() => {});
      this.#finished = true;
      if (this.#walFd !== undefined) closeSync(this.#walFd);
      this.#walFd = undefined;
      await this.#link?.close();
      await this.#pgChain?.close();
    }
  }

  /** The committed head of the chain as the database has it now (all processes), seq 0 when empty. */
  head(): ChainHead {
    return this.#chain.head();
  }

  #flushNow(): void {
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled);
      this.#scheduled = undefined;
    }
    // One batch at a time with the thread: waking it costs more than the
    // message (~50 µs a round trip on a busy VM), and rows that wait for the
    // reply simply join the next, larger transaction.
    if (this.#inFlight) return;
    if (this.#pending.length === 0) return;
    // On PostgreSQL a group is one statement: bounded, so a backlog that built up behind a
    // slow commit goes as several groups rather than one too large to send.
    const take = this.#pgChain ? groupSize(this.#pending, this.#maxBatch) : this.#pending.length;
    const batch = this.#pending.splice(0, take);
    let written: { firstSeq: number; hashes: string[] };
    try {
      // Settings are read before writing or handing off: a closed connection fails here, as a write would.
      const synchronous = this.#readSynchronous?.get() ?? SYNC_FULL;
      // Nobody in the batch waits for stable storage: commit without the fsync (see AppendOptions).
      const relaxed =
        this.#walFile !== undefined &&
        this.#durabilityLost === undefined &&
        synchronous >= SYNC_FULL &&
        !batch.some((p) => p.sync);
      const kind: CommitKind = relaxed ? 'relaxed' : synchronous >= SYNC_FULL ? 'synced' : 'unsynced';
      if (this.#pgChain) {
        if (!this.#db.open) throw new WardenError('STORE_UNAVAILABLE', 'the database connection is closed');
        this.#inFlight = true;
        this.#pgChain.write(batch.map((p) => p.row)).then(
          (written) => {
            this.#inFlight = false;
            this.#resolveAll(batch, written);
            this.#flushNow();
          },
          (err: unknown) => {
            this.#inFlight = false;
            this.#fail(batch, batch.length, describeError(err), err);
            this.#flushNow();
          },
        );
        return;
      }
      if (this.#link?.usable()) {
        const settings: WriterSettings = {
          busyTimeout: this.#readBusyTimeout!.get()!,
          synchronous: relaxed ? SYNC_NORMAL : synchronous,
        };
        this.#link.submit(
          batch.map((p) => p.row),
          settings,
          (result) => {
            this.#inFlight = false;
            this.#settle(batch, result, kind);
            this.#flushNow();
          },
        );
        this.#inFlight = true;
        return;
      }
      const rows = batch.map((p) => p.row);
      if (relaxed) {
        // Only for this transaction: everything else on the connection keeps its setting.
        this.#setSynchronous(SYNC_NORMAL);
        try {
          written = this.#chain.write(rows);
        } finally {
          this.#setSynchronous(synchronous);
        }
      } else written = this.#chain.write(rows);
      this.#committed(kind);
    } catch (err) {
      this.#fail(batch, batch.length, describeError(err), err);
      return;
    }
    this.#resolveAll(batch, written);
  }

  #settle(batch: readonly Pending[], outcome: BatchOutcome, kind: CommitKind): void {
    if (!outcome.ok) {
      const cause = Object.assign(new Error(outcome.message), outcome.code !== undefined ? { code: outcome.code } : {});
      this.#fail(batch, outcome.rows, outcome.message, cause);
      return;
    }
    this.#committed(kind);
    this.#resolveAll(batch, outcome);
  }

  /**
   * Tracks what is on stable storage. A synced commit fsyncs the whole WAL,
   * so it covers every relaxed commit before it (unless an fsync already
   * failed: see durabilityLost); after a relaxed one, the WAL is synced
   * within syncWithinMs unless a synced commit comes first. A commit on a
   * connection set below FULL covers nothing.
   */
  #committed(kind: CommitKind): void {
    if (kind === 'unsynced') return;
    if (kind === 'synced') {
      if (this.#durabilityLost === undefined) this.#syncedThrough = this.#relaxedCommits;
      this.#cancelSyncTimer();
      return;
    }
    this.#relaxedCommits++;
    this.#scheduleSync(this.#syncWithinMs);
  }

  #cancelSyncTimer(): void {
    if (this.#syncTimer === undefined) return;
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
  }

  #scheduleSync(ms: number): void {
    if (this.#syncTimer !== undefined || this.#finished || this.#durabilityLost) return;
    // From node:timers, like group commit: this is I/O scheduling, and a test
    // that fakes the clock must not stop rows from reaching the disk.
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = undefined;
      // A failure is logged and made sticky by sync() itself; there is nothing to retry.
      this.sync().catch(() => {});
    }, ms);
    // An exiting process has nothing left to lose but power; close() syncs anyway.
    this.#syncTimer.unref?.();
  }

  /** Row i of the batch landed at seq firstSeq + i. */
  #resolveAll(batch: readonly Pending[], written: { firstSeq: number; hashes: readonly string[] }): void {
    for (let i = 0; i < batch.length; i++)
      this.#settled(batch[i]!).resolve({ seq: written.firstSeq + i, hash: written.hashes[i]! });
  }

  #fail(batch: readonly Pending[], rows: number, message: string, cause: unknown): void {
    const failure = new WardenError('AUDIT_WRITE_FAILED', `audit write of ${rows} row(s) failed: ${message}`, {
      cause,
      details: { rows },
    });
    this.#logger?.error({ err: message, rows }, 'audit batch failed; every caller in it is told');
    for (const p of batch) this.#settled(p).reject(failure);
  }

  #setSynchronous(level: number): void {
    // Prepared on first use, right before it runs: SQLite applies this PRAGMA
    // when it compiles it (and again on each run), so preparing every level
    // up front would leave the connection at whichever came last.
    let set = this.#synchronousSetters.get(level);
    if (!set) {
      set = this.#db.prepare<[]>(`PRAGMA synchronous = ${Math.trunc(level)}`);
      this.#synchronousSetters.set(level, set);
    }
    set.run();
  }

  #settled(p: Pending): Pending {
    if (this.#tail === p) this.#tail = undefined;
    return p;
  }

  #prepare(e: AuditEntry): ChainRow {
    if (e === null || typeof e !== 'object') throw invalid('entry', 'must be an object');
    if (typeof e.event !== 'string' || e.event.trim() === '') throw invalid('event', 'must be a non-empty string');
    const ts = e.ts ?? this.#clock.now();
    if (typeof ts !== 'number' || !Number.isFinite(ts))
      throw invalid('ts', 'must be a finite number of epoch milliseconds');
    const duration = e.durationMs;
    if (
      duration !== undefined &&
      duration !== null &&
      (typeof duration !== 'number' || !Number.isFinite(duration) || duration < 0)
    ) {
      throw invalid('durationMs', 'must be a non-negative finite number');
    }
    return {
      ts: Math.round(ts),
      event: name(e.event, 'event'),
      call_id: optName(e.callId, 'callId'),
      agent: optName(e.agent, 'agent'),
      owner: optName(e.owner, 'owner'),
      server: optName(e.server, 'server'),
      tool: optName(e.tool, 'tool'),
      args: serialiseRedacted(e.args, this.#maxArgsChars),
      result: serialiseRedacted(e.result, this.#maxResultChars),
      decision: optName(e.decision, 'decision'),
      reason: optText(e.reason, 'reason', MAX_REASON_CHARS),
      approver: optName(e.approver, 'approver'),
      duration_ms: duration === undefined || duration === null ? null : Math.round(duration),
      detail: serialiseRedacted(e.detail, this.#maxArgsChars),
    };
  }
}

/** Text a PostgreSQL group may carry (its rows' JSON, about); a single larger row goes alone. */
const MAX_GROUP_CHARS = 16 * 1024 * 1024;
/** Column names, hashes and numbers of one row in the group's JSON, about. */
const ROW_OVERHEAD_CHARS = 400;

/** How many of the pending rows, from the first, make the next group: at most maxBatch, and about MAX_GROUP_CHARS. */
function groupSize(pending: readonly Pending[], maxBatch: number): number {
  let chars = 0;
  let n = 0;
  for (const { row } of pending) {
    if (n >= maxBatch) break;
    chars +=
      ROW_OVERHEAD_CHARS +
      (row.args?.length ?? 0) +
      (row.result?.length ?? 0) +
      (row.detail?.length ?? 0) +
      (row.reason?.length ?? 0);
    if (n > 0 && chars > MAX_GROUP_CHARS) break;
    n++;
  }
  return n;
}

/** The file behind `db` if another connection can open it: not in-memory, temporary or read-only. */
function sharableFile(db: Db): string | undefined {
  // PostgreSQL: no file, and every COMMIT is durable on the server (no WAL of ours to fsync).
  if (dialectOf(db) === 'postgres' || db.memory || db.readonly) return undefined;
  const list = db.pragma('database_list') as { name: string; file: string }[];
  const main = list.find((d) => d.name === 'main');
  return main?.file ? main.file : undefined;
}

function invalid(field: string, why: string): WardenError {
  return new WardenError('INVALID_INPUT', `audit entry field "${field}" ${why}`, { details: { field } });
}

function name(v: string, field: string): string {
  return optText(v, field, MAX_NAME_CHARS)!;
}

function optName(v: unknown, field: string): string | null {
  return optText(v, field, MAX_NAME_CHARS);
}

// Free text can carry an error message with a token in it: redact it too.
function optText(v: unknown, field: string, max: number): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw invalid(field, 'must be a string');
  // Cut first, then repair: a cut may leave half a surrogate pair. NUL becomes U+FFFD:
  // PostgreSQL text cannot hold it, and one NUL in an agent-chosen tool name would
  // otherwise fail the whole group commit, other agents' rows with it. The same on
  // SQLite, so a trail reads (and hashes) alike on both stores.
  return wellFormed(truncateText(redactString(v), max)).replaceAll('\u0000', '\uFFFD');
}

function positiveInt(v: number | undefined, dflt: number, field: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1)
    throw new WardenError('INVALID_INPUT', `AuditLog option ${field} must be a positive integer, got ${String(v)}`);
  return v;
}
