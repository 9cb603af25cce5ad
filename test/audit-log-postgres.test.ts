import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, type AuditLogOptions } from '../src/audit/log.ts';
import { verifyChain } from '../src/audit/verify.ts';
import { GENESIS_HASH, REDACTED, rowHash, type AuditRow } from '../src/audit/index.ts';
import pg from 'pg';
import { chainWriter } from '../src/audit/chain.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { freshPgDatabase } from './support/postgres.ts';
import { allowInserts, refuseInserts } from './support/refuse-writes.ts';

/**
 * AuditLog on PostgreSQL: group commits awaited on a connection of the log's
 * own (audit/pg-chain.ts), serialised across connections and replicas by the
 * write lock. A real server.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
let dbs: Db[] = [];
let logs: AuditLog[] = [];

afterEach(async () => {
  await Promise.allSettled(logs.map((l) => l.close()));
  for (const db of dbs) db.close();
  logs = [];
  dbs = [];
});

function log(url: string, options: AuditLogOptions = {}): { db: Db; audit: AuditLog } {
  const db = openDb(url);
  dbs.push(db);
  const audit = new AuditLog(db, options);
  logs.push(audit);
  return { db, audit };
}

describe('AuditLog on PostgreSQL', () => {
  it('logs on three connections appending at once build one chain', async () => {
    const url = await freshPgDatabase();
    const a = log(url);
    const b = log(url);
    const c = log(url);
    expect(a.audit.writer).toBe('inline');
    const appends = [];
    for (let i = 0; i < 300; i++) {
      const { audit } = [a, b, c][i % 3]!;
      appends.push(
        audit.append({ event: 'call.decided', agent: `agent-${i % 3}`, decision: 'allow', reason: `#${i}` }),
      );
    }
    const heads = await Promise.all(appends);
    // Each promise got its own row: 300 distinct, contiguous seqs.
    expect(new Set(heads.map((h) => h.seq)).size).toBe(300);
    expect(Math.min(...heads.map((h) => h.seq))).toBe(1);
    expect(Math.max(...heads.map((h) => h.seq))).toBe(300);
    // What each promise was told is what the row holds.
    const stored = a.db.prepare('SELECT seq, hash, reason FROM audit ORDER BY seq').all() as {
      seq: number;
      hash: string;
      reason: string;
    }[];
    for (const [i, head] of heads.entries()) {
      const row = stored[head.seq - 1]!;
      expect(row).toMatchObject({ seq: head.seq, hash: head.hash, reason: `#${i}` });
    }
    expect(verifyChain(a.db)).toMatchObject({ ok: true, count: 300 });
    expect(a.audit.head()).toEqual({ seq: 300, hash: stored[299]!.hash });
  });

  it('a group the database refuses rejects every append in it and writes none; the next group commits', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    await audit.append({ event: 'call.decided', decision: 'allow' });
    refuseInserts(db, 'audit', 'disk says no');
    const refused = await Promise.allSettled([
      audit.append({ event: 'call.decided', decision: 'allow' }),
      audit.append({ event: 'call.decided', decision: 'allow' }),
    ]);
    expect(refused.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((refused[0] as PromiseRejectedResult).reason)).toMatch(/disk says no/);
    allowInserts(db, 'audit');
    await expect(audit.append({ event: 'call.completed', decision: 'allow' })).resolves.toMatchObject({ seq: 2 });
    expect(db.prepare('SELECT event FROM audit ORDER BY seq').pluck().all()).toEqual([
      'call.decided',
      'call.completed',
    ]);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 2 });
  });

  it('close() waits for the group in flight, and then refuses further appends', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    const pending = Array.from({ length: 50 }, (_, i) => audit.append({ event: 'call.decided', reason: `${i}` }));
    await audit.close();
    await expect(Promise.all(pending)).resolves.toHaveLength(50);
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(50);
    await expect(audit.append({ event: 'call.decided' })).rejects.toThrow(/closed/);
  });

  it('the event loop keeps serving while a group is with PostgreSQL', async () => {
    const url = await freshPgDatabase();
    const { audit } = log(url);
    await audit.append({ event: 'call.decided' });
    const order: string[] = [];
    const appended = audit.append({ event: 'call.decided' }).then(() => order.push('committed'));
    // Queued after the log's own flush: a commit that blocked the loop would settle first.
    setImmediate(() => order.push('loop turned'));
    await appended;
    expect(order).toEqual(['loop turned', 'committed']);
  });

  it('a row another writer appended meanwhile moves the head: the group is re-hashed onto it, one chain', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    expect((await audit.append({ event: 'call.decided', reason: 'first' })).seq).toBe(1);
    // Another connection (another replica, or `warden store migrate`) appends through the synchronous path.
    const other = openDb(url);
    dbs.push(other);
    chainWriter(other).write([
      {
        ts: 1,
        event: 'call.decided',
        call_id: null,
        agent: null,
        owner: null,
        server: null,
        tool: null,
        args: null,
        result: null,
        decision: null,
        reason: 'elsewhere',
        approver: null,
        duration_ms: null,
        detail: null,
      },
    ]);
    const next = await audit.append({ event: 'call.decided', reason: 'third' });
    expect(next.seq).toBe(3);
    expect(db.prepare('SELECT reason FROM audit ORDER BY seq').pluck().all()).toEqual(['first', 'elsewhere', 'third']);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 3 });
  });

  it('a lost audit connection fails only the group it carried; the next group connects again', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    await audit.append({ event: 'call.decided', reason: 'before' });
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      // The log's own connection is the one that ran the append function.
      const killed = await admin.query(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
         WHERE application_name = $1 AND query LIKE '%warden_audit_append(%' AND pid <> pg_backend_pid()`,
        [new URL(url).searchParams.get('application_name')],
      );
      expect(killed.rows).toEqual([{ ok: true }]);
    } finally {
      await admin.end();
    }
    const after = await Promise.allSettled([audit.append({ event: 'call.decided', reason: 'lost?' })]);
    const committed = await audit.append({ event: 'call.decided', reason: 'after' });
    const reasons = db.prepare('SELECT reason FROM audit ORDER BY seq').pluck().all();
    // The terminated connection either failed the group (nothing written) or had gone before it (reconnected).
    if (after[0]!.status === 'rejected') expect(reasons).toEqual(['before', 'after']);
    else expect(reasons).toEqual(['before', 'lost?', 'after']);
    expect(committed.seq).toBe(reasons.length);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: reasons.length });
  });

  it('chains rows as on SQLite: genesis prev_hash, each hash the canonical row hash, every column as given', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    const first = await audit.append({
      event: 'call.decided',
      ts: 1_700_000_000_000,
      callId: 'c1',
      agent: 'support-triage',
      owner: 'U1',
      server: 'tickets',
      tool: 'read_ticket',
      args: { id: 'T-1' },
      decision: 'allow',
      reason: 'read scope',
    });
    const second = await audit.append({
      event: 'call.completed',
      callId: 'c1',
      result: { ok: true },
      decision: 'ok',
      durationMs: 12.4,
      detail: { bytes: 3, text: 'é, a NUL \u0000, "quoted" \\ back' },
      approver: 'U2',
    });
    const rows = db.prepare('SELECT * FROM audit ORDER BY seq').all() as AuditRow[];
    expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    expect(rows[1]!.prev_hash).toBe(rows[0]!.hash);
    expect([rows[0]!.hash, rows[1]!.hash]).toEqual([first.hash, second.hash]);
    for (const r of rows) expect(rowHash(r)).toBe(r.hash);
    expect(rows[0]).toMatchObject({
      ts: 1_700_000_000_000,
      call_id: 'c1',
      agent: 'support-triage',
      owner: 'U1',
      server: 'tickets',
      tool: 'read_ticket',
      args: '{"id":"T-1"}',
      decision: 'allow',
      reason: 'read scope',
      result: null,
      approver: null,
      duration_ms: null,
    });
    expect(rows[1]).toMatchObject({ result: '{"ok":true}', duration_ms: 12, approver: 'U2' });
    expect(JSON.parse(rows[1]!.detail!)).toEqual({ bytes: 3, text: 'é, a NUL \u0000, "quoted" \\ back' });
  });

  it('redacts before writing, and an invalid entry is refused naming the field with nothing written', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    await expect(audit.append({ event: '' as never })).rejects.toThrow(/"event"/);
    await audit.append({ event: 'call.completed', args: { api_key: 'k-123456' }, reason: 'Bearer sekrit123456' });
    const row = db.prepare('SELECT args, reason FROM audit').get() as { args: string; reason: string };
    expect(JSON.parse(row.args)).toEqual({ api_key: REDACTED });
    expect(row.reason).toBe(`Bearer ${REDACTED}`);
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(1);
  });

  it('another process appending at the same time keeps one chain (each log re-hashes onto the other’s rows)', async () => {
    const url = await freshPgDatabase();
    const script = `
      const { AuditLog } = await import(${JSON.stringify(`${root}src/audit/index.ts`)});
      const { openDb } = await import(${JSON.stringify(`${root}src/store/db.ts`)});
      const db = openDb(process.argv[1]);
      const log = new AuditLog(db);
      for (let round = 0; round < 20; round++) {
        await Promise.all(Array.from({ length: 25 }, (_, i) => log.append({ event: 'call.decided', agent: 'child', callId: 'c' + round + '-' + i })));
      }
      await log.close();
      db.close();
    `;
    const child = promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, url], {
      cwd: root,
    });
    const { db, audit } = log(url);
    let childDone = false;
    void child.finally(() => (childDone = true));
    let mine = 0;
    const deadline = Date.now() + 20_000;
    while (!childDone && Date.now() < deadline) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          audit.append({ event: 'call.decided', agent: 'parent', callId: `p${mine}-${i}` }),
        ),
      );
      mine += 10;
    }
    await child;
    await audit.flush();
    const counts = db.prepare('SELECT agent, count(*) AS n FROM audit GROUP BY agent ORDER BY agent').all();
    expect(counts).toEqual([
      { agent: 'child', n: 500 },
      { agent: 'parent', n: mine },
    ]);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 500 + mine });
  });

  it('a NUL in an agent-chosen name is stored as U+FFFD: it fails neither its row nor the others in its group', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url);
    const [odd, innocent] = await Promise.all([
      audit.append({ event: 'call.decided', agent: 'a', tool: 'read\u0000ticket', reason: 'no\u0000such tool' }),
      audit.append({ event: 'call.decided', agent: 'b', reason: 'innocent' }),
    ]);
    expect([odd.seq, innocent.seq]).toEqual([1, 2]);
    expect(db.prepare('SELECT tool, reason FROM audit WHERE seq = 1').get()).toEqual({
      tool: 'read\uFFFDticket',
      reason: 'no\uFFFDsuch tool',
    });
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 2 });
  });

  it('a backlog behind a slow commit goes as several groups of at most maxBatch rows, in order', async () => {
    const url = await freshPgDatabase();
    const { db, audit } = log(url, { maxBatch: 10 });
    const heads = await Promise.all(
      Array.from({ length: 35 }, (_, i) => audit.append({ event: 'call.decided', reason: `${i}` })),
    );
    expect(heads.map((h) => h.seq)).toEqual(Array.from({ length: 35 }, (_, i) => i + 1));
    // Rows written by one transaction share its xmin: one group each.
    const groups = db.prepare('SELECT count(*) AS n FROM audit GROUP BY xmin::text ORDER BY min(seq)').pluck().all();
    expect(groups.reduce((a: number, b) => a + (b as number), 0)).toBe(35);
    expect(Math.max(...(groups as number[]))).toBeLessThanOrEqual(10);
    expect(groups.length).toBeGreaterThanOrEqual(4);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 35 });
  });

  it('a group whose answer was lost after its COMMIT is found in the chain and reported committed', async () => {
    const url = await freshPgDatabase();
    const proxy = await lossyProxy(url);
    try {
      const { db, audit } = log(proxy.url);
      await audit.append({ event: 'call.decided', reason: 'first' });
      // The server commits the next group and answers; the answer never reaches the log.
      await proxy.dropNextAnswer();
      const lost = await audit.append({ event: 'call.decided', reason: 'answer lost' });
      // The proxy did cut this answer off (it says so once the server had finished it).
      await proxy.dropped();
      expect(lost.seq).toBe(2);
      expect(db.prepare('SELECT reason FROM audit ORDER BY seq').pluck().all()).toEqual(['first', 'answer lost']);
      expect(await audit.append({ event: 'call.decided', reason: 'after' })).toMatchObject({ seq: 3 });
      expect(verifyChain(db)).toMatchObject({ ok: true, count: 3 });
    } finally {
      await proxy.close();
    }
  });
});

/**
 * A TCP proxy in front of the test server that, once armed, lets the server
 * finish its next answer to an append (through ReadyForQuery, so after the
 * COMMIT) and then cuts the client off without passing it on: a link lost at
 * the worst moment. In a process of its own: the store's synchronous
 * connection blocks this thread while it waits for an answer.
 */
