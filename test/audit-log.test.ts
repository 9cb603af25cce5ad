import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditLog,
  GENESIS_HASH,
  REDACTED,
  rowHash,
  verifyChain,
  type AuditLogOptions,
  type AuditRow,
} from '../src/audit/index.ts';
import { LOOP_FSYNC_MAX_MS, RECENT_FSYNCS, type AuditWriter } from '../src/audit/log.ts';
import { writerReady } from '../src/audit/writer-thread.ts';
import type { Clock } from '../src/clock.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { walCommits } from './support/wal-commits.ts';

import type { AuditEvent } from '../src/audit/types.ts';
/** These tests exercise the chain itself: any label will do as an event name. */
const label = (name: string) => name as AuditEvent;

const root = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
let dbPath: string;
const open: Db[] = [];

function db(): Db {
  const d = openDb(dbPath);
  open.push(d);
  return d;
}

const fixedClock = (ms: number): Clock => ({
  now: () => ms,
  monotonic: () => 0,
  setTimeout: (fn, t) => setTimeout(fn, t),
  clearTimeout: (h) => clearTimeout(h),
  setInterval: (fn, t) => setInterval(fn, t),
  clearInterval: (h) => clearInterval(h),
});

const allRows = (d: Db) => d.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();

// Every AuditLog behaviour is checked on both write paths.
const WRITERS: readonly AuditWriter[] = ['inline', 'worker'];
const logs: AuditLog[] = [];

/** A log on the requested path; for 'worker', waits until batches really go to the writer thread. */
async function newLog(d: Db, opts: AuditLogOptions): Promise<AuditLog> {
  const log = new AuditLog(d, opts);
  logs.push(log);
  if (opts.writer === 'worker') expect(await writerReady()).toBe(true);
  expect(log.writer).toBe(opts.writer);
  return log;
}

// Keeps the shared writer thread up for the whole file, so each test does not
// pay its start-up (stopping with the last log is tested in audit-log-worker).
let keeperDir: string;
let keeper: AuditLog;
beforeAll(() => {
  keeperDir = mkdtempSync(join(tmpdir(), 'warden-audit-keeper-'));
  keeper = new AuditLog(openDb(join(keeperDir, 'keeper.db')), { writer: 'worker' });
});

afterAll(async () => {
  await keeper.close();
  rmSync(keeperDir, { recursive: true, force: true });
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-log-'));
  dbPath = join(dir, 'warden.db');
});

