import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditLog,
  GENESIS_HASH,
  appendWitness,
  checkpointText,
  createCheckpoint,
  generateCheckpointKeyPair,
  listCheckpoints,
  loadPrivateKey,
  parseCheckpointText,
  readWitness,
  rowHash,
  verifyChain,
  verifyCheckpoint,
  type AuditRow,
} from '../src/audit/index.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { attackerConnection, removeGuard } from './support/attacker.ts';
import { ManualClock } from './support/manual-clock.ts';
import { storeLocation } from './support/store-under-test.ts';

import type { AuditEvent } from '../src/audit/types.ts';
/** These tests exercise the chain itself: any label will do as an event name. */
const label = (name: string) => name as AuditEvent;

let dir: string;
let dbPath: string;
const handles: { close(): unknown; open: boolean }[] = [];

// Never moved: every row and checkpoint carries this one time.
const clock = new ManualClock(1_790_000_000_000);

function wardenDb(): Db {
  const d = openDb(dbPath);
  handles.push(d);
  return d;
}

/** The attacker: a separate connection with the append-only triggers gone (test/support/attacker.ts). */
function attacker(): Db {
  const d = attackerConnection(dbPath);
  handles.push(d);
  return d;
}

const COLS =
  'seq, ts, event, call_id, agent, owner, server, tool, args, result, decision, reason, approver, duration_ms, detail, prev_hash, hash';
const rowsOf = (d: Db) => d.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').all();
const insertRow = (d: Db, r: AuditRow) =>
  d
    .prepare(
      `INSERT INTO audit (${COLS}) VALUES (${COLS.split(', ')
        .map((c) => `@${c}`)
        .join(', ')})`,
    )
    .run(r);

/** Rewrites the table as `rows` (the attacker editing the file wholesale). */
function rewrite(d: Db, rows: AuditRow[]): void {
  d.transaction(() => {
    d.exec('DELETE FROM audit');
    for (const r of rows) insertRow(d, r);
  })();
}

async function seed(n: number): Promise<void> {
  const d = wardenDb();
  const log = new AuditLog(d, { clock });
  for (let i = 1; i <= n; i++) {
    await log.append({
      event: 'call.decided',
      callId: `c${i}`,
      agent: 'support-triage',
      server: 'crm',
      tool: 'refund_request',
      args: { amount: i * 10 },
      decision: i % 3 === 0 ? 'deny' : 'allow',
    });
  }
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-verify-'));
  dbPath = await storeLocation(dir);
});

