import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CANONICAL_COLUMNS, canonicalRow } from '../src/audit/canonical.ts';
import { AuditLog, rowHash, verifyChain, type AuditRow } from '../src/audit/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { attackerConnection } from './support/attacker.ts';
import { ManualClock } from './support/manual-clock.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';

/*
 * Tampering the verifier must catch, column by column. The columns come from
 * the table itself (PRAGMA table_info), not from CANONICAL_COLUMNS: a column
 * that fell out of the canonical form would otherwise fall out of the test too.
 */

let dir: string;
let dbPath: string;
const handles: { close(): unknown; open: boolean }[] = [];
const clock = new ManualClock(1_790_000_000_000);

function wardenDb(): Db {
  const d = openDb(dbPath);
  handles.push(d);
  return d;
}

/** A connection with the append-only triggers gone: the attacker with the file, or a superuser. */
function attacker(): Db {
  const d = attackerConnection(dbPath);
  handles.push(d);
  return d;
}

const rowsOf = (d: Db) => d.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();

/** Five rows with every column filled, so each one has a value to change. */
async function seedFull(): Promise<void> {
  const log = new AuditLog(wardenDb(), { clock });
  for (let i = 1; i <= 5; i++) {
    await log.append({
      event: 'approval.decided',
      callId: `c${i}`,
      agent: 'support-triage',
      owner: 'U0OWNER',
      server: 'crm',
      tool: 'refund_request',
      args: { amount: i * 10 },
      result: { ok: true },
      decision: 'approved',
      reason: 'checked the order',
      approver: 'U0APPROVER',
      durationMs: 100 + i,
      detail: { channel: 'C0APPROVALS' },
    });
  }
}

/** Rewrites the rows from `fromSeq` on as given, relinking and rehashing each one: a forger who knows the hash. */
function rehashFrom(d: Db, rows: AuditRow[], fromIndex: number): AuditRow[] {
  const out = rows.slice(0, fromIndex);
  for (const r of rows.slice(fromIndex)) {
    const prev = out.at(-1);
    const unhashed = { ...r, prev_hash: prev ? prev.hash : r.prev_hash };
    out.push({ ...unhashed, hash: rowHash(unhashed) });
  }
  d.transaction(() => {
    d.exec('DELETE FROM audit');
    const cols = Object.keys(out[0]!);
    const insert = d.prepare(`INSERT INTO audit (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`);
    for (const r of out) insert.run(r);
  })();
  return out;
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-tamper-'));
  dbPath = await storeLocation(dir);
});

afterEach(() => {
  for (const h of handles.splice(0)) if (h.open) h.close();
  rmSync(dir, { recursive: true, force: true });
});

/** On PostgreSQL, the columns of its own schema (db/postgres/), as migrated into a fresh one. */
async function postgresAuditColumns(): Promise<string[]> {
  const w = openDb(await storeLocation(''));
  const cols = w
    .prepare<[], { name: string }>(
      "SELECT column_name AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'audit' ORDER BY ordinal_position",
    )
    .all()
    .map((c) => c.name);
  w.close();
  return cols;
}
function sqliteAuditColumns(): string[] {
  // The schema as the migrations create it, read back from a throwaway database.
  const tmp = mkdtempSync(join(tmpdir(), 'warden-audit-cols-'));
  const w = openDb(join(tmp, 'cols.db'));
  const cols = w
    .prepare<[], { name: string }>('PRAGMA table_info(audit)')
    .all()
    .map((c) => c.name);
  w.close();
  rmSync(tmp, { recursive: true, force: true });
  return cols;
}
const tableColumns = onSqlite() ? sqliteAuditColumns() : await postgresAuditColumns();
const hashedColumns = tableColumns.filter((c) => c !== 'hash');