const PROXY = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
let armed = false;
let dropped = 0;
const server = net.createServer((client) => {
  const upstream = net.connect(Number(port), host);
  let losing = false;
  let held = Buffer.alloc(0);
  for (const s of [client, upstream]) s.on('error', () => {});
  client.on('data', (chunk) => {
    if (armed && chunk.includes('warden_audit_append')) { armed = false; losing = true; }
    upstream.write(chunk);
  });
  upstream.on('data', (chunk) => {
    if (!losing) return void client.write(chunk);
    held = Buffer.concat([held, chunk]);
    if (held.subarray(-6).equals(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]))) {
      dropped++;
      client.destroy();
      upstream.destroy();
      process.stdout.write('dropped ' + dropped + '\\n');
    }
  });
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => process.stdout.write('port ' + server.address().port + '\\n'));
process.stdin.on('data', (d) => { if (String(d).includes('arm')) { armed = true; process.stdout.write('armed\\n'); } });
process.stdin.on('end', () => process.exit(0));
`;

async function lossyProxy(target: string): Promise<{
  url: string;
  dropNextAnswer(): Promise<void>;
  dropped(): Promise<void>;
  close(): Promise<void>;
}> {
  const to = new URL(target);
  const child = spawn(process.execPath, ['-e', PROXY, to.hostname, to.port], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    lines.push(...text.split('\n').filter(Boolean));
    for (const w of waiters.splice(0)) w();
  });
  const line = async (prefix: string): Promise<string> => {
    for (;;) {
      const found = lines.find((l) => l.startsWith(prefix));
      if (found) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const port = (await line('port ')).slice('port '.length);
  const url = new URL(target);
  url.hostname = '127.0.0.1';
  url.port = port;
  return {
    url: url.toString(),
    dropNextAnswer: async () => {
      child.stdin.write('arm\n');
      await line('armed');
    },
    dropped: async () => {
      await line('dropped ');
    },
    close: async () => {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.stdin.end();
      await exited;
    },
  };
}
