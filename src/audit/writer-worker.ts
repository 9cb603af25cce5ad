import { parentPort, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { chainWriter, type ChainWriter } from './chain.ts';
import type { FromWriter, ToWriter, WriterRow, WriterSettings } from './writer-protocol.ts';

/**
 * The body of the audit writer thread (started by writer-thread.ts).
 *
 * It holds one better-sqlite3 connection per AuditLog. Each time it wakes it
 * drains every message already queued, so the rows that arrived while the
 * previous COMMIT was waiting for fsync all share the next transaction. The
 * transaction reads the head inside `BEGIN IMMEDIATE`, exactly like the
 * inline path, so other connections and processes appending to the same file
 * still build one chain.
 *
 * From source it is loaded through tsx's CommonJS hook (see writer-thread.ts):
 * no import.meta and no top-level await here or in what it imports.
 */

interface Conn {
  db: Database.Database;
  settings: WriterSettings | undefined;
  write: ChainWriter['write'];
}

interface Group {
  log: number;
  path: string;
  ids: number[];
  rows: WriterRow[];
  settings: WriterSettings;
}

const port: MessagePort = parentPort!;
const conns = new Map<number, Conn>();

function send(msg: FromWriter): void {
  port.postMessage(msg);
}

function open(path: string): Conn {
  // fileMustExist: a vanished file must fail the batch, not grow a fresh empty database.
  const db = new Database(path, { fileMustExist: true });
  const { write } = chainWriter(db);
  return { db, settings: undefined, write };
}

function apply(conn: Conn, settings: WriterSettings): void {
  const cur = conn.settings;
  if (cur?.busyTimeout !== settings.busyTimeout)
    conn.db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(settings.busyTimeout))}`);
  if (cur?.synchronous !== settings.synchronous)
    conn.db.pragma(`synchronous = ${Math.min(3, Math.max(0, Math.trunc(settings.synchronous)))}`);
  conn.settings = settings;
}

function commit(g: Group): void {
  try {
    let conn = conns.get(g.log);
    if (!conn) {
      conn = open(g.path);
      conns.set(g.log, conn);
    }
    apply(conn, g.settings);
    const { firstSeq, hashes } = conn.write(g.rows);
    send({ t: 'committed', log: g.log, ids: g.ids, firstSeq, hashes });
  } catch (err) {
    const e = err as { message?: unknown; code?: unknown };
    send({
      t: 'failed',
      log: g.log,
      ids: g.ids,
      rows: g.rows.length,
      message: typeof e?.message === 'string' ? e.message : String(err),
      code: typeof e?.code === 'string' ? e.code : undefined,
    });
  }
}

function detach(log: number): void {
  const conn = conns.get(log);
  conns.delete(log);
  try {
    if (conn?.db.open) conn.db.close();
  } finally {
    send({ t: 'detached', log });
  }
}

function drain(first: ToWriter): void {
  const messages: ToWriter[] = [first];
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port))
    messages.push(m.message as ToWriter);
  // One transaction per log for everything queued. A log only detaches after
  // its last batch settled, so running detaches after the commits keeps order.
  const groups = new Map<number, Group>();
  const detaches: number[] = [];
  for (const m of messages) {
    if (m.t === 'detach') {
      detaches.push(m.log);
      continue;
    }
    const g = groups.get(m.log);
    if (g) {
      g.ids.push(m.id);
      for (const r of m.rows) g.rows.push(r);
      // The latest settings, but the strictest synchronous of the batches merged: one that waits for fsync gets it.
      g.settings = { ...m.settings, synchronous: Math.max(g.settings.synchronous, m.settings.synchronous) };
    } else {
      groups.set(m.log, { log: m.log, path: m.path, ids: [m.id], rows: m.rows, settings: m.settings });
    }
  }
  for (const g of groups.values()) commit(g);
  for (const log of detaches) detach(log);
}

port.on('message', drain);
send({ t: 'ready' });