afterEach(() => {
  for (const h of handles.splice(0)) if (h.open) h.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('verifyChain', () => {
  it('reports OK with the count and head for an intact chain, and for an empty one', async () => {
    expect(verifyChain(wardenDb())).toMatchObject({ ok: true, count: 0, head: { seq: 0, hash: GENESIS_HASH } });
    await seed(10);
    const d = wardenDb();
    const last = rowsOf(d).at(-1)!;
    const report = verifyChain(d);
    expect(report).toEqual({
      ok: true,
      count: 10,
      head: { seq: 10, hash: last.hash },
      checkpointsChecked: 0,
      signedCount: 0,
      newestSigned: undefined,
      firstProblem: undefined,
    });
  });

  it('detects an edited row (altered)', async () => {
    await seed(10);
    attacker().prepare("UPDATE audit SET decision = 'allow' WHERE seq = 6").run();
    const r = verifyChain(wardenDb());
    expect(r.ok).toBe(false);
    expect(r.count).toBe(5);
    expect(r.firstProblem).toMatchObject({ seq: 6, kind: 'altered' });
    expect(r.firstProblem!.message).toMatch(/row 6 does not match its hash/);
  });

  it('detects an edited row whose hash the attacker recomputed (altered, via the next link)', async () => {
    await seed(10);
    const a = attacker();
    const row = rowsOf(a).find((r) => r.seq === 4)!;
    const forged = { ...row, decision: 'allow', reason: 'nothing to see' };
    a.prepare('UPDATE audit SET decision = ?, reason = ?, hash = ? WHERE seq = 4').run(
      forged.decision,
      forged.reason,
      rowHash(forged),
    );
    expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 4, kind: 'altered' });
  });

  it('detects a deleted row (missing: seq gap)', async () => {
    await seed(10);
    attacker().prepare('DELETE FROM audit WHERE seq = 7').run();
    const r = verifyChain(wardenDb());
    expect(r.firstProblem).toMatchObject({ seq: 7, kind: 'missing' });
    expect(r.firstProblem!.message).toMatch(/row 7 is missing/);
  });

  it('detects a deleted row when the rest were renumbered to close the gap (missing)', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a)
      .filter((r) => r.seq !== 5)
      .map((r) => (r.seq > 5 ? { ...r, seq: r.seq - 1 } : r));
    rewrite(a, rows);
    expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 5, kind: 'missing' });
  });

  it('detects the oldest rows cut away (missing from seq 1)', async () => {
    await seed(10);
    attacker().prepare('DELETE FROM audit WHERE seq <= 3').run();
    const r = verifyChain(wardenDb());
    expect(r.firstProblem).toMatchObject({ seq: 1, kind: 'missing' });
    expect(r.firstProblem!.message).toMatch(/rows 1\.\.3 are missing/);
  });

  it('detects a forged row inserted in the middle with a valid-looking hash (inserted)', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const before = rows[3]!; // seq 4
    const forgedBase = {
      ...before,
      seq: 5,
      call_id: 'forged',
      decision: 'approved',
      approver: 'U0ATTACKER',
      prev_hash: before.hash,
    };
    const forged = { ...forgedBase, hash: rowHash(forgedBase) };
    rewrite(a, [...rows.slice(0, 4), forged, ...rows.slice(4).map((r) => ({ ...r, seq: r.seq + 1 }))]);
    const r = verifyChain(wardenDb());
    expect(r.count).toBe(5); // the forged row itself links and hashes; the next row exposes it
    expect(r.firstProblem).toMatchObject({ seq: 5, kind: 'inserted' });
    expect(r.firstProblem!.message).toMatch(/row 5 is not in the original chain/);
  });

  it('detects a forged row inserted with a junk hash (inserted, the next row links past it)', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const forged = { ...rows[3]!, seq: 5, call_id: 'forged', prev_hash: rows[3]!.hash, hash: 'f'.repeat(64) };
    rewrite(a, [...rows.slice(0, 4), forged, ...rows.slice(4).map((r) => ({ ...r, seq: r.seq + 1 }))]);
    expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 5, kind: 'inserted' });
  });

  it('detects two rows swapped (reordered)', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const swapped = rows.map((r) =>
      r.seq === 3 ? { ...rows[3]!, seq: 3 } : r.seq === 4 ? { ...rows[2]!, seq: 4 } : r,
    );
    rewrite(a, swapped);
    const r = verifyChain(wardenDb());
    expect(r.firstProblem).toMatchObject({ seq: 3, kind: 'reordered' });
    expect(r.count).toBe(2);
  });

  it('reports only the FIRST problem when there are several', async () => {
    await seed(10);
    const a = attacker();
    a.prepare('DELETE FROM audit WHERE seq = 8').run();
    a.prepare("UPDATE audit SET agent = 'someone-else' WHERE seq = 3").run();
    expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 3, kind: 'altered' });
  });

  it('cannot see a clean tail cut without a checkpoint — which is what checkpoints are for', async () => {
    await seed(10);
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    expect(verifyChain(wardenDb())).toMatchObject({ ok: true, count: 7 });
  });

  it('detects a tail cut with an externally supplied checkpoint (truncated)', async () => {
    await seed(10);
    const head = rowsOf(wardenDb()).at(-1)!;
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    const r = verifyChain(wardenDb(), { checkpoints: [{ seq: 10, head_hash: head.hash }] });
    expect(r.ok).toBe(false);
    expect(r.firstProblem).toMatchObject({ seq: 8, kind: 'truncated' });
    expect(r.firstProblem!.message).toMatch(/rows 8\.\.10 were cut/);
  });

  it('passes against a checkpoint that matches, and an intact chain longer than the checkpoint', async () => {
    await seed(6);
    const d = wardenDb();
    const at6 = rowsOf(d).at(-1)!;
    const log = new AuditLog(d, { clock });
    await log.append({ event: label('later') });
    expect(verifyChain(d, { checkpoints: [{ seq: 6, head_hash: at6.hash.toUpperCase() }] })).toMatchObject({
      ok: true,
      count: 7,
      checkpointsChecked: 1,
    });
  });

  it('detects a tail cut and re-appended rows that differ from the checkpoint (truncated)', async () => {
    await seed(10);
    const head = rowsOf(wardenDb()).at(-1)!;
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    const log = new AuditLog(wardenDb(), { clock });
    for (let i = 0; i < 5; i++) await log.append({ event: 'call.decided', callId: `rewritten${i}` });
    const r = verifyChain(wardenDb(), { checkpoints: [{ seq: 10, head_hash: head.hash }] });
    expect(r.firstProblem).toMatchObject({ seq: 10, kind: 'truncated' });
  });
});