afterEach(async () => {
  await Promise.allSettled(logs.splice(0).map((l) => l.close()));
  for (const d of open.splice(0)) if (d.open) d.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('audit table', () => {
  it('refuses UPDATE and DELETE by trigger', async () => {
    const d = db();
    await new AuditLog(d).append({ event: 'call.decided', agent: 'a', decision: 'deny' });
    expect(() => d.prepare("UPDATE audit SET decision = 'allow' WHERE seq = 1").run()).toThrow(
      /append-only: UPDATE refused/,
    );
    expect(() => d.prepare('DELETE FROM audit').run()).toThrow(/append-only: DELETE refused/);
    expect(allRows(d)[0]!.decision).toBe('deny');
  });

  it('refuses rewriting or deleting checkpoints, but lets posted_to be filled in', () => {
    const d = db();
    d.prepare(
      "INSERT INTO audit_checkpoints (seq, head_hash, ts, signature, public_key) VALUES (0, ?, 1, 's', 'k')",
    ).run(GENESIS_HASH);
    expect(() => d.prepare("UPDATE audit_checkpoints SET head_hash = 'x'").run()).toThrow(/append-only/);
    expect(() => d.prepare('DELETE FROM audit_checkpoints').run()).toThrow(/append-only/);
    d.prepare("UPDATE audit_checkpoints SET posted_to = 'C123/p1'").run();
    expect(d.prepare('SELECT posted_to FROM audit_checkpoints').pluck().get()).toBe('C123/p1');
  });
});

describe.each(WRITERS)('AuditLog (%s writer)', (writer) => {
  const makeLog = (d: Db, opts: AuditLogOptions = {}) => newLog(d, { ...opts, writer });

  it('chains rows: genesis prev_hash, each hash = sha256(prev_hash ‖ canonical row)', async () => {
    const d = db();
    const log = await makeLog(d, { clock: fixedClock(1_700_000_000_000) });
    const first = await log.append({
      event: 'call.decided',
      callId: 'c1',
      agent: 'support-triage',
      owner: 'U1',
      server: 'tickets',
      tool: 'read_ticket',
      args: { id: 'T-1' },
      decision: 'allow',
      reason: 'read scope',
    });
    const second = await log.append({
      event: 'call.completed',
      callId: 'c1',
      agent: 'support-triage',
      result: { ok: true },
      decision: 'ok',
      durationMs: 12.4,
      detail: { bytes: 3 },
    });
    expect(first.seq).toBe(1);
    expect(second.seq).toBe(2);
    const rows = allRows(d);
    expect(rows).toHaveLength(2);
    expect(rows[0]!.prev_hash).toBe(GENESIS_HASH);
    expect(rows[1]!.prev_hash).toBe(rows[0]!.hash);
    expect(rows[0]!.hash).toBe(first.hash);
    expect(rows[1]!.hash).toBe(second.hash);
    for (const r of rows) expect(rowHash(r)).toBe(r.hash);
    expect(rows[0]).toMatchObject({
      ts: 1_700_000_000_000,
      event: 'call.decided',
      call_id: 'c1',
      agent: 'support-triage',
      owner: 'U1',
      server: 'tickets',
      tool: 'read_ticket',
      args: '{"id":"T-1"}',
      decision: 'allow',
      reason: 'read scope',
      result: null,
    });
    expect(rows[1]).toMatchObject({ result: '{"ok":true}', duration_ms: 12, detail: '{"bytes":3}' });
    expect(log.head()).toEqual({ seq: 2, hash: second.hash });
    // Any change to any column changes the hash.
    expect(rowHash({ ...rows[1]!, decision: 'error' })).not.toBe(rows[1]!.hash);
    expect(rowHash({ ...rows[1]!, seq: 3 })).not.toBe(rows[1]!.hash);
  });

  it('redacts args, result, detail and reason before writing', async () => {
    const d = db();
    const log = await makeLog(d);
    await log.append({
      event: 'call.completed',
      args: { to: 'x@y.z', api_key: 'k-123', headers: { Authorization: 'Bearer abcdefgh1234' } },
      result: { text: 'your token is xoxb-111-222-abc' },
      detail: { cookie: 'sess=1', note: 'AKIAIOSFODNN7EXAMPLE' },
      reason: 'upstream said: Bearer sekrit123456',
    });
    const row = allRows(d)[0]!;
    const text = JSON.stringify(row);
    for (const secret of ['k-123', 'abcdefgh1234', 'xoxb-111', 'sess=1', 'AKIAIOSFODNN7EXAMPLE', 'sekrit123'])
      expect(text).not.toContain(secret);
    expect(JSON.parse(row.args!)).toEqual({ to: 'x@y.z', api_key: REDACTED, headers: { Authorization: REDACTED } });
    expect(JSON.parse(row.result!)).toEqual({ text: `your token is ${REDACTED}` });
    expect(row.reason).toBe(`upstream said: Bearer ${REDACTED}`);
  });

  it('truncates big results to maxResultChars with a marker saying how much was cut', async () => {
    const d = db();
    const log = await makeLog(d, { maxResultChars: 100 });
    const big = { text: 'y'.repeat(5000) };
    await log.append({ event: 'call.completed', result: big });
    const stored = allRows(d)[0]!.result!;
    const full = JSON.stringify(big).length;
    expect(stored.startsWith(JSON.stringify(big).slice(0, 100))).toBe(true);
    expect(stored).toContain(`[truncated ${full - 100} of ${full} chars]`);
    expect(stored.length).toBeLessThan(160);
    // Default cap is 16 KiB.
    await (await makeLog(d)).append({ event: 'call.completed', result: 'z'.repeat(40_000) });
    expect(allRows(d)[1]!.result!.length).toBeLessThan(16 * 1024 + 60);
    expect(verifyChain(d).ok).toBe(true);
  });

  it('keeps the chain valid for text SQLite would otherwise change (lone surrogates)', async () => {
    const d = db();
    await (await makeLog(d)).append({
      event: 'call.decided',
      agent: 'bad\uD800agent',
      reason: 'x\uDC00',
      args: { s: '\uD800' },
    });
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 1 });
  });

  it('rejects an invalid entry with INVALID_INPUT naming the field, and writes nothing', async () => {
    const d = db();
    const log = await makeLog(d);
    await expect(log.append({ event: label('') })).rejects.toThrow(/"event"/);
    await expect(log.append({ event: label('x'), durationMs: -1 })).rejects.toThrow(/"durationMs"/);
    await expect(log.append({ event: label('x'), agent: 42 as unknown as string })).rejects.toThrow(/"agent"/);
    expect(allRows(d)).toHaveLength(0);
  });

  it('group-commits rows appended in the same tick into one transaction', async () => {
    const d = db();
    const log = await makeLog(d);
    await log.append({ event: label('warm-up') });
    const c0 = walCommits(dbPath);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => log.append({ event: 'call.decided', callId: `c${i}` })),
    );
    expect(walCommits(dbPath) - c0).toBe(1);
    expect(results.map((r) => r.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 2));
    // And rows appended in separate, awaited ticks are separate commits (the counter can tell).
    await log.append({ event: label('one') });
    await log.append({ event: label('two') });
    expect(walCommits(dbPath) - c0).toBe(3);
  });

  it('is durable: every awaited row is found after reopening the file', async () => {
    const d = db();
    const log = await makeLog(d);
    const positions = await Promise.all(
      Array.from({ length: 2500 }, (_, i) => log.append({ event: 'call.decided', callId: `c${i}`, args: { i } })),
    );
    for (let i = 0; i < 10; i++) positions.push(await log.append({ event: 'call.completed', callId: `s${i}` }));
    await log.close();
    d.close();
    const reopened = new Database(dbPath, { readonly: true });
    try {
      const rows = reopened.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();
      expect(rows).toHaveLength(2510);
      expect(rows.map((r) => r.hash)).toEqual(positions.map((p) => p.hash));
      expect(new Set(rows.map((r) => r.call_id)).size).toBe(2510);
    } finally {
      reopened.close();
    }
    expect(verifyChain(db())).toMatchObject({ ok: true, count: 2510 });
  });

  it('close() flushes what is queued and then refuses appends', async () => {
    const d = db();
    const log = await makeLog(d);
    const pending = log.append({ event: 'call.decided' });
    await log.close();
    await expect(pending).resolves.toMatchObject({ seq: 1 });
    await expect(log.append({ event: label('late') })).rejects.toSatisfy((e) => isWardenError(e, 'AUDIT_WRITE_FAILED'));
    expect(allRows(d)).toHaveLength(1);
  });

  it('a failed flush rejects every promise in the batch with AUDIT_WRITE_FAILED and writes none of it', async () => {
    const d = db();
    const log = await makeLog(d);
    await log.append({ event: label('before') });
    // A real failure mid-batch: a trigger refuses one of the rows.
    d.exec(
      "CREATE TRIGGER test_refuse BEFORE INSERT ON audit WHEN NEW.event = 'boom' BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
    );
    const batch = [
      log.append({ event: label('a') }),
      log.append({ event: label('boom') }),
      log.append({ event: label('c') }),
    ];
    const settled = await Promise.allSettled(batch);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      const reason = (s as PromiseRejectedResult).reason;
      expect(isWardenError(reason, 'AUDIT_WRITE_FAILED')).toBe(true);
      expect(String(reason.message)).toContain('disk says no');
    }
    expect(allRows(d).map((r) => r.event)).toEqual(['before']);
    d.exec('DROP TRIGGER test_refuse');
    await expect(log.append({ event: label('after') })).resolves.toMatchObject({ seq: 2 });
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 2 });
  });

  it('a batch that cannot get the write lock fails loudly, not silently', async () => {
    const d = db();
    d.pragma('busy_timeout = 20');
    const log = await makeLog(d);
    const other = db();
    other.exec('BEGIN IMMEDIATE');
    const settled = await Promise.allSettled([log.append({ event: label('x') }), log.append({ event: label('y') })]);
    other.exec('ROLLBACK');
    expect(settled.every((s) => s.status === 'rejected' && isWardenError(s.reason, 'AUDIT_WRITE_FAILED'))).toBe(true);
    await expect(log.flush()).resolves.toBeUndefined();
    await log.append({ event: label('z') });
    expect(allRows(d).map((r) => r.event)).toEqual(['z']);
  });

  it('flush() commits at once and resolves after the batch is on disk', async () => {
    const d = db();
    const log = await makeLog(d);
    const p = log.append({ event: label('x') });
    await log.flush();
    expect(allRows(db())).toHaveLength(1);
    await p;
  });

  it('sync: false commits at once without waiting for fsync, restores the connection, and syncs the WAL within syncWithinMs', async () => {
    const d = db();
    const log = await makeLog(d, { syncWithinMs: 10 });
    await log.append({ event: 'call.decided', callId: 'c1' });
    expect(log.syncPending).toBe(false);
    const at = await log.append({ event: 'call.completed', callId: 'c1' }, { sync: false });
    // Committed: another connection (another process, after a crash of this one) reads it now.
    expect(allRows(db()).map((r) => r.seq)).toContain(at.seq);
    expect(log.syncPending).toBe(true);
    // Only that transaction skipped its fsync: the connection keeps FULL for everything else.
    expect(d.pragma('synchronous', { simple: true })).toBe(2);
    // The log's own timer (I/O scheduling on node:timers, like group commit) does the fsync.
    await expect.poll(() => log.syncPending, { timeout: 5_000 }).toBe(false);
    expect(log.syncs).toBe(1);
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 2 });
  });

  it('a synced commit covers the relaxed ones before it; a batch with any synced row is synced', async () => {
    const d = db();
    const log = await makeLog(d, { syncWithinMs: 60_000 });
    await log.append({ event: label('relaxed') }, { sync: false });
    expect(log.syncPending).toBe(true);
    await log.append({ event: label('synced') });
    expect(log.syncPending).toBe(false);
    await log.append({ event: label('relaxed') }, { sync: false });
    expect(log.syncPending).toBe(true);
    // Same tick, one transaction: the row that waits for stable storage decides.
    await Promise.all([
      log.append({ event: label('relaxed') }, { sync: false }),
      log.append({ event: label('synced') }),
    ]);
    expect(log.syncPending).toBe(false);
    await Promise.all([
      log.append({ event: label('relaxed') }, { sync: false }),
      log.append({ event: label('relaxed') }, { sync: false }),
    ]);
    expect(log.syncPending).toBe(true);
    await log.sync();
    expect(log.syncPending).toBe(false);
    expect(allRows(d)).toHaveLength(7);
  });

  it('a quiet sync runs on the event loop once fsyncs are known to be fast, and goes back to the thread pool after a slow one', async () => {
    // Each fsync is timed with two reads of the monotonic clock: `step` apart.
    let mono = 0;
    let step = 0;
    const clock: Clock = { ...fixedClock(1_700_000_000_000), monotonic: () => (mono += step) };
    const log = await makeLog(db(), { syncWithinMs: 60_000, clock });
    const quietSync = async () => {
      await log.append({ event: label('relaxed') }, { sync: false });
      await log.sync({ quiet: true });
      expect(log.syncPending).toBe(false);
    };
    // No fsync timed yet: the first goes to the pool.
    await quietSync();
    expect([log.syncs, log.loopSyncs]).toEqual([1, 0]);
    await quietSync();
    expect([log.syncs, log.loopSyncs]).toEqual([2, 1]);
    // Not quiet: the pool, whatever the timings.
    await log.append({ event: label('relaxed') }, { sync: false });
    await log.sync();
    expect([log.syncs, log.loopSyncs]).toEqual([3, 1]);
    // A slow disk: the fsync that finds out still ran on the loop; the next ones do not.
    step = LOOP_FSYNC_MAX_MS + 1;
    await quietSync();
    expect([log.syncs, log.loopSyncs]).toEqual([4, 2]);
    await quietSync();
    expect([log.syncs, log.loopSyncs]).toEqual([5, 2]);
    // Fast again (timed on the pool): back on the loop only once no slow one is among the last RECENT_FSYNCS.
    step = 0;
    let onPool = 0;
    while (log.loopSyncs === 2) {
      await quietSync();
      if (log.loopSyncs === 2) onPool++;
      expect(onPool).toBeLessThanOrEqual(RECENT_FSYNCS);
    }
    expect(onPool).toBe(RECENT_FSYNCS);
  });

  it('close() syncs rows that were only committed', async () => {
    const d = db();
    const log = await makeLog(d, { syncWithinMs: 60_000 });
    await log.append({ event: 'call.completed' }, { sync: false });
    expect(log.syncPending).toBe(true);
    await log.close();
    expect(log.syncPending).toBe(false);
  });

  it('refuses a syncWithinMs that is not a positive integer, naming it', async () => {
    await expect(makeLog(db(), { syncWithinMs: 0 })).rejects.toThrow(/syncWithinMs/);
  });

  it('two AuditLog instances on the same file keep one valid chain', async () => {
    const a = await makeLog(db());
    const b = await makeLog(db());
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 300; i++) {
      work.push(a.append({ event: 'call.decided', agent: 'a', callId: `a${i}` }));
      work.push(b.append({ event: 'call.decided', agent: 'b', callId: `b${i}` }));
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(work);
    const d = db();
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 600 });
    expect(a.head()).toEqual(b.head());
  });

  it('another process appending to the same file at the same time keeps one valid chain', async () => {
    const script = `
      const { AuditLog } = await import(${JSON.stringify(join(root, 'src/audit/index.ts'))});
      const { openDb } = await import(${JSON.stringify(join(root, 'src/store/db.ts'))});
      const { writerReady } = await import(${JSON.stringify(join(root, 'src/audit/writer-thread.ts'))});
      const db = openDb(process.argv[1]);
      const log = new AuditLog(db, { writer: process.argv[2] });
      if (process.argv[2] === 'worker' && !(await writerReady())) throw new Error('writer thread did not start');
      if (log.writer !== process.argv[2]) throw new Error('wrong writer: ' + log.writer);
      for (let round = 0; round < 20; round++) {
        await Promise.all(Array.from({ length: 25 }, (_, i) => log.append({ event: 'call.decided', agent: 'child', callId: 'c' + round + '-' + i })));
      }
      await log.close();
      db.close();
    `;
    const child = promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, dbPath, writer],
      { cwd: root },
    );
    const log = await makeLog(db());
    const deadline = Date.now() + 20_000;
    let mine = 0;
    // Keep appending until the child has finished, so the two really overlap.
    let childDone = false;
    void child.finally(() => (childDone = true));
    while (!childDone && Date.now() < deadline) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          log.append({ event: 'call.decided', agent: 'parent', callId: `p${mine}-${i}` }),
        ),
      );
      mine += 10;
    }
    await child;
    await log.close();
    const d = db();
    const counts = d
      .prepare<[], { agent: string; n: number }>('SELECT agent, count(*) AS n FROM audit GROUP BY agent ORDER BY agent')
      .all();
    expect(counts).toEqual([
      { agent: 'child', n: 500 },
      { agent: 'parent', n: mine },
    ]);
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 500 + mine });
  });
});

