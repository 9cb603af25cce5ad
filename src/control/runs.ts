import { randomBytes } from 'node:crypto';
import { systemClock, type Clock } from '../clock.ts';
import type { Db, Statement } from '../store/db.ts';

/** How a run ended: on its own, stopped by the kill switch, by Ctrl-C / a signal to `warden run`, or Warden failed. */
export type RunCause = 'exited' | 'halted' | 'interrupted' | 'failed';

export interface RunRecord {
  id: string;
  agent: string;
  pid: number | null;
  host: string;
  command: string[];
  workspace: string;
  sandboxed: boolean;
  /** The run's own agent token (its id, never the secret). */
  tokenId: string;
  startedAt: number;
  endedAt: number | null;
  exitCode: number | null;
  signal: string | null;
  cause: RunCause | null;
}

interface Row {
  id: string;
  agent: string;
  pid: number | null;
  host: string;
  command: string;
  workspace: string;
  sandboxed: number;
  token_id: string;
  started_at: number;
  ended_at: number | null;
  exit_code: number | null;
  signal: string | null;
  cause: RunCause | null;
}

function toRecord(row: Row): RunRecord {
  return {
    id: row.id,
    agent: row.agent,
    pid: row.pid,
    host: row.host,
    command: JSON.parse(row.command) as string[],
    workspace: row.workspace,
    sandboxed: row.sandboxed === 1,
    tokenId: row.token_id,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    exitCode: row.exit_code,
    signal: row.signal,
    cause: row.cause,
  };
}

/** The `runs` table: the only code that reads or writes it. */
export class RunStore {
  readonly #clock: Clock;
  readonly #insert: Statement<[string, string, string, string, string, number, string, number]>;
  readonly #setPid: Statement<[number, string]>;
  readonly #finish: Statement<[number, number | null, string | null, RunCause, string]>;
  readonly #get: Statement<[string], Row>;
  readonly #open: Statement<[string | null, string | null], Row>;

  constructor(db: Db, options: { clock?: Clock | undefined } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#insert = db.prepare(
      'INSERT INTO runs (id, agent, host, command, workspace, sandboxed, token_id, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.#setPid = db.prepare('UPDATE runs SET pid = ? WHERE id = ?');
    this.#finish = db.prepare(
      'UPDATE runs SET ended_at = ?, exit_code = ?, signal = ?, cause = ? WHERE id = ? AND ended_at IS NULL',
    );
    this.#get = db.prepare('SELECT * FROM runs WHERE id = ?');
    this.#open = db.prepare(
      'SELECT * FROM runs WHERE ended_at IS NULL AND (CAST(? AS TEXT) IS NULL OR agent = ?) ORDER BY started_at, id',
    );
  }

  start(run: {
    agent: string;
    host: string;
    command: readonly string[];
    workspace: string;
    sandboxed: boolean;
    tokenId: string;
  }): RunRecord {
    const id = `run_${randomBytes(6).toString('hex')}`;
    this.#insert.run(
      id,
      run.agent,
      run.host,
      JSON.stringify(run.command),
      run.workspace,
      run.sandboxed ? 1 : 0,
      run.tokenId,
      this.#clock.now(),
    );
    return this.get(id)!;
  }

  /** The process id, once the process exists (host pid of the sandbox). */
  setPid(id: string, pid: number): void {
    this.#setPid.run(pid, id);
  }

  /** Closes an open run; a second call changes nothing. */
  finish(id: string, end: { exitCode: number | null; signal: string | null; cause: RunCause }): boolean {
    return this.#finish.run(this.#clock.now(), end.exitCode, end.signal, end.cause, id).changes > 0;
  }

  get(id: string): RunRecord | undefined {
    const row = this.#get.get(id);
    return row ? toRecord(row) : undefined;
  }

  /** Runs still going, oldest first; one agent's when named. */
  open(agent?: string): RunRecord[] {
    return this.#open.all(agent ?? null, agent ?? null).map(toRecord);
  }
}
