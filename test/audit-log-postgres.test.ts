import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit/log.ts';
import { verifyChain } from '../src/audit/verify.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { freshPgDatabase } from './support/postgres.ts';
import { allowInserts, refuseInserts } from './support/refuse-writes.ts';

/**
 * AuditLog on PostgreSQL: group commits on the calling thread's connection,
 * serialised across connections and replicas by the write lock. A real server.
 */
let dbs: Db[] = [];
let logs: AuditLog[] = [];

afterEach(async () => {
  await Promise.allSettled(logs.map((l) => l.close()));
  for (const db of dbs) db.close();
  logs = [];
  dbs = [];
});

function log(url: string): { db: Db; audit: AuditLog } {
  const db = openDb(url);
  dbs.push(db);
  const audit = new AuditLog(db);
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
});
