import { z } from 'zod';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError, describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { dialectOf, type Db } from '../store/db.ts';
import type { AuditSink } from '../audit/types.ts';
import type { HaltCheck, HaltState } from './types.ts';

export interface KillSwitchOptions {
  db: Db;
  audit: AuditSink;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /**
   * How often to look for other processes' writes. SQLite: 50 ms keeps
   * propagation well inside 250 ms. PostgreSQL: 1 s, a fallback only; a halt
   * on another replica arrives by NOTIFY.
   */
  pollMs?: number | undefined;
}

/** Whether this process made the change or noticed another process's write. */
export interface HaltEventInfo {
  origin: 'local' | 'remote';
}

export type HaltListener = (state: HaltState, info: HaltEventInfo) => void;
export type ResumeListener = (
  resumed: { scope: 'org' | 'agent'; agent?: string | undefined; actor: string; at: number },
  info: HaltEventInfo,
) => void;

const agentName = z
  .string()
  .trim()
  .min(1, 'agent is required')
  .max(200)
  .regex(/^[\w.:-]+$/, 'agent may contain letters, digits, _ . : - only');

const haltSchema = z
  .object({
    scope: z.enum(['org', 'agent']),
    agent: agentName.optional(),
    reason: z.string().trim().max(1000).optional(),
    actor: z.string().trim().min(1, 'actor is required').max(200),
  })
  .refine((r) => r.scope === 'org' || r.agent !== undefined, {
    message: 'agent is required when scope is agent',
    path: ['agent'],
  });

export type HaltRequest = z.input<typeof haltSchema>;
export type ResumeRequest = {
  scope: 'org' | 'agent';
  agent?: string | undefined;
  actor: string;
  reason?: string | undefined;
};

interface Row {
  scope: string;
  halted: number;
  reason: string | null;
  actor: string | null;
  at: number;
}

const scopeKey = (scope: 'org' | 'agent', agent?: string) => (scope === 'org' ? 'org' : `agent:${agent}`);

function rowToState(row: Row): HaltState {
  return row.scope === 'org'
    ? { scope: 'org', reason: row.reason ?? '', actor: row.actor ?? '', at: row.at }
    : {
        scope: 'agent',
        agent: row.scope.slice('agent:'.length),
        reason: row.reason ?? '',
        actor: row.actor ?? '',
        at: row.at,
      };
}

function parseRequest(input: unknown): z.output<typeof haltSchema> {
  const parsed = haltSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; ');
    throw new WardenError('INVALID_INPUT', `invalid halt/resume request: ${problems}`);
  }
  return parsed.data;
}

/** On PostgreSQL the poll reads control_state itself (no data_version): a fallback for a lost LISTEN. */
const PG_FALLBACK_POLL_MS = 1000;

/**
 * The kill switch. Truth lives in `control_state`; each process keeps a copy
 * in memory so `check()` (on every tool call) never touches the disk. Other
 * processes' writes are noticed by polling `PRAGMA data_version`, which only
 * changes when *another* connection commits, so the poll is one cheap pragma
 * until something actually happened. On PostgreSQL other replicas' writes
 * arrive by LISTEN/NOTIFY, and a slower poll of control_state is the fallback.
 */
export class KillSwitch implements HaltCheck {
  readonly #db: Db;
  readonly #audit: AuditSink;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #pollMs: number;
  readonly #halted = new Map<string, HaltState>();
  /**
   * Halts control_state refused: in force here only. A reload of the shared
   * state must not undo them (that would fail open); only a local resume, or
   * a newer row for the same scope written by someone else, ends one.
   */
  readonly #localOnly = new Map<string, HaltState>();
  readonly #haltListeners = new Set<HaltListener>();
  readonly #resumeListeners = new Set<ResumeListener>();
  #timer: NodeJS.Timeout | undefined;
  readonly #postgres: boolean;
  #unlisten: (() => void) | undefined;
  #dataVersion = -1;
  #pollFailures = 0;