describe('AuditLog when the WAL cannot be synced', () => {
  it('never reports those rows durable again, and stops skipping fsyncs', async () => {
    const d = db();
    const log = new AuditLog(d, { syncWithinMs: 60_000 });
    logs.push(log);
    await log.append({ event: label('relaxed') }, { sync: false });
    expect(log.syncPending).toBe(true);
    // A real failure of the log's own fsync: the WAL's name now leads to a
    // directory (SQLite keeps writing the file it has open, under its new name).
    const wal = `${dbPath}-wal`;
    renameSync(wal, `${wal}.moved`);
    mkdirSync(wal);
    try {
      await expect(log.sync()).rejects.toSatisfy(
        (e) => isWardenError(e, 'AUDIT_WRITE_FAILED') && /could not be fsynced/.test(String((e as Error).message)),
      );
      // Sticky: the next commits wait for their own fsync, and even a synced one does not vouch for the earlier rows.
      await log.append({ event: label('asked to skip the fsync') }, { sync: false });
      await log.append({ event: label('synced') });
      expect(log.syncPending).toBe(true);
      await expect(log.sync()).rejects.toSatisfy((e) => isWardenError(e, 'AUDIT_WRITE_FAILED'));
      expect(allRows(d).map((r) => r.event)).toEqual(['relaxed', 'asked to skip the fsync', 'synced']);
    } finally {
      rmdirSync(wal);
      renameSync(`${wal}.moved`, wal);
    }
    await expect(log.close()).rejects.toSatisfy((e) => isWardenError(e, 'AUDIT_WRITE_FAILED'));
  });

  it('a commit on a connection set below FULL does not vouch for earlier rows', async () => {
    const d = db();
    const log = new AuditLog(d, { syncWithinMs: 60_000 });
    logs.push(log);
    await log.append({ event: label('relaxed') }, { sync: false });
    d.pragma('synchronous = NORMAL');
    await log.append({ event: label('committed without fsync') });
    expect(log.syncPending).toBe(true);
    d.pragma('synchronous = FULL');
    await log.sync();
    expect(log.syncPending).toBe(false);
  });
});

describe.each(WRITERS)('AuditLog under fake timers (%s writer)', (writer) => {
  it('still commits: group commit does not depend on timers a test may fake', async () => {
    const { vi } = await import('vitest');
    vi.useFakeTimers();
    try {
      const d = db();
      const log = await newLog(d, { clock: fixedClock(5), writer });
      await expect(log.append({ event: label('x') })).resolves.toMatchObject({ seq: 1 });
      expect(allRows(d)[0]!.ts).toBe(5);
    } finally {
      vi.useRealTimers();
    }
  });
});
