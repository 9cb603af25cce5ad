import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, REDACTED, type AuditEntry, type AuditLogOptions, type AuditRow } from '../src/audit/index.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { walCommits } from './support/wal-commits.ts';

/*
 * What AuditLog makes of one entry before it is chained: validation naming
 * the field, the caps on each column, rounding, and its own options. On the
 * inline writer, in this process, on a real SQLite file.
 */

let dir: string;
let dbPath: string;
let db: Db;
const logs: AuditLog[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-entry-'));
  dbPath = join(dir, 'warden.db');
  db = openDb(dbPath);
});
afterEach(async () => {
  await Promise.allSettled(logs.splice(0).map((l) => l.close()));
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function newLog(opts: AuditLogOptions = {}): AuditLog {
  const log = new AuditLog(db, opts);
  logs.push(log);
  return log;
}
const rows = () => db.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();

async function refusal(entry: unknown): Promise<Error & { details?: Record<string, unknown> }> {
  try {
    await newLog().append(entry as AuditEntry);
  } catch (err) {
    expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
    return err as Error & { details?: Record<string, unknown> };
  }
  throw new Error('expected the entry to be refused');
}

describe('AuditLog: an entry that is not one is refused, naming the field, and nothing is written', () => {
  it.each([
    ['null', null, 'entry', 'must be an object'],
    ['a string', 'call.decided', 'entry', 'must be an object'],
    ['no event', {}, 'event', 'must be a non-empty string'],
    ['a blank event', { event: '  ' }, 'event', 'must be a non-empty string'],
    ['a string ts', { event: 'anomaly', ts: '1' }, 'ts', 'must be a finite number of epoch milliseconds'],
    [
      'an infinite ts',
      { event: 'anomaly', ts: Number.POSITIVE_INFINITY },
      'ts',
      'must be a finite number of epoch milliseconds',
    ],
    [
      'a NaN duration',
      { event: 'anomaly', durationMs: Number.NaN },
      'durationMs',
      'must be a non-negative finite number',
    ],
    [
      'an infinite duration',
      { event: 'anomaly', durationMs: Number.POSITIVE_INFINITY },
      'durationMs',
      'must be a non-negative finite number',
    ],
    ['a string duration', { event: 'anomaly', durationMs: '5' }, 'durationMs', 'must be a non-negative finite number'],
    [
      'a negative duration',
      { event: 'anomaly', durationMs: -0.5 },
      'durationMs',
      'must be a non-negative finite number',
    ],
    ['a numeric owner', { event: 'anomaly', owner: 1 }, 'owner', 'must be a string'],
    ['a numeric server', { event: 'anomaly', server: 1 }, 'server', 'must be a string'],
    ['a numeric tool', { event: 'anomaly', tool: 1 }, 'tool', 'must be a string'],
    ['a numeric call id', { event: 'anomaly', callId: 1 }, 'callId', 'must be a string'],
    ['an object decision', { event: 'anomaly', decision: {} }, 'decision', 'must be a string'],
    ['a numeric approver', { event: 'anomaly', approver: 7 }, 'approver', 'must be a string'],
    ['a numeric reason', { event: 'anomaly', reason: 7 }, 'reason', 'must be a string'],
    ['a numeric event', { event: 7 }, 'event', 'must be a non-empty string'],
  ])('%s', async (_name, entry, field, why) => {
    const err = await refusal(entry);
    expect(err.message).toContain(`audit entry field "${field}" ${why}`);
    expect(err.details).toEqual({ field });
    expect(rows()).toEqual([]);
  });
});

describe('AuditLog: what is stored', () => {
  it('rounds ts and duration, keeps a zero duration, and stores a null duration as null', async () => {
    const log = newLog();
    await log.append({ event: 'anomaly', ts: 1_000.5, durationMs: 2.5 });
    await log.append({ event: 'anomaly', ts: 2_000.4, durationMs: 0 });
    await log.append({ event: 'anomaly', ts: 3_000, durationMs: null as unknown as number });
    expect(rows().map((r) => [r.ts, r.duration_ms])).toEqual([
      [1_001, 3],
      [2_000, 0],
      [3_000, null],
    ]);
  });

  it('takes ts from the clock when the entry has none', async () => {
    const clock = {
      now: () => 1_790_000_000_000,
      monotonic: () => 0,
      setTimeout,
      clearTimeout,
      setInterval,
      clearInterval,
    } as unknown as AuditLogOptions['clock'];
    await newLog({ clock }).append({ event: 'anomaly' });
    expect(rows()[0]!.ts).toBe(1_790_000_000_000);
  });

  it('cuts names at 512 characters and the reason at 4096, saying so, and redacts the name columns too', async () => {
    const log = newLog();
    await log.append({
      event: 'anomaly',
      agent: 'a'.repeat(512),
      tool: 't'.repeat(513),
      reason: 'r'.repeat(4097),
      owner: 'xoxb-1-2-3',
      callId: 'c',
    });
    const row = rows()[0]!;
    expect(row.agent).toBe('a'.repeat(512));
    expect(row.tool).toBe(`${'t'.repeat(512)}…[truncated 1 of 513 chars]`);
    expect(row.reason).toBe(`${'r'.repeat(4096)}…[truncated 1 of 4097 chars]`);
    expect(row.owner).toBe(REDACTED);
    // Columns the entry left out are null, not empty.
    expect([row.server, row.args, row.result, row.decision, row.approver, row.detail]).toEqual([
      null,
      null,
      null,
      null,
      null,
      null,
    ]);
  });

  it('repairs half a surrogate pair left by a cut', async () => {
    await newLog().append({ event: 'anomaly', agent: `${'a'.repeat(511)}\u{1F600}` });
    const agent = rows()[0]!.agent!;
    expect(agent.startsWith('a'.repeat(511))).toBe(true);
    expect(agent).not.toMatch(/[\uD800-\uDFFF]/);
  });

  it('caps args and detail at maxArgsChars (64 KiB by default), and result at maxResultChars', async () => {
    const log = newLog({ maxArgsChars: 20, maxResultChars: 10 });
    await log.append({
      event: 'anomaly',
      args: { s: 'x'.repeat(30) },
      detail: { s: 'y'.repeat(30) },
      result: 'z'.repeat(30),
    });
    const row = rows()[0]!;
    expect(row.args).toBe(`{"s":"${'x'.repeat(14)}…[truncated 18 of 38 chars]`);
    expect(row.detail).toBe(`{"s":"${'y'.repeat(14)}…[truncated 18 of 38 chars]`);
    expect(row.result).toBe(`"${'z'.repeat(9)}…[truncated 22 of 32 chars]`);
    const big = 'w'.repeat(64 * 1024);
    await newLog().append({ event: 'anomaly', args: big, detail: { s: big } });
    const second = rows()[1]!;
    // 64 KiB + 2 quotes: cut by 2.
    expect(second.args!.endsWith(`…[truncated 2 of ${64 * 1024 + 2} chars]`)).toBe(true);
    expect(second.detail!.endsWith(`…[truncated 8 of ${64 * 1024 + 8} chars]`)).toBe(true);
    await newLog().append({ event: 'anomaly', args: 'w'.repeat(64 * 1024 - 2) });
    expect(rows()[2]!.args).toBe(`"${'w'.repeat(64 * 1024 - 2)}"`);
  });

  it('append resolves with the seq and hash each row got, one batch or several', async () => {
    const log = newLog();
    const first = await log.append({ event: 'anomaly' });
    const batch = await Promise.all([1, 2, 3].map(() => log.append({ event: 'anomaly' })));
    const stored = rows();
    expect(stored[0]!.prev_hash).toBe('0'.repeat(64));
    expect([first, ...batch]).toEqual(stored.map((r) => ({ seq: r.seq, hash: r.hash })));
    expect(stored.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(log.head()).toEqual({ seq: 4, hash: stored[3]!.hash });
  });

  it('what the caller changes after append does not change the row', async () => {
    const log = newLog();
    const args = { n: 1 };
    const pending = log.append({ event: 'anomaly', args });
    args.n = 2;
    await pending;
    expect(rows()[0]!.args).toBe('{"n":1}');
  });
});

describe('AuditLog options', () => {
  it.each([
    ['maxResultChars', 0],
    ['maxArgsChars', 1.5],
    ['maxBatch', -1],
    ['syncWithinMs', Number.NaN],
  ] as const)('refuses %s = %s, naming it and the value', (field, value) => {
    let err: unknown;
    try {
      new AuditLog(db, { [field]: value });
    } catch (e) {
      err = e;
    }
    expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
    expect((err as Error).message).toBe(`AuditLog option ${field} must be a positive integer, got ${String(value)}`);
  });

  it('accepts 1 for each', () => {
    expect(() => newLog({ maxResultChars: 1, maxArgsChars: 1, maxBatch: 1, syncWithinMs: 1 })).not.toThrow();
  });

  it('commits at once when maxBatch rows are waiting, without waiting for the tick to end', async () => {
    const log = newLog({ maxBatch: 3 });
    await log.append({ event: 'anomaly' });
    const c0 = walCommits(dbPath);
    const appended = [1, 2, 3].map(() => log.append({ event: 'anomaly' }));
    // Still in the same tick: the third row filled the batch, so it is committed already.
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(4);
    expect(walCommits(dbPath) - c0).toBe(1);
    const fourth = log.append({ event: 'anomaly' });
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(4);
    await Promise.all([...appended, fourth]);
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(5);
  });

  it('flush with nothing appended resolves at once; after close, append is refused naming why', async () => {
    const log = newLog();
    await expect(log.flush()).resolves.toBeUndefined();
    await log.close();
    await expect(log.append({ event: 'anomaly' })).rejects.toThrow('audit log is closed');
  });
});