  constructor(opts: KillSwitchOptions) {
    this.#db = opts.db;
    this.#audit = opts.audit;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger ?? silentLogger();
    this.#postgres = dialectOf(opts.db) === 'postgres';
    this.#pollMs = opts.pollMs ?? (this.#postgres ? PG_FALLBACK_POLL_MS : 50);
    // Loaded here too, so a check() made before start() already fails closed on a persisted halt.
    this.#reload(false);
  }

  /** Loads the persisted state (a halt survives restarts) and starts watching for other processes. */
  start(): void {
    // Listeners subscribed since construction hear of halts made in between.
    this.#reload(true);
    if (this.#timer) return;
    // control_state's trigger NOTIFYs warden_control on every halt and resume (db/postgres/001).
    this.#unlisten = this.#db.listen?.(
      'warden_control',
      () => this.#poll(),
      (err) => this.#logger.warn({ err: describeError(err) }, 'kill switch LISTEN connection lost; polling meanwhile'),
    );
    this.#timer = this.#clock.setInterval(() => this.#poll(), this.#pollMs);
    // A kill switch must not keep a finished CLI process alive.
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unlisten?.();
    this.#unlisten = undefined;
  }

  /** Synchronous, from memory: the org halt wins over an agent halt. */
  check(agent: string): HaltState | null {
    return this.#halted.get('org') ?? this.#halted.get(`agent:${agent}`) ?? null;
  }

  /** The org-wide halt, if one is in force. */
  orgHalt(): HaltState | undefined {
    return this.#halted.get('org');
  }

  /** Every halt in force, org first. */
  status(): HaltState[] {
    return [...this.#halted.values()].sort((a, b) =>
      a.scope === b.scope ? (a.agent ?? '').localeCompare(b.agent ?? '') : a.scope === 'org' ? -1 : 1,
    );
  }

  onHalt(listener: HaltListener): () => void {
    this.#haltListeners.add(listener);
    return () => this.#haltListeners.delete(listener);
  }

  onResume(listener: ResumeListener): () => void {
    this.#resumeListeners.add(listener);
    return () => this.#resumeListeners.delete(listener);
  }

