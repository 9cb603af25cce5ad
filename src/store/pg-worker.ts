import { type MessagePort, workerData } from 'node:worker_threads';
import pg from 'pg';
import type { PgReply, PgRequest, PgWorkerData } from './pg-protocol.ts';

/**
 * The connection thread behind PgDb: one node-postgres client, one
 * statement at a time. The main thread posts a request and blocks on the
 * shared signal until this thread has posted the reply, which is how Warden's
 * synchronous store interface (the one better-sqlite3 gives) runs on
 * PostgreSQL. Loaded through tsx's CommonJS hook from source: no import.meta
 * and no top-level await here or in what it imports.
 */

// int8 (count(*), bigint timestamps) and numeric as JS numbers, as SQLite gives them:
// Warden's values (ms timestamps, counts, seqs) are far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

const data = workerData as PgWorkerData & { port: MessagePort };
const signal = new Int32Array(data.signal);
const client = new pg.Client({ connectionString: data.url, statement_timeout: data.statementTimeoutMs });
let connected: Promise<unknown> | undefined;
let broken: string | undefined;

client.on('error', (err) => {
  // The connection is gone (server restart, network): every later request fails until the store is reopened.
  broken = err.message;
});

function reply(msg: PgReply): void {
  data.port.postMessage(msg);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

async function handle(req: PgRequest): Promise<void> {
  try {
    if (broken !== undefined) throw new Error(`the PostgreSQL connection was lost: ${broken}`);
    connected ??= client
      .connect()
      .then(() => (data.readonly ? client.query('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY') : undefined));
    await connected;
    // No parameters: the simple protocol, which also runs a multi-statement text (a migration).
    const res = req.params.length > 0 ? await client.query(req.sql, req.params) : await client.query(req.sql);
    // A multi-statement text (migrations) answers with an array: the last one is what was asked for.
    const last = Array.isArray(res) ? res[res.length - 1] : res;
    reply({
      ok: true,
      rows: (last?.rows ?? []) as Record<string, unknown>[],
      rowCount: last?.rowCount ?? 0,
      fields: (last?.fields ?? []).map((f: { name: string }) => f.name),
    });
  } catch (err) {
    const e = err as { message?: string; code?: string };
    reply({ ok: false, message: e.message ?? String(err), code: e.code });
  }
}

data.port.on('message', (msg: PgRequest | 'close') => {
  if (msg === 'close') {
    void client.end().finally(() => data.port.close());
    return;
  }
  void handle(msg);
});
