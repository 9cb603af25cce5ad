import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describeError } from '../errors.ts';
import type { FromWriter, ToWriter, WriterRow, WriterSettings } from './writer-protocol.ts';

/**
 * The main-thread side of the audit writer thread.
 *
 * With synchronous=FULL every COMMIT waits for fsync. Done on the main
 * thread that wait stops the whole event loop, so no request arrives while
 * it lasts and the next group commit stays small. Done here, the loop keeps
 * serving while the thread commits, and the rows that arrive meanwhile form
 * the next, larger batch.
 *
 * Used by AuditLogs created with `writer: 'worker'`. One thread per
 * process, shared by every such AuditLog (each with its own
 * connection in the thread): starting one costs ~100 ms of CPU (several
 * times that on a loaded machine), and tests and CLI commands create many
 * logs they never close. The thread is
 * started when the first log is created, is unref'd whenever nothing is in
 * flight (an idle writer never keeps a process alive), and is stopped when
 * the last log closes. Until it is up, or if it cannot start, AuditLog
 * writes on the calling thread: same transaction, same guarantees, slower.
 */

export type BatchOutcome =
  | { ok: true; firstSeq: number; hashes: string[] }
  | { ok: false; rows: number; message: string; code: string | undefined };

type Done = (outcome: BatchOutcome) => void;

export type WriterThreadState = 'stopped' | 'starting' | 'ready' | 'unavailable';

const links = new Map<number, WriterLink>();
let thread: WriterThread | undefined;
/** Why the thread could not start; then every log in this process writes inline. */
let unavailable: string | undefined;
let nextLinkId = 1;

class WriterThread {
  readonly #worker: Worker;
  readonly #attached = new Map<number, WriterLink>();
  readonly #detaching = new Map<number, () => void>();
  readonly ready: Promise<boolean>;
  #markReady!: (ok: boolean) => void;
  isReady = false;
  #dead = false;
  #outstanding = 0;