describe('checkpoints', () => {
  it('signs the head, stores it, and verifies; a changed field or another key fails', async () => {
    await seed(5);
    const keys = generateCheckpointKeyPair();
    const d = wardenDb();
    const cp = createCheckpoint(d, keys.privateKeyPem, clock);
    expect(cp).toMatchObject({
      seq: 5,
      head_hash: rowsOf(d).at(-1)!.hash,
      ts: clock.now(),
      public_key: keys.publicKeyBase64,
    });
    expect(listCheckpoints(d)).toEqual([cp]);
    expect(verifyCheckpoint(cp)).toBe(true);
    expect(verifyCheckpoint(cp, keys.publicKeyPem)).toBe(true);
    expect(verifyCheckpoint({ ...cp, seq: 4 })).toBe(false);
    expect(verifyCheckpoint({ ...cp, head_hash: 'a'.repeat(64) })).toBe(false);
    expect(verifyCheckpoint({ ...cp, ts: cp.ts + 1 })).toBe(false);
    // Re-signed by someone else: valid on its own, refused against the trusted key.
    const other = generateCheckpointKeyPair();
    const forged = createCheckpoint(wardenDb(), other.privateKeyBase64, clock);
    expect(verifyCheckpoint(forged)).toBe(true);
    expect(verifyCheckpoint(forged, keys.publicKeyBase64)).toBe(false);
  });

  it('accepts the key as PEM or base64 PKCS#8 DER, and refuses a non-Ed25519 or garbage key without echoing it', () => {
    const keys = generateCheckpointKeyPair();
    expect(loadPrivateKey(keys.privateKeyPem).asymmetricKeyType).toBe('ed25519');
    expect(loadPrivateKey(keys.privateKeyBase64).asymmetricKeyType).toBe('ed25519');
    let err: unknown;
    try {
      loadPrivateKey('not-a-key-SECRETVALUE');
    } catch (e) {
      err = e;
    }
    expect(isWardenError(err, 'CONFIG_INVALID')).toBe(true);
    expect(String((err as Error).message)).not.toContain('SECRETVALUE');
  });

  it('a stored checkpoint makes verifyChain detect a tail cut (truncated)', async () => {
    await seed(10);
    const keys = generateCheckpointKeyPair();
    createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    expect(verifyChain(wardenDb())).toMatchObject({ ok: true, count: 10, checkpointsChecked: 1 });
    attacker().prepare('DELETE FROM audit WHERE seq > 6').run();
    const r = verifyChain(wardenDb());
    expect(r.firstProblem).toMatchObject({ seq: 7, kind: 'truncated' });
    expect(r.firstProblem!.message).toMatch(/signed checkpoint/);
  });

  it('a forged stored checkpoint is reported, and a trusted key rejects one signed by another key', async () => {
    await seed(4);
    const keys = generateCheckpointKeyPair();
    const cp = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    const a = attacker();
    removeGuard(a, 'audit_checkpoints', 'audit_checkpoints_no_update');
    a.prepare('UPDATE audit_checkpoints SET seq = 3').run();
    expect(verifyChain(wardenDb()).firstProblem).toMatchObject({ seq: 3, kind: 'altered' });
    a.prepare('UPDATE audit_checkpoints SET seq = ?').run(cp.seq);
    expect(verifyChain(wardenDb()).ok).toBe(true);
    const stranger = generateCheckpointKeyPair();
    const r = verifyChain(wardenDb(), { trustedPublicKey: stranger.publicKeyPem });
    expect(r.ok).toBe(false);
    expect(r.firstProblem!.message).toMatch(/trusted public key/);
  });

  it('an unreadable trusted key is an input error, not a report of tampering', async () => {
    await seed(2);
    createCheckpoint(wardenDb(), generateCheckpointKeyPair().privateKeyPem, clock);
    expect(() => verifyChain(wardenDb(), { trustedPublicKey: 'not-a-key' })).toThrow(/public key is not readable/);
  });
});

