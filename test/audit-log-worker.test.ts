import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, verifyChain, type AuditRow } from '../src/audit/index.ts';
import { crashWriterThread, writerReady, writerThreadState } from '../src/audit/writer-thread.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { walCommits } from './support/wal-commits.ts';

import type { AuditEvent } from '../src/audit/types.ts';
/** These tests exercise the chain itself: any label will do as an event name. */
const label = (name: string) => name as AuditEvent;

/**
 * What only the writer-thread path has: commits off the main thread, batches
 * that grow while a commit waits, a shared thread that stops with the last
 * log, crash handling and process exit. The behaviours both paths share are
 * run on both in audit-log.test.ts.
 */

const root = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
let dbPath: string;
const open: Db[] = [];
const logs: AuditLog[] = [];

function db(): Db {
  const d = openDb(dbPath);
  open.push(d);
  return d;
}

async function workerLog(d: Db): Promise<AuditLog> {
  const log = new AuditLog(d, { writer: 'worker' });
  logs.push(log);
  expect(await writerReady()).toBe(true);
  expect(log.writer).toBe('worker');
  return log;
}

const allRows = (d: Db) => d.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();
const nextTick = () => new Promise<void>((r) => setImmediate(r));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-worker-'));
  dbPath = join(dir, 'warden.db');
});