describe('the row hash covers every stored column', () => {
  it('the canonical form names every column of the audit table except hash', () => {
    expect(hashedColumns.length).toBe(16);
    expect([...CANONICAL_COLUMNS]).toEqual([...hashedColumns].sort());
  });

  it.each(hashedColumns)('an edit to %s alone (hash left as it was) is detected', async (column) => {
    await seedFull();
    const a = attacker();
    const before = rowsOf(a).find((r) => r.seq === 3)!;
    const value = before[column as keyof AuditRow];
    expect(value, `seed row 3 has a value in ${column}`).not.toBeNull();
    // seq moves the row to the end (its own slot would collide); the others change in place.
    const changed =
      column === 'seq'
        ? 100
        : typeof value === 'number'
          ? value + 1
          : column === 'prev_hash'
            ? 'e'.repeat(64)
            : `${value}x`;
    a.prepare(`UPDATE audit SET ${column} = ? WHERE seq = 3`).run(changed);
    const r = verifyChain(wardenDb());
    expect(r.ok).toBe(false);
    expect(r.count).toBeLessThan(5);
    expect(r.firstProblem!.seq).toBeLessThanOrEqual(column === 'seq' ? 4 : 3);
  });

  it.each(hashedColumns.filter((c) => c !== 'seq' && c !== 'prev_hash'))(
    'an edit to %s of the last row (no next row to expose it) is detected as altered',
    async (column) => {
      await seedFull();
      const a = attacker();
      const last = rowsOf(a).at(-1)!;
      const value = last[column as keyof AuditRow];
      a.prepare(`UPDATE audit SET ${column} = ? WHERE seq = ?`).run(
        typeof value === 'number' ? value + 1 : `${value}x`,
        last.seq,
      );
      expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 5, kind: 'altered' });
    },
  );

  it('the row hash of a fixed row is a known answer (a change to the canonical form must be deliberate)', () => {
    const row = {
      seq: 7,
      ts: 1_790_000_000_123,
      event: 'call.completed',
      call_id: 'c-7',
      agent: 'support-triage',
      owner: 'U0OWNER',
      server: 'crm',
      tool: 'refund_request',
      args: '{"amount":10}',
      result: '{"ok":true}',
      decision: 'approved',
      reason: 'looks fine',
      approver: 'U0APPROVER',
      duration_ms: 42,
      detail: '{"k":"v"}',
      prev_hash: 'ab'.repeat(32),
    };
    expect(canonicalRow(row)).toBe(
      '{"agent":"support-triage","approver":"U0APPROVER","args":"{\\"amount\\":10}","call_id":"c-7","decision":"approved","detail":"{\\"k\\":\\"v\\"}","duration_ms":42,"event":"call.completed","owner":"U0OWNER","prev_hash":"abababababababababababababababababababababababababababababababab","reason":"looks fine","result":"{\\"ok\\":true}","seq":7,"server":"crm","tool":"refund_request","ts":1790000000123}',
    );
    expect(rowHash(row)).toBe('ae4d7c40f6e941e9cc5a89b2709dca4b0b4cc72a1d713299b53cb94f09d0827c');
    // Nulls are hashed as null, not dropped: the same row with two columns empty.
    expect(rowHash({ ...row, approver: null, reason: null })).toBe(
      'dbfb42c940ce4fffc7205d240f7f33e371dc6bfb8549cfcff10f6a440cc73b64',
    );
  });
});

describe('renumbered rows', () => {
  it('the last row renumbered with its hash recomputed is detected as altered', async () => {
    await seedFull();
    const a = attacker();
    const rows = rowsOf(a);
    rehashFrom(
      a,
      rows.map((r) => (r.seq === 5 ? { ...r, seq: 7 } : r)),
      4,
    );
    const r = verifyChain(wardenDb());
    expect(r.ok).toBe(false);
    expect(r.count).toBe(4);
    expect(r.firstProblem).toMatchObject({ seq: 7, kind: 'altered' });
    expect(r.firstProblem!.message).toMatch(/seq jumps from 4 to 7/);
  });

  it('a gap opened mid-chain with every later row relinked and rehashed is detected as altered', async () => {
    await seedFull();
    const a = attacker();
    const rows = rowsOf(a);
    rehashFrom(
      a,
      rows.map((r) => (r.seq >= 3 ? { ...r, seq: r.seq + 1 } : r)),
      2,
    );
    const r = verifyChain(wardenDb());
    expect(r.count).toBe(2);
    expect(r.firstProblem).toMatchObject({ seq: 4, kind: 'altered' });
  });
});