describe('signed checkpoints from outside the database', () => {
  it('a trusted key with no checkpoint signed by it is uncovered, even with every row intact', async () => {
    await seed(6);
    const keys = generateCheckpointKeyPair();
    const r = verifyChain(wardenDb(), { trustedPublicKey: keys.publicKeyPem });
    expect(r).toMatchObject({ ok: false, count: 6, signedCount: 0, firstProblem: { seq: 1, kind: 'uncovered' } });
    expect(r.firstProblem!.message).toMatch(/no checkpoint signed by the trusted public key/);
    // One checkpoint by that key covers it.
    createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    expect(verifyChain(wardenDb(), { trustedPublicKey: keys.publicKeyPem })).toMatchObject({
      ok: true,
      signedCount: 1,
      newestSigned: { seq: 6 },
    });
  });

  it('an external checkpoint catches a cut tail whose stored checkpoints were deleted too', async () => {
    await seed(10);
    const keys = generateCheckpointKeyPair();
    const cp = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    const a = attacker();
    removeGuard(a, 'audit_checkpoints', 'audit_checkpoints_no_delete');
    a.exec('DELETE FROM audit_checkpoints; DELETE FROM audit WHERE seq > 7');
    expect(verifyChain(wardenDb()).ok).toBe(true);
    const external = [{ checkpoint: cp, source: 'the compliance channel C1 (message 1.000001)' }];
    const r = verifyChain(wardenDb(), { external, trustedPublicKey: keys.publicKeyBase64 });
    expect(r.firstProblem).toMatchObject({ seq: 8, kind: 'truncated' });
    expect(r.firstProblem!.message).toContain('from the compliance channel C1 (message 1.000001)');
  });

  it('an external checkpoint that does not verify is reported as forged, naming where it was found', async () => {
    await seed(3);
    const keys = generateCheckpointKeyPair();
    const cp = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    const r = verifyChain(wardenDb(), { external: [{ checkpoint: { ...cp, seq: 2 }, source: 'witness w:4' }] });
    expect(r.firstProblem).toMatchObject({ seq: 2, kind: 'altered' });
    expect(r.firstProblem!.message).toMatch(/from witness w:4 at seq 2 does not verify: it was forged/);
  });
});

