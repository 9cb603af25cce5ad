import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { WardenError } from '../errors.ts';
import type { AnyFn, ArgumentTypes, Transaction } from './db.ts';
import type { PgReply, PgRequest, PgWorkerData } from './pg-protocol.ts';

/**
 * Warden's store interface (the synchronous one better-sqlite3 gives every
 * owning module) on PostgreSQL.
 *
 * Each statement is posted to a connection thread (pg-worker.ts, one
 * node-postgres client) and the caller blocks on a shared signal until the
 * reply is there: the same contract as SQLite, where a statement also runs
 * to completion on the calling thread. So every store runs unchanged on
 * either backend, and a transaction is simply its statements on the one
 * connection (nothing else on this thread can interleave). The hot path does
 * not block on it: the audit log commits each group as one statement on a
 * connection of its own, without blocking (audit/pg-chain.ts), and the kill
 * switch, live tokens and "no held call" are read from memory.
 *
 * SQL is written once, in the portable subset both databases share; this
 * class rewrites the placeholders (`?` and `@name` to `$n`) and `IS ?`
 * (PostgreSQL's IS takes only NULL/TRUE/FALSE) to `IS NOT DISTINCT FROM`.
 */

export interface RunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

const WAIT_SLICE_MS = 1000;
const DEFAULT_STATEMENT_TIMEOUT_MS = 15_000;

interface Compiled {
  text: string;
  /** For each $n, where its value comes from: a position or a name. */
  binds: (number | string)[];
}

/** Rewrites placeholders outside string literals and quoted identifiers. */
export function compileSql(sql: string): Compiled {
  let out = '';
  const binds: (number | string)[] = [];
  const names = new Map<string, number>();
  let positional = 0;
  let i = 0;
  while (i < sql.length) {
    const ch = sql[i]!;
    if (ch === "'" || ch === '"') {
      const end = sql.indexOf(ch, i + 1);
      const stop = end === -1 ? sql.length : end + 1;
      out += sql.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === '?') {
      binds.push(positional++);
      out += `$${binds.length}`;
      i++;
      continue;
    }
    if (ch === '@' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      const m = /^@([A-Za-z_][A-Za-z0-9_]*)/.exec(sql.slice(i))!;
      const name = m[1]!;
      let n = names.get(name);
      if (n === undefined) {
        binds.push(name);
        n = binds.length;
        names.set(name, n);
      }
      out += `$${n}`;
      i += m[0].length;
      continue;
    }
    out += ch;
    i++;
  }
  // `x IS $1`: PostgreSQL's IS compares only with NULL/TRUE/FALSE literals.
  out = out.replace(/\bIS\s+(NOT\s+)?(?=\$\d)/gi, (_m, not: string | undefined) =>
    not ? 'IS DISTINCT FROM ' : 'IS NOT DISTINCT FROM ',
  );
  return { text: out, binds };
}

function bindValues(compiled: Compiled, params: unknown[]): unknown[] {
  const named =
    params.length === 1 && params[0] !== null && typeof params[0] === 'object' && !Buffer.isBuffer(params[0])
      ? (params[0] as Record<string, unknown>)
      : undefined;
  return compiled.binds.map((b) => {
    if (typeof b === 'string') {
      if (!named || !(b in named)) {
        throw new WardenError('INVALID_INPUT', `missing named parameter @${b}`);
      }
      return toPg(named[b]);
    }
    return toPg(params[b]);
  });
}

/** better-sqlite3 refuses booleans and undefined; keep the same rule so both backends store the same values. */
function toPg(v: unknown): unknown {
  if (v === undefined) throw new WardenError('INVALID_INPUT', 'undefined bound to a statement parameter');
  if (typeof v === 'boolean') throw new WardenError('INVALID_INPUT', 'a boolean bound to a statement parameter');
  if (typeof v === 'bigint') return v.toString();
  return v;
}

export class PgStatement<P extends unknown[] = unknown[], R = unknown> {
  readonly #db: PgDb;
  readonly #compiled: Compiled;
  readonly source: string;
  #pluck = false;

  constructor(db: PgDb, source: string) {
    this.#db = db;
    this.source = source;
    this.#compiled = compileSql(source);
  }

  pluck(toggle = true): this {
    this.#pluck = toggle;
    return this;
  }