afterEach(async () => {
  await Promise.allSettled(logs.splice(0).map((l) => l.close()));
  for (const d of open.splice(0)) if (d.open) d.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('AuditLog on the writer thread', () => {
  it('keeps the main thread free while a commit waits, and merges the batches that queue meanwhile', async () => {
    const d = db();
    const log = await workerLog(d);
    await log.append({ event: label('warm-up') });
    const c0 = walCommits(dbPath);
    // Another connection holds the write lock, so the writer thread's commit has to wait.
    const blocker = db();
    blocker.exec('BEGIN IMMEDIATE');
    const first = log.append({ event: label('a') });
    await nextTick();
    const second = log.append({ event: label('b') });
    await nextTick();
    const third = log.append({ event: label('c') });
    await nextTick();
    // Inline, the first batch would have blocked this very thread until busy_timeout,
    // so the lock could never be released from here.
    blocker.exec('ROLLBACK');
    const positions = await Promise.all([first, second, third]);
    expect(positions.map((p) => p.seq)).toEqual([2, 3, 4]);
    const commits = walCommits(dbPath) - c0;
    // Three batches were sent; the ones that queued behind the waiting commit shared one.
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThan(3);
    expect(allRows(d).map((r) => r.event)).toEqual(['warm-up', 'a', 'b', 'c']);
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 4 });
  });

  it('close() drains rows queued and in flight, then stops the thread once the last log is closed', async () => {
    const d = db();
    const a = await workerLog(d);
    const b = await workerLog(db());
    const work: Promise<{ seq: number }>[] = [];
    for (let tick = 0; tick < 6; tick++) {
      for (let i = 0; i < 50; i++) work.push(a.append({ event: 'call.decided', callId: `a${tick}-${i}` }));
      await nextTick();
    }
    // Earlier ticks are sent (some maybe still in flight); these are only queued.
    for (let i = 0; i < 50; i++) work.push(a.append({ event: 'call.decided', callId: `a-last-${i}` }));
    const closing = a.close();
    expect(allRows(d).length).toBeLessThanOrEqual(300);
    await closing;
    expect((await Promise.all(work)).map((p) => p.seq)).toEqual(Array.from({ length: 350 }, (_, i) => i + 1));
    await expect(a.append({ event: label('late') })).rejects.toSatisfy((e) => isWardenError(e, 'AUDIT_WRITE_FAILED'));
    // Another log still uses the thread.
    expect(writerThreadState()).toBe('ready');
    await expect(b.append({ event: label('from b') })).resolves.toMatchObject({ seq: 351 });
    await b.close();
    expect(writerThreadState()).toBe('stopped');
    d.close();
    const reopened = new Database(dbPath, { readonly: true });
    try {
      expect(reopened.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(351);
    } finally {
      reopened.close();
    }
    expect(verifyChain(db())).toMatchObject({ ok: true, count: 351 });
  });

  it('an inline log and a worker log on the same file keep one valid chain', async () => {
    const inline = new AuditLog(db(), { writer: 'inline' });
    logs.push(inline);
    expect(inline.writer).toBe('inline');
    const worker = await workerLog(db());
    const work: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      work.push(inline.append({ event: 'call.decided', agent: 'inline', callId: `i${i}` }));
      work.push(worker.append({ event: 'call.decided', agent: 'worker', callId: `w${i}` }));
      if (i % 20 === 0) await nextTick();
    }
    await Promise.all(work);
    const d = db();
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 400 });
    expect(d.prepare('SELECT agent, count(*) AS n FROM audit GROUP BY agent ORDER BY agent').all()).toEqual([
      { agent: 'inline', n: 200 },
      { agent: 'worker', n: 200 },
    ]);
    expect(inline.head()).toEqual(worker.head());
  });

  it('a crash of the thread fails the rows in flight with AUDIT_WRITE_FAILED; later rows go on, inline and then on a new thread', async () => {
    const d = db();
    const log = await workerLog(d);
    await log.append({ event: label('before') });
    const blocker = db();
    blocker.exec('BEGIN IMMEDIATE');
    const inFlight = log.append({ event: label('in flight') });
    await nextTick();
    const crashing = crashWriterThread();
    blocker.exec('ROLLBACK');
    await crashing;
    await expect(inFlight).rejects.toSatisfy(
      (e) => isWardenError(e, 'AUDIT_WRITE_FAILED') && /writer thread stopped/.test((e as Error).message),
    );
    // The next batch does not wait for a new thread: it is written here while one starts.
    expect(log.writer).toBe('inline');
    await expect(log.append({ event: label('after, inline') })).resolves.toBeDefined();
    expect(await writerReady()).toBe(true);
    expect(log.writer).toBe('worker');
    await expect(log.append({ event: label('after, worker') })).resolves.toBeDefined();
    const events = allRows(d).map((r) => r.event);
    expect(events.slice(-2)).toEqual(['after, inline', 'after, worker']);
    expect(verifyChain(d).ok).toBe(true);
  });

  it('an in-memory database is written inline even when the worker is asked for', async () => {
    const mem = openDb(':memory:');
    open.push(mem);
    const log = new AuditLog(mem, { writer: 'worker' });
    logs.push(log);
    expect(log.writer).toBe('inline');
    await expect(log.append({ event: label('x') })).resolves.toMatchObject({ seq: 1 });
    // Nothing of it reaches a disk: no commit skips an fsync, none is owed.
    await expect(log.append({ event: label('y') }, { sync: false })).resolves.toMatchObject({ seq: 2 });
    expect(log.syncPending).toBe(false);
    expect(verifyChain(mem)).toMatchObject({ ok: true, count: 2 });
  });

  it('is opt-in: a log without the option writes inline and starts no thread', async () => {
    const log = new AuditLog(db());
    logs.push(log);
    expect(log.writer).toBe('inline');
    expect(writerThreadState()).toBe('stopped');
    await expect(log.append({ event: label('x') })).resolves.toMatchObject({ seq: 1 });
    expect(writerThreadState()).toBe('stopped');
  });

  it('refuses an unknown writer option, naming it', () => {
    expect(() => new AuditLog(db(), { writer: 'thread' as 'worker' })).toThrow(/writer must be 'worker' or 'inline'/);
  });

  it('rows appended without awaiting are committed before the process exits, and an unclosed log does not keep it alive', async () => {
    const script = `
      const { AuditLog } = await import(${JSON.stringify(join(root, 'src/audit/index.ts'))});
      const { openDb } = await import(${JSON.stringify(join(root, 'src/store/db.ts'))});
      const { writerReady } = await import(${JSON.stringify(join(root, 'src/audit/writer-thread.ts'))});
      const log = new AuditLog(openDb(process.argv[1]), { writer: 'worker' });
      if (!(await writerReady()) || log.writer !== 'worker') throw new Error('writer thread did not start');
      await log.append({ event: 'awaited' });
      for (let i = 0; i < 3; i++) void log.append({ event: 'not awaited' });
      // Neither the log nor the database is closed: the process must still end by itself.
    `;
    await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dbPath], {
      cwd: root,
      timeout: 20_000,
    });
    const d = db();
    expect(allRows(d).map((r) => r.event)).toEqual(['awaited', 'not awaited', 'not awaited', 'not awaited']);
    expect(verifyChain(d)).toMatchObject({ ok: true, count: 4 });
  });

  it('a short-lived process (a CLI command) ends at once even while the thread is still starting', async () => {
    const script = `
      const { AuditLog } = await import(${JSON.stringify(join(root, 'src/audit/index.ts'))});
      const { openDb } = await import(${JSON.stringify(join(root, 'src/store/db.ts'))});
      const { writerThreadState } = await import(${JSON.stringify(join(root, 'src/audit/writer-thread.ts'))});
      const log = new AuditLog(openDb(process.argv[1]), { writer: 'worker' });
      await log.append({ event: 'one-shot' });
      process.stdout.write(writerThreadState());
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, dbPath],
      { cwd: root, timeout: 20_000 },
    );
    // The row went inline while the thread started; the starting thread did not hold the process.
    expect(stdout).toBe('starting');
    expect(allRows(db()).map((r) => r.event)).toEqual(['one-shot']);
  });
});