describe('checkpoint witness file', () => {
  it('appends one JSON line per checkpoint and reads them back with where each came from', async () => {
    await seed(4);
    const keys = generateCheckpointKeyPair();
    const file = join(dir, 'witness.jsonl');
    const first = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    appendWitness(file, first);
    await seed(2);
    const second = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    appendWitness(file, second);
    expect(readFileSync(file, 'utf8').trimEnd().split('\n')).toHaveLength(2);
    expect(readWitness(file)).toEqual([
      { checkpoint: first, source: `witness ${file}:1` },
      { checkpoint: second, source: `witness ${file}:2` },
    ]);
  });

  it('a line that is not a checkpoint is bad input naming the file, line and field', async () => {
    const file = join(dir, 'witness.jsonl');
    writeFileSync(file, `${JSON.stringify({ seq: 1, head_hash: 'x', ts: 1, signature: 's', public_key: 'k' })}\n`);
    expect(() => readWitness(file)).toThrow(`witness ${file}:1: head_hash: expected 64 lowercase hex digits`);
    writeFileSync(file, '\n{oops\n');
    expect(() => readWitness(file)).toThrow(`witness ${file}:2: not a JSON line`);
    expect(() => readWitness(join(dir, 'absent'))).toThrow(/cannot use the checkpoint witness .*absent: ENOENT/);
  });
});

describe('checkpoint message text', () => {
  it('reads back every signed field of the text Warden posts, and nothing from other text', async () => {
    await seed(2);
    const cp = createCheckpoint(wardenDb(), generateCheckpointKeyPair().privateKeyPem, clock);
    expect(parseCheckpointText(checkpointText(cp))).toEqual(cp);
    expect(parseCheckpointText(`hello\n${checkpointText(cp)}`)).toBeUndefined();
    expect(parseCheckpointText(checkpointText(cp).replace(/^hash .*$/m, 'hash `zz`'))).toBeUndefined();
  });
});