  run(...params: P): RunResult {
    const res = this.#db.query(this.#compiled.text, bindValues(this.#compiled, params));
    return { changes: res.rowCount, lastInsertRowid: 0 };
  }

  get(...params: P): R | undefined {
    const res = this.#db.query(this.#compiled.text, bindValues(this.#compiled, params));
    const row = res.rows[0];
    if (row === undefined) return undefined;
    return (this.#pluck ? row[res.fields[0]!] : row) as R;
  }

  all(...params: P): R[] {
    const res = this.#db.query(this.#compiled.text, bindValues(this.#compiled, params));
    return (this.#pluck ? res.rows.map((row) => row[res.fields[0]!]) : res.rows) as R[];
  }

  iterate(...params: P): IterableIterator<R> {
    return this.all(...params)[Symbol.iterator]();
  }
}

/**
 * The advisory lock an IMMEDIATE transaction takes: SQLite's BEGIN IMMEDIATE
 * serialises every writer of the file, and the stores' read-then-write
 * transactions (the chain head, a claim) rely on it; this gives them the same
 * guarantee across replicas.
 */
export const WRITE_LOCK_KEY = 0x5741_5244; // "WARD"

export interface PgOpenOptions {
  statementTimeoutMs?: number | undefined;
  readonly?: boolean | undefined;
}

export class PgDb {
  readonly dialect = 'postgres' as const;
  readonly name: string;
  readonly memory = false;
  readonly readonly: boolean;
  #open = true;
  #depth = 0;
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #signal: Int32Array;
  readonly #timeoutMs: number;
  readonly #url: string;

  constructor(url: string, options: PgOpenOptions = {}) {
    this.#url = url;
    this.name = redactUrl(url);
    this.readonly = options.readonly ?? false;
    this.#timeoutMs = options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS;
    const shared = new SharedArrayBuffer(4);
    this.#signal = new Int32Array(shared);
    const { port1, port2 } = new MessageChannel();
    this.#port = port1;
    const data: PgWorkerData & { port: MessagePort } = {
      url,
      signal: shared,
      statementTimeoutMs: this.#timeoutMs,
      readonly: this.readonly,
      port: port2,
    };
    const self = import.meta.url;
    if (self.endsWith('.ts')) {
      // From source (tsx, vitest): the thread registers tsx's CommonJS hook itself (see audit/writer-thread.ts for why).
      const api = createRequire(self).resolve('tsx/cjs/api');
      const target = fileURLToPath(new URL('./pg-worker.ts', self));
      const boot = `require(${JSON.stringify(api)}).register(); require(${JSON.stringify(target)});`;
      this.#worker = new Worker(boot, { eval: true, execArgv: [], workerData: data, transferList: [port2] });
    } else {
      this.#worker = new Worker(new URL('./pg-worker.js', self), { workerData: data, transferList: [port2] });
    }
    // Never keeps a finished process alive: every request is synchronous, so nothing is pending when idle.
    this.#worker.unref();
    this.#port.unref();
  }

  get open(): boolean {
    return this.#open;
  }

  get inTransaction(): boolean {
    return this.#depth > 0;
  }

  /** One statement, to completion. Throws a WardenError naming the cause. */
  query(sql: string, params: unknown[] = []): { rows: Record<string, unknown>[]; rowCount: number; fields: string[] } {
    if (!this.#open) throw new WardenError('STORE_UNAVAILABLE', 'the database connection is closed');
    Atomics.store(this.#signal, 0, 0);
    const req: PgRequest = { sql, params };
    this.#port.postMessage(req);
    // The server cancels a statement at statement_timeout; the margin covers connecting and the reply.
    const deadline = Date.now() + this.#timeoutMs + 5_000;
    let got: { message: PgReply } | undefined;
    for (;;) {
      Atomics.wait(this.#signal, 0, 0, WAIT_SLICE_MS);
      got = receiveMessageOnPort(this.#port) as { message: PgReply } | undefined;
      if (got !== undefined) break;
      if (Date.now() > deadline) {
        this.#open = false;
        void this.#worker.terminate();
        throw new WardenError('STORE_UNAVAILABLE', `PostgreSQL did not answer within ${this.#timeoutMs + 5_000} ms`);
      }
    }
    const reply = got.message;
    if (!reply.ok) {
      const err = new WardenError('STORE_UNAVAILABLE', `PostgreSQL: ${reply.message}`, {
        details: { sqlstate: reply.code },
      });
      (err as unknown as { sqlstate?: string }).sqlstate = reply.code;
      throw err;
    }
    return reply;
  }

  prepare<P extends unknown[] | object = unknown[], R = unknown>(
    source: string,
  ): P extends unknown[] ? PgStatement<P, R> : PgStatement<[P], R> {
    return new PgStatement(this, source) as never;
  }

  exec(sql: string): this {
    this.query(sql);
    return this;
  }

  /** SQLite pragmas have no PostgreSQL meaning; callers ask `dialectOf(db)` first. */
  pragma(source: string): never {
    throw new WardenError('INTERNAL', `PRAGMA ${source} asked of a PostgreSQL store`);
  }

  transaction<F extends AnyFn>(fn: F): Transaction<F> {
    const run =
      (lock: boolean) =>
      (...args: ArgumentTypes<F>): ReturnType<F> => {
        const nested = this.#depth > 0;
        const savepoint = `warden_sp_${this.#depth}`;
        this.exec(nested ? `SAVEPOINT ${savepoint}` : 'BEGIN');
        this.#depth++;
        try {
          if (lock && !nested) this.query(`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
          const out = fn(...args) as ReturnType<F>;
          this.#depth--;
          this.exec(nested ? `RELEASE SAVEPOINT ${savepoint}` : 'COMMIT');
          return out;
        } catch (err) {
          this.#depth--;
          try {
            this.exec(nested ? `ROLLBACK TO SAVEPOINT ${savepoint}` : 'ROLLBACK');
          } catch {
            // The connection is gone: the server rolls back on its own.
          }
          throw err;
        }
      };
    const tx = run(false) as Transaction<F>;
    tx.immediate = run(true);
    return tx;
  }

  /**
   * A client of its own for work that must not block this thread (the audit
   * group commit, audit/pg-chain.ts): same server, same statement timeout;
   * not connected yet, and the caller's to end.
   */
  newClient(): pg.Client {
    return new pg.Client({
      connectionString: this.#url,
      statement_timeout: this.#timeoutMs,
      // A connection the network dropped without a word (a NAT, a failover) must fail,
      // not hang: the server's statement timeout cannot answer over a dead link.
      query_timeout: this.#timeoutMs + 5_000,
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
    });
  }

  /**
   * LISTEN on a connection of its own, in this thread (a notification must
   * arrive while the thread is idle, not only between statements). The
   * connection is re-made after a loss, a second later; callers poll too,
   * so a notification missed meanwhile is only late. Never keeps the
   * process alive.
   */
  listen(channel: string, onNotify: () => void, onTrouble?: (err: Error) => void): () => void {
    if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new WardenError('INVALID_INPUT', `bad LISTEN channel ${channel}`);
    let stopped = false;
    let client: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    const connect = (): void => {
      const c = new pg.Client({ connectionString: this.#url });
      client = c;
      const lost = (err: Error): void => {
        onTrouble?.(err);
        c.removeAllListeners();
        c.on('error', () => {}); // a late error on a client given up must not crash the process
        void c.end().catch(() => {});
        if (stopped) return;
        // A missed notification is only late: the caller polls as well.
        onNotify();
        retry = setTimeout(connect, LISTEN_RETRY_MS);
        retry.unref();
      };
      c.on('error', lost);
      c.on('notification', () => onNotify());
      c.connect()
        .then(() => c.query(`LISTEN ${channel}`))
        .then(() => {
          unrefClient(c);
          // Anything missed while (re)connecting.
          if (!stopped) onNotify();
        })
        .catch(lost);
    };
    connect();
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      if (client) {
        client.removeAllListeners();
        client.on('error', () => {});
        void client.end().catch(() => {});
      }
    };
  }

  close(): this {
    if (!this.#open) return this;
    this.#open = false;
    this.#port.postMessage('close');
    // The thread ends its client and closes the port; it must not outlive a process that is done.
    setTimeout(() => void this.#worker.terminate(), 2_000).unref();
    return this;
  }
}

const LISTEN_RETRY_MS = 1000;

/** node-postgres keeps its socket private; an idle LISTEN connection must not hold a finished process open. */
function unrefClient(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { unref?: () => void } } }).connection?.stream?.unref?.();
}

/** The URL without its password, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable url)';
  }
}