  constructor() {
    this.ready = new Promise<boolean>((resolve) => (this.#markReady = resolve));
    const self = import.meta.url;
    if (self.endsWith('.ts')) {
      // Running from source (tsx, vitest). A worker gets no TS loader from the
      // parent's `--import tsx` (checked on Node 20, under both tsx and
      // vitest), so the thread registers tsx itself. The CommonJS hook is
      // used, not the ESM one: it runs in the thread, where ESM hooks
      // (module.register) start a second, hooks thread per worker, start
      // slower, and a process that ended while they were starting was once
      // seen to hang. So writer-worker.ts and what it imports must not use
      // import.meta or top-level await. The parent's flags are not passed:
      // they do not help and would cost start-up time (or open an inspector).
      const api = createRequire(self).resolve('tsx/cjs/api');
      const target = fileURLToPath(new URL('./writer-worker.ts', self));
      const boot = `require(${JSON.stringify(api)}).register(); require(${JSON.stringify(target)});`;
      this.#worker = new Worker(boot, { eval: true, execArgv: [] });
    } else {
      this.#worker = new Worker(new URL('./writer-worker.js', self));
    }
    this.#worker.on('message', (m: FromWriter) => this.#onMessage(m));
    this.#worker.on('error', (err) => this.#fail(describeError(err)));
    this.#worker.on('exit', (code) => this.#fail(`the audit writer thread exited (code ${code})`));
    // After the listeners: adding a 'message' listener refs the port again.
    this.#worker.unref();
  }

  post(link: WriterLink, msg: ToWriter): void {
    this.#attached.set(link.id, link);
    if (this.#outstanding++ === 0) this.#worker.ref();
    this.#worker.postMessage(msg);
  }

  /** Closes the link's connection in the thread; resolves when it is closed (or the thread is gone). */
  detach(link: WriterLink): Promise<void> {
    if (this.#dead || !this.#attached.has(link.id)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#detaching.set(link.id, resolve);
      this.post(link, { t: 'detach', log: link.id });
    });
  }

  /** Resolves when the thread is up (false if it died first), keeping the process alive meanwhile. */
  whenReady(): Promise<boolean> {
    if (this.isReady || this.#dead) return this.ready;
    if (this.#outstanding++ === 0) this.#worker.ref();
    return this.ready.finally(() => this.#settled(1));
  }

  /** Tests only: ends the thread without marking it stopped, so it is handled as a crash. */
  async crash(): Promise<void> {
    await this.#worker.terminate();
  }

  async stop(): Promise<void> {
    this.#dead = true;
    this.#markReady(false);
    await this.#worker.terminate();
  }

  #settled(n: number): void {
    this.#outstanding -= n;
    if (this.#outstanding === 0) this.#worker.unref();
  }

  #onMessage(m: FromWriter): void {
    switch (m.t) {
      case 'ready':
        this.isReady = true;
        this.#markReady(true);
        return;
      case 'committed':
      case 'failed':
        this.#settled(m.ids.length);
        this.#attached.get(m.log)?.settle(m);
        return;
      case 'detached':
        this.#settled(1);
        this.#attached.delete(m.log);
        this.#detaching.get(m.log)?.();
        this.#detaching.delete(m.log);
        return;
    }
  }

  #fail(message: string): void {
    if (this.#dead) return;
    this.#dead = true;
    if (thread === this) thread = undefined;
    this.#markReady(false);
    if (!this.isReady) {
      // Never came up: do not retry for every batch; the inline path is correct, only slower.
      unavailable = message;
      for (const l of links.values())
        l.trouble(`audit writer thread could not start (${message}); writing on the main thread`);
    } else {
      for (const l of this.#attached.values()) l.abandon(`the audit writer thread stopped: ${message}`);
    }
    this.#attached.clear();
    for (const resolve of this.#detaching.values()) resolve();
    this.#detaching.clear();
    this.#worker.unref();
  }
}

function currentThread(): WriterThread | undefined {
  if (thread || unavailable !== undefined) return thread;
  try {
    thread = new WriterThread();
  } catch (err) {
    unavailable = describeError(err);
    for (const l of links.values())
      l.trouble(`audit writer thread could not start (${unavailable}); writing on the main thread`);
  }
  return thread;
}

/**
 * One AuditLog's connection to the writer thread. `usable()` says whether a
 * batch can go to the thread now; otherwise the log writes it inline.
 */
export class WriterLink {
  readonly id = nextLinkId++;
  readonly #path: string;
  readonly #onTrouble: (message: string) => void;
  readonly #inflight = new Map<number, { rows: number; done: Done }>();
  #nextBatch = 1;
  #closed = false;

  /** `path`: the absolute path of the database file, as SQLite reports it. */
  constructor(path: string, onTrouble: (message: string) => void) {
    this.#path = path;
    this.#onTrouble = onTrouble;
    links.set(this.id, this);
    // Start now, so the thread is usually up before the first row.
    currentThread();
  }

  /** True when batches go to the thread; false while it starts, or if it cannot. Restarts a thread that died. */
  usable(): boolean {
    return !this.#closed && currentThread()?.isReady === true;
  }

  /** Sends a batch; `done` runs once its transaction committed or failed. Only when `usable()`. */
  submit(rows: WriterRow[], settings: WriterSettings, done: Done): void {
    const t = thread;
    if (!t?.isReady || this.#closed) throw new Error('the audit writer thread is not ready');
    const id = this.#nextBatch++;
    this.#inflight.set(id, { rows: rows.length, done });
    t.post(this, { t: 'batch', log: this.id, path: this.#path, id, rows, settings });
  }

  /** Closes this log's connection in the thread, and stops the thread if no log is left. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    links.delete(this.id);
    const t = thread;
    if (t) await t.detach(this);
    if (links.size === 0 && thread !== undefined) {
      const last = thread;
      thread = undefined;
      await last.stop();
    }
  }

  /** @internal called by the thread. */
  settle(m: Extract<FromWriter, { t: 'committed' | 'failed' }>): void {
    let offset = 0;
    for (const id of m.ids) {
      const b = this.#inflight.get(id);
      this.#inflight.delete(id);
      if (!b) continue;
      if (m.t === 'committed')
        b.done({ ok: true, firstSeq: m.firstSeq + offset, hashes: m.hashes.slice(offset, offset + b.rows) });
      else b.done({ ok: false, rows: m.rows, message: m.message, code: m.code });
      offset += b.rows;
    }
  }

  /**
   * @internal The thread died with these batches in flight. Their outcome is
   * unknown (a crash right after COMMIT would have written them), so they are
   * failed: a caller is never told "durable" without a reply from a commit.
   */
  abandon(message: string): void {
    const batches = [...this.#inflight.values()];
    this.#inflight.clear();
    const rows = batches.reduce((n, b) => n + b.rows, 0);
    for (const b of batches) b.done({ ok: false, rows, message, code: undefined });
    this.trouble(message);
  }

  /** @internal */
  trouble(message: string): void {
    try {
      this.#onTrouble(message);
    } catch {
      // A logger that throws must not break the writer.
    }
  }
}

/** Resolves true once the writer thread is up (false if there is none or it cannot start). For tests and benches. */
export function writerReady(): Promise<boolean> {
  return thread ? thread.whenReady() : Promise.resolve(false);
}

/** Where the shared writer thread is: for tests and diagnostics. */
export function writerThreadState(): WriterThreadState {
  if (thread) return thread.isReady ? 'ready' : 'starting';
  return unavailable !== undefined ? 'unavailable' : 'stopped';
}

/**
 * Terminates the writer thread the way a crash would (batches in flight are
 * failed, the next batch starts a new thread). Tests only.
 */
export async function crashWriterThread(): Promise<void> {
  await thread?.crash();
}