describe('what verifyChain says about each finding', () => {
  /** The 12-digit form messages use for a hash. */
  const short = (h: string) => `${h.slice(0, 12)}…`;

  it('an edited row: the stored and the recomputed hash, and the rows before it as the verified head', async () => {
    await seed(10);
    attacker().prepare("UPDATE audit SET decision = 'allow' WHERE seq = 6").run();
    const d = wardenDb();
    const [row5, row6] = rowsOf(d).slice(4, 6);
    const r = verifyChain(d);
    expect(r).toMatchObject({ ok: false, count: 5, head: { seq: 5, hash: row5!.hash } });
    expect(r.firstProblem!.message).toBe(
      `row 6 does not match its hash (stored ${short(row6!.hash)}, computed ${short(rowHash(row6!))}): its content was changed`,
    );
  });

  it('a row rewritten with a fresh hash is named by the next row, which still links to the old one', async () => {
    await seed(10);
    const a = attacker();
    const row = rowsOf(a).find((r) => r.seq === 4)!;
    const forged = { ...row, decision: 'deny' };
    expect(row.decision).toBe('allow');
    a.prepare('UPDATE audit SET decision = ?, hash = ? WHERE seq = 4').run(forged.decision, rowHash(forged));
    expect(verifyChain(wardenDb()).firstProblem).toEqual({
      seq: 4,
      kind: 'altered',
      message: `row 4 was rewritten with a fresh hash: row 5 still links to its original hash ${short(row.hash)}`,
    });
  });

  it('a first row that links to no row, its own hash intact, is missing rows before it (never a finding at seq 0)', async () => {
    await seed(3);
    const a = attacker();
    const rows = rowsOf(a);
    const first = { ...rows[0]!, prev_hash: 'e'.repeat(64) };
    rewrite(a, [{ ...first, hash: rowHash(first) }, ...rows.slice(1)]);
    expect(verifyChain(wardenDb()).firstProblem).toEqual({
      seq: 1,
      kind: 'missing',
      message: `row 1 links to ${short('e'.repeat(64))}, which no row has: the row before it was removed and later rows renumbered`,
    });
  });

  it('rows renumbered over a deleted one: the row that links to nothing', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const lost = rows[4]!; // seq 5
    rewrite(
      a,
      rows.filter((r) => r.seq !== 5).map((r) => (r.seq > 5 ? { ...r, seq: r.seq - 1 } : r)),
    );
    expect(verifyChain(wardenDb()).firstProblem!.message).toBe(
      `row 5 links to ${short(lost.hash)}, which no row has: the row before it was removed and later rows renumbered`,
    );
  });

  it('a deleted row: which row links to the hash no row has', async () => {
    await seed(10);
    const lost = rowsOf(wardenDb())[6]!; // seq 7
    attacker().prepare('DELETE FROM audit WHERE seq = 7').run();
    expect(verifyChain(wardenDb()).firstProblem!.message).toBe(
      `row 7 is missing: row 8 links to ${short(lost.hash)}, which no row has`,
    );
  });

  it('a row with the genesis prev_hash in the middle claims to start the chain', async () => {
    await seed(10);
    attacker().prepare('UPDATE audit SET prev_hash = ? WHERE seq = 5').run(GENESIS_HASH);
    const r = verifyChain(wardenDb());
    expect(r.count).toBe(4);
    expect(r.firstProblem).toEqual({
      seq: 5,
      kind: 'inserted',
      message: 'row 5 claims to start the chain (genesis prev_hash) but follows row 4',
    });
  });

  it('a row that links to its own hash', async () => {
    await seed(10);
    attacker().prepare('UPDATE audit SET prev_hash = hash WHERE seq = 5').run();
    expect(verifyChain(wardenDb()).firstProblem).toEqual({ seq: 5, kind: 'altered', message: 'row 5 links to itself' });
  });

  it('two forged rows inserted: the range, and the row that links straight past them', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const f5base = { ...rows[3]!, seq: 5, call_id: 'forged-1', prev_hash: rows[3]!.hash };
    const f5 = { ...f5base, hash: rowHash(f5base) };
    const f6base = { ...rows[3]!, seq: 6, call_id: 'forged-2', prev_hash: f5.hash };
    const f6 = { ...f6base, hash: rowHash(f6base) };
    rewrite(a, [...rows.slice(0, 4), f5, f6, ...rows.slice(4).map((r) => ({ ...r, seq: r.seq + 2 }))]);
    const r = verifyChain(wardenDb());
    expect(r.count).toBe(6);
    expect(r.firstProblem).toEqual({
      seq: 5,
      kind: 'inserted',
      message: 'rows 5..6 are not in the original chain: row 7 links straight to row 4',
    });
  });

  it('a forged row with a junk hash: the next row links past it', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    const forged = { ...rows[3]!, seq: 5, call_id: 'forged', prev_hash: rows[3]!.hash, hash: 'f'.repeat(64) };
    rewrite(a, [...rows.slice(0, 4), forged, ...rows.slice(4).map((r) => ({ ...r, seq: r.seq + 1 }))]);
    expect(verifyChain(wardenDb()).firstProblem!.message).toBe(
      'row 5 is not part of the chain: its hash does not match its content and row 6 links past it',
    );
  });

  it('two rows swapped: the row that links to one after it', async () => {
    await seed(10);
    const a = attacker();
    const rows = rowsOf(a);
    rewrite(
      a,
      rows.map((r) => (r.seq === 3 ? { ...rows[3]!, seq: 3 } : r.seq === 4 ? { ...rows[2]!, seq: 4 } : r)),
    );
    expect(verifyChain(wardenDb()).firstProblem!.message).toBe(
      'row 3 is out of place: it links to row 4, which comes after it',
    );
  });

  it('a tail cut: where the chain ends and which checkpoint, the furthest of those past the end, says more', async () => {
    await seed(10);
    const rows = rowsOf(wardenDb());
    const at8 = { seq: 8, head_hash: rows[7]!.hash };
    const at10 = { seq: 10, head_hash: rows[9]!.hash };
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    const message = `the chain ends at seq 7 but the checkpoint 10:${short(at10.head_hash)} recorded seq 10 (head ${short(at10.head_hash)}): rows 8..10 were cut`;
    for (const checkpoints of [
      [at8, at10],
      [at10, at8],
    ]) {
      const r = verifyChain(wardenDb(), { checkpoints });
      expect(r).toMatchObject({ ok: false, count: 7, checkpointsChecked: 2 });
      expect(r.firstProblem).toEqual({ seq: 8, kind: 'truncated', message });
    }
    // A checkpoint's own label, when it has one, names it.
    expect(
      verifyChain(wardenDb(), { checkpoints: [{ ...at10, label: 'the head on the wiki' }] }).firstProblem!.message,
    ).toMatch(/^the chain ends at seq 7 but the the head on the wiki recorded seq 10/);
  });

  it('a tail cut past two checkpoints of the same seq names the first registered: the signed one before one given by hand', async () => {
    await seed(10);
    const head = rowsOf(wardenDb()).at(-1)!;
    createCheckpoint(wardenDb(), generateCheckpointKeyPair().privateKeyPem, clock);
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    const r = verifyChain(wardenDb(), { checkpoints: [{ seq: 10, head_hash: head.hash, label: 'the wiki copy' }] });
    expect(r.checkpointsChecked).toBe(2);
    expect(r.firstProblem!.message).toMatch(
      /^the chain ends at seq 7 but the signed checkpoint of 2026-09-21T14:13:20\.000Z recorded seq 10/,
    );
  });

  it('a chain rebuilt after a cut: the row whose hash differs from the checkpoint', async () => {
    await seed(10);
    const head = rowsOf(wardenDb()).at(-1)!;
    attacker().prepare('DELETE FROM audit WHERE seq > 7').run();
    const log = new AuditLog(wardenDb(), { clock });
    for (let i = 0; i < 5; i++) await log.append({ event: 'call.decided', callId: `rewritten${i}` });
    const rebuilt = rowsOf(wardenDb())[9]!;
    const r = verifyChain(wardenDb(), { checkpoints: [{ seq: 10, head_hash: head.hash }] });
    expect(r).toMatchObject({ count: 9, head: { seq: 9 } });
    expect(r.firstProblem!.message).toBe(
      `row 10 has hash ${short(rebuilt.hash)} but the checkpoint 10:${short(head.hash)} recorded ${short(head.hash)}: the chain was cut and rebuilt at or before this row`,
    );
  });

  it('a checkpoint at seq 0 must name the genesis hash', async () => {
    await seed(2);
    expect(verifyChain(wardenDb(), { checkpoints: [{ seq: 0, head_hash: GENESIS_HASH }] })).toMatchObject({
      ok: true,
      count: 2,
      checkpointsChecked: 1,
    });
    const other = 'a'.repeat(64);
    expect(verifyChain(wardenDb(), { checkpoints: [{ seq: 0, head_hash: other }] }).firstProblem).toEqual({
      seq: 0,
      kind: 'truncated',
      message: `checkpoint 0:${short(other)} names seq 0 with a non-genesis hash`,
    });
  });

  it('a forged stored checkpoint names the table, and a key that is not trusted says so', async () => {
    await seed(4);
    const keys = generateCheckpointKeyPair();
    createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    const a = attacker();
    removeGuard(a, 'audit_checkpoints', 'audit_checkpoints_no_update');
    a.prepare('UPDATE audit_checkpoints SET seq = 3').run();
    expect(verifyChain(wardenDb()).firstProblem!.message).toBe(
      'the signed checkpoint of 2026-09-21T14:13:20.000Z at seq 3 does not verify: audit_checkpoints was tampered with',
    );
    a.prepare('UPDATE audit_checkpoints SET seq = 4').run();
    const stranger = generateCheckpointKeyPair();
    expect(verifyChain(wardenDb(), { trustedPublicKey: stranger.publicKeyPem }).firstProblem).toEqual({
      seq: 4,
      kind: 'altered',
      message:
        'the signed checkpoint of 2026-09-21T14:13:20.000Z at seq 4 does not verify with the trusted public key: audit_checkpoints was tampered with',
    });
  });

  it('the earliest finding wins, whichever was found first; "uncovered" only when nothing worse is found', async () => {
    await seed(8);
    const keys = generateCheckpointKeyPair();
    const cp = createCheckpoint(wardenDb(), keys.privateKeyPem, clock);
    attacker().prepare("UPDATE audit SET decision = 'allow' WHERE seq = 6").run();
    // A forged checkpoint at seq 2 is found before the chain is walked; the edit at 6 after: 2 comes first.
    const early = verifyChain(wardenDb(), { external: [{ checkpoint: { ...cp, seq: 2 }, source: 'w:1' }] });
    expect(early.firstProblem).toMatchObject({ seq: 2, kind: 'altered' });
    // A forged checkpoint past the edit: the edit comes first.
    const late = verifyChain(wardenDb(), { external: [{ checkpoint: { ...cp, seq: 7 }, source: 'w:1' }] });
    expect(late.firstProblem).toMatchObject({ seq: 6, kind: 'altered' });
    // A trusted key nothing is signed by, and an edit: the edit is reported, not "uncovered".
    const stranger = generateCheckpointKeyPair();
    const r = verifyChain(wardenDb(), { trustedPublicKey: stranger.publicKeyBase64 });
    expect(r.signedCount).toBe(0);
    expect(r.firstProblem).toMatchObject({ seq: 6, kind: 'altered' });
    expect(r.firstProblem!.message).toMatch(/^row 6 does not match its hash/);
  });

  it('the newest signed checkpoint is the highest seq, then the latest time, wherever it was found', async () => {
    await seed(4);
    const keys = generateCheckpointKeyPair();
    const T = 1_790_000_000_000;
    const at4 = createCheckpoint(wardenDb(), keys.privateKeyPem, new ManualClock(T));
    await seed(2);
    const at6early = createCheckpoint(wardenDb(), keys.privateKeyPem, new ManualClock(T + 1_000));
    const at6late = createCheckpoint(wardenDb(), keys.privateKeyPem, new ManualClock(T + 2_000));
    // Stored, oldest first: the last stored one is the newest.
    expect(verifyChain(wardenDb())).toMatchObject({
      ok: true,
      signedCount: 3,
      checkpointsChecked: 3,
      newestSigned: { seq: 6, ts: T + 2_000, label: 'signed checkpoint of 2026-09-21T14:13:22.000Z' },
    });
    // Older ones found after it (outside the database) do not replace it; a later one at the same seq does.
    const older = [
      { checkpoint: at6early, source: 'w:1' },
      { checkpoint: at4, source: 'w:2' },
    ];
    const laterStill = createCheckpoint(wardenDb(), keys.privateKeyPem, new ManualClock(T + 3_000));
    const a = attacker();
    removeGuard(a, 'audit_checkpoints', 'audit_checkpoints_no_delete');
    a.prepare('DELETE FROM audit_checkpoints WHERE ts = ?').run(laterStill.ts);
    expect(verifyChain(wardenDb(), { external: older }).newestSigned).toEqual({
      seq: 6,
      ts: T + 2_000,
      label: 'signed checkpoint of 2026-09-21T14:13:22.000Z',
    });
    expect(
      verifyChain(wardenDb(), { external: [...older, { checkpoint: laterStill, source: 'w:3' }] }).newestSigned,
    ).toEqual({ seq: 6, ts: T + 3_000, label: 'checkpoint of 2026-09-21T14:13:23.000Z from w:3' });
    // The same checkpoint seen twice: the first one seen keeps its label.
    expect(verifyChain(wardenDb(), { external: [{ checkpoint: at6late, source: 'w:4' }] })).toMatchObject({
      signedCount: 4,
      newestSigned: { label: 'signed checkpoint of 2026-09-21T14:13:22.000Z' },
    });
  });
});