  /**
   * Halts at once in this process (listeners run synchronously, before the
   * audit write), persists for every other process, then audits.
   */
  async halt(request: HaltRequest): Promise<HaltState> {
    const req = parseRequest(request);
    const at = this.#clock.now();
    const state: HaltState =
      req.scope === 'org'
        ? { scope: 'org', reason: req.reason || 'no reason given', actor: req.actor, at }
        : { scope: 'agent', agent: req.agent, reason: req.reason || 'no reason given', actor: req.actor, at };
    const key = scopeKey(state.scope, state.agent);
    let persistError: unknown;
    try {
      this.#db
        .prepare(
          `INSERT INTO control_state (scope, halted, reason, actor, at) VALUES (?, 1, ?, ?, ?)
           ON CONFLICT(scope) DO UPDATE SET halted = 1, reason = excluded.reason, actor = excluded.actor, at = excluded.at`,
        )
        .run(key, state.reason, state.actor, at);
    } catch (err) {
      // Fail closed: this process halts even though others cannot be told.
      persistError = err;
    }
    this.#halted.set(key, state);
    if (persistError === undefined) this.#localOnly.delete(key);
    else this.#localOnly.set(key, state);
    this.#emitHalt(state, { origin: 'local' });
    this.#logger.warn({ scope: state.scope, agent: state.agent, actor: state.actor }, 'halted');
    await this.#audit.append({
      event: 'control.halt',
      agent: state.agent,
      decision: 'halted',
      reason: state.reason,
      detail: { scope: state.scope, actor: state.actor, persisted: persistError === undefined },
      ts: at,
    });
    if (persistError !== undefined) {
      throw new WardenError(
        'CONTROL_WRITE_FAILED',
        'halt is in force in this process only: control_state could not be written',
        { cause: persistError },
      );
    }
    return state;
  }

  /** Resumes one scope. Resuming the org leaves individual agent halts in force. */
  async resume(request: ResumeRequest): Promise<{ resumed: boolean; previous?: HaltState | undefined }> {
    const req = parseRequest({ ...request, reason: request.reason });
    const key = scopeKey(req.scope, req.agent);
    const previous = this.#halted.get(key);
    const at = this.#clock.now();
    this.#db
      .prepare(
        `INSERT INTO control_state (scope, halted, reason, actor, at) VALUES (?, 0, ?, ?, ?)
         ON CONFLICT(scope) DO UPDATE SET halted = 0, reason = excluded.reason, actor = excluded.actor, at = excluded.at`,
      )
      .run(key, req.reason ?? null, req.actor, at);
    this.#halted.delete(key);
    this.#localOnly.delete(key);
    if (previous) this.#emitResume({ scope: req.scope, agent: req.agent, actor: req.actor, at }, { origin: 'local' });
    this.#logger.warn(
      { scope: req.scope, agent: req.agent, actor: req.actor, wasHalted: previous !== undefined },
      'resumed',
    );
    await this.#audit.append({
      event: 'control.resume',
      agent: req.agent,
      decision: previous ? 'resumed' : 'not_halted',
      reason: req.reason,
      detail: { scope: req.scope, actor: req.actor, haltedSince: previous?.at },
      ts: at,
    });
    return { resumed: previous !== undefined, previous };
  }

  #poll(): void {
    try {
      if (this.#postgres) this.#reload(true);
      else if (this.#db.pragma('data_version', { simple: true }) !== this.#dataVersion) this.#reload(true);
      this.#pollFailures = 0;
    } catch (err) {
      // Keep polling: a transient lock or I/O error must not blind the switch for good.
      if (this.#pollFailures++ % 100 === 0) this.#logger.error({ err: describeError(err) }, 'kill switch poll failed');
    }
  }

  #reload(notify: boolean): void {
    if (!this.#postgres) this.#dataVersion = this.#db.pragma('data_version', { simple: true }) as number;
    const rows = this.#db.prepare('SELECT scope, halted, reason, actor, at FROM control_state').all() as Row[];
    const seen = new Set<string>();
    for (const row of rows) {
      const local = this.#localOnly.get(row.scope);
      if (local) {
        // Someone changed this scope in the shared store after the halt only we hold: theirs is newer.
        if (row.at > local.at) this.#localOnly.delete(row.scope);
        else {
          seen.add(row.scope);
          continue;
        }
      }
      if (row.halted !== 1) continue;
      seen.add(row.scope);
      const known = this.#halted.get(row.scope);
      if (known && known.at === row.at && known.actor === (row.actor ?? '')) continue;
      const state = rowToState(row);
      this.#halted.set(row.scope, state);
      if (notify) this.#emitHalt(state, { origin: 'remote' });
    }
    for (const [key, state] of [...this.#halted]) {
      if (seen.has(key) || this.#localOnly.has(key)) continue;
      this.#halted.delete(key);
      const row = rows.find((r) => r.scope === key);
      if (notify)
        this.#emitResume(
          { scope: state.scope, agent: state.agent, actor: row?.actor ?? '', at: row?.at ?? this.#clock.now() },
          { origin: 'remote' },
        );
    }
  }

  #emitHalt(state: HaltState, info: HaltEventInfo): void {
    for (const l of this.#haltListeners) {
      try {
        l(state, info);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'halt listener threw');
      }
    }
  }

  #emitResume(r: Parameters<ResumeListener>[0], info: HaltEventInfo): void {
    for (const l of this.#resumeListeners) {
      try {
        l(r, info);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'resume listener threw');
      }
    }
  }
}
