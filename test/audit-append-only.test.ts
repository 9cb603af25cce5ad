import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, verifyChain, type AuditRow } from '../src/audit/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';

import type { AuditEvent } from '../src/audit/types.ts';
/** These tests exercise the chain itself: any label will do as an event name. */
const label = (name: string) => name as AuditEvent;

let dir: string;
const itSqlite = it.skipIf(!onSqlite());
let db: Db;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-append-only-'));
  db = openDb(await storeLocation(dir));
});

afterEach(() => {
  if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

const COLS =
  'seq, ts, event, call_id, agent, owner, server, tool, args, result, decision, reason, approver, duration_ms, detail, prev_hash, hash';
const values = COLS.split(', ')
  .map((c) => `@${c}`)
  .join(', ');
const rows = () => db.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();

async function seed(n: number): Promise<AuditRow[]> {
  const log = new AuditLog(db);
  for (let i = 0; i < n; i++)
    await log.append({ event: 'call.decided', agent: 'support-triage', decision: i === 1 ? 'deny' : 'allow' });
  await log.close();
  return rows();
}

describe('audit table through a Warden connection (openDb)', () => {
  // REPLACE is SQLite's own; PostgreSQL has no such statement (its upsert is the next test).
  itSqlite('refuses INSERT OR REPLACE over an existing row (the delete that REPLACE implies is a DELETE)', async () => {
    const [, second] = await seed(3);
    const forged = { ...second!, decision: 'allow', reason: 'nothing to see' };
    expect(() => db.prepare(`INSERT OR REPLACE INTO audit (${COLS}) VALUES (${values})`).run(forged)).toThrow(
      /append-only/,
    );
    expect(() => db.prepare(`REPLACE INTO audit (${COLS}) VALUES (${values})`).run(forged)).toThrow(/append-only/);
    expect(rows()[1]!.decision).toBe('deny');
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 3 });
  });

  it('refuses an upsert, and a row back-filled behind the head', async () => {
    const [first] = await seed(3);
    expect(() =>
      db
        .prepare(`INSERT INTO audit (${COLS}) VALUES (${values}) ON CONFLICT(seq) DO UPDATE SET decision = 'allow'`)
        .run(first!),
    ).toThrow(/append-only/);
    // Delete is refused, so a gap can only come from a forged low seq: refused too.
    expect(() => db.prepare(`INSERT INTO audit (${COLS}) VALUES (${values})`).run({ ...first!, seq: 0 })).toThrow(
      /after the head only/,
    );
    expect(() => db.prepare(`INSERT INTO audit (${COLS}) VALUES (${values})`).run({ ...first!, seq: -5 })).toThrow(
      /after the head only/,
    );
    expect(rows().map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('still lets AuditLog append at the end', async () => {
    await seed(2);
    const log = new AuditLog(db);
    await expect(log.append({ event: label('after') })).resolves.toMatchObject({ seq: 3 });
    await log.close();
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 3 });
  });

  it('refuses a checkpoint placed behind the latest one', () => {
    const ins = db.prepare(
      "INSERT INTO audit_checkpoints (seq, head_hash, ts, signature, public_key) VALUES (?, 'h', 1, 's', 'k')",
    );
    ins.run(5);
    ins.run(5);
    expect(() => ins.run(4)).toThrow(/append-only/);
  });
});

describe('audit table: what an operator with SQL could try', () => {
  it('refuses UPDATE and DELETE of a row, and on PostgreSQL TRUNCATE too', async () => {
    await seed(3);
    expect(() => db.prepare("UPDATE audit SET decision = 'allow' WHERE seq = 2").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit WHERE seq = 3').run()).toThrow(/append-only/);
    if (!onSqlite()) expect(() => db.exec('TRUNCATE audit')).toThrow(/append-only: TRUNCATE refused/);
    expect(rows().map((r) => [r.seq, r.decision])).toEqual([
      [1, 'allow'],
      [2, 'deny'],
      [3, 'allow'],
    ]);
    expect(verifyChain(db)).toMatchObject({ ok: true, count: 3 });
  });
});
