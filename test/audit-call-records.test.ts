import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CallRecords } from '../src/audit/call-records.ts';
import { AuditLog } from '../src/audit/index.ts';
import type { AuditEntry, AuditSink } from '../src/audit/types.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';

const decided: AuditEntry = { event: 'call.decided', callId: 'call_1', agent: 'support-triage', decision: 'allow' };
const completed: AuditEntry = { event: 'call.completed', callId: 'call_1', agent: 'support-triage', decision: 'ok' };

describe('CallRecords: when a call’s rows reach stable storage is decided beside the sink', () => {
  let dir: string;
  let db: Db;
  let log: AuditLog;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-call-records-'));
    db = openDb(await storeLocation(dir));
    // The log's own timer fsync is put off, so every fsync seen is one CallRecords asked for.
    log = new AuditLog(db, { syncWithinMs: 60_000 });
  });
  afterEach(async () => {
    await log.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('fast: a call that can change something is on stable storage before decided() resolves', async () => {
    const records = new CallRecords(log, 'fast');
    const before = log.syncs;
    const { durable } = await records.decided(decided, { changesNothing: false, alone: () => true });
    expect(durable).toBeUndefined();
    // Synced by its own commit, not by a separate fsync.
    expect(log.syncPending).toBe(false);
    expect(log.syncs - before).toBe(0);
  });

  it('fast: a plain read resolves once committed, its fsync settling alongside, asked whether it runs alone', async () => {
    const records = new CallRecords(log, 'fast');
    const before = log.syncs;
    let asked = 0;
    const { durable } = await records.decided(decided, {
      changesNothing: true,
      alone: () => {
        asked++;
        return true;
      },
    });
    expect(asked).toBe(1);
    expect(durable).toBeInstanceOf(Promise);
    await durable;
    expect(log.syncPending).toBe(false);
    // The log's own fsync, of SQLite's WAL; a PostgreSQL commit is durable by itself.
    expect(log.syncs - before).toBe(onSqlite() ? 1 : 0);
    // The completion of a fast call is committed, its fsync owed to the next synced commit or the timer.
    await records.completed(completed);
    expect(log.syncPending).toBe(onSqlite());
  });

  it('strict: every row is on stable storage before the step after it, a read included', async () => {
    const records = new CallRecords(log, 'strict');
    const before = log.syncs;
    const { durable } = await records.decided(decided, { changesNothing: true, alone: () => true });
    expect(durable).toBeUndefined();
    await records.completed(completed);
    expect(log.syncPending).toBe(false);
    expect(log.syncs - before).toBe(0);
  });

  it('a sink that cannot sync on its own syncs every row: nothing runs alongside', async () => {
    const options: Array<boolean | undefined> = [];
    const sink: AuditSink = {
      append: (entry, appendOptions) => {
        options.push(appendOptions?.sync);
        return log.append(entry, appendOptions);
      },
    };
    const { durable } = await new CallRecords(sink).decided(decided, { changesNothing: true, alone: () => true });
    expect(durable).toBeUndefined();
    expect(options).toEqual([true]);
  });
  it("passes on whether the call runs alone as the fsync's quiet option, asked after the row is committed", async () => {
    const seen: string[] = [];
    const sink: AuditSink = {
      append: async (entry, appendOptions) => {
        const at = await log.append(entry, appendOptions);
        seen.push(`append sync=${appendOptions?.sync}`);
        return at;
      },
      sync: (syncOptions) => {
        seen.push(`sync quiet=${syncOptions?.quiet}`);
        return log.sync(syncOptions);
      },
    };
    const records = new CallRecords(sink);
    for (const alone of [true, false]) {
      const { durable } = await records.decided(decided, {
        changesNothing: true,
        alone: () => {
          seen.push('asked');
          return alone;
        },
      });
      await durable;
    }
    await records.completed(completed);
    expect(seen).toEqual([
      'append sync=false',
      'asked',
      'sync quiet=true',
      'append sync=false',
      'asked',
      'sync quiet=false',
      'append sync=false',
    ]);
  });

  it('a failed fsync alongside rejects `durable` where it is awaited, and is not an unhandled rejection before then', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const sink: AuditSink = {
        append: (entry, appendOptions) => log.append(entry, appendOptions),
        sync: () => Promise.reject(new Error('fsync failed')),
      };
      const { durable } = await new CallRecords(sink).decided(decided, { changesNothing: true, alone: () => true });
      // Let Node look for unhandled rejections: a macrotask turn, twice over.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
      await expect(durable).rejects.toThrow('fsync failed');
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
