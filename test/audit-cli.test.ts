import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, verifyCheckpoint, type Checkpoint } from '../src/audit/index.ts';
import { openDb } from '../src/store/db.ts';
import { attackerConnection, removeGuard } from './support/attacker.ts';
import { storeLocation } from './support/store-under-test.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
let dir: string;
let dbPath: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(root, 'src/cli/index.ts'), ...args],
      { cwd: root, env: { ...process.env, LOG_LEVEL: 'silent', WARDEN_CHECKPOINT_KEY: '', ...env } },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

async function seed(path: string): Promise<void> {
  const db = openDb(path);
  const log = new AuditLog(db);
  for (let i = 1; i <= 6; i++) {
    await log.append({
      event: 'call.decided',
      agent: 'support-triage',
      server: 'tickets',
      tool: 'send_customer_email',
      decision: i % 2 ? 'deny' : 'allow',
      reason: i === 3 ? '=1+1' : `r${i}`,
    });
  }
  db.close();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-cli-'));
  dbPath = await storeLocation(dir);
  await seed(dbPath);
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('warden audit (CLI)', () => {
  it('keygen → checkpoint → verify OK (exit 0), then a tail cut is caught with --checkpoint (exit 1)', async () => {
    const keygen = await cli(['audit', 'keygen']);
    expect(keygen.code).toBe(0);
    expect(keygen.stdout).toContain('-----BEGIN PRIVATE KEY-----');
    expect(keygen.stdout).toContain('-----BEGIN PUBLIC KEY-----');
    const key = /^WARDEN_CHECKPOINT_KEY=(\S+)$/m.exec(keygen.stdout)![1]!;

    const missingKey = await cli(['audit', 'checkpoint', '--db', dbPath]);
    expect(missingKey.code).toBe(2);
    expect(missingKey.stderr).toMatch(/WARDEN_CHECKPOINT_KEY is not set/);

    const cpRun = await cli(['audit', 'checkpoint', '--db', dbPath], { WARDEN_CHECKPOINT_KEY: key });
    expect(cpRun.code).toBe(0);
    const cp = JSON.parse(cpRun.stdout) as Checkpoint;
    expect(cp.seq).toBe(6);
    expect(verifyCheckpoint(cp)).toBe(true);

    const ok = await cli(['audit', 'verify', '--db', dbPath]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe(`OK: 6 rows, head ${cp.head_hash}\n`);
    expect(ok.stderr).toMatch(/checked against the keys they carry; pass --public-key/);

    // The attacker cuts the tail and the stored checkpoint too.
    const raw = attackerConnection(dbPath);
    removeGuard(raw, 'audit_checkpoints', 'audit_checkpoints_no_delete');
    raw.exec('DELETE FROM audit WHERE seq > 4; DELETE FROM audit_checkpoints;');
    raw.close();
    const blind = await cli(['audit', 'verify', '--db', dbPath]);
    expect(blind.stdout).toMatch(/^OK: 4 rows/);
    // An OK without any checkpoint says it cannot see a cut tail.
    expect(blind.stderr).toMatch(/no checkpoint was checked, so a cut tail cannot be detected/);
    const caught = await cli(['audit', 'verify', '--db', dbPath, '--checkpoint', `${cp.seq}:${cp.head_hash}`]);
    expect(caught.code).toBe(1);
    expect(caught.stdout).toMatch(/^BROKEN at seq 5 \(truncated\): /);
  });

  it('verify exits 1 with "BROKEN at seq N (kind)" on an edited row; 2 on a missing database or bad --checkpoint', async () => {
    const edited = await storeLocation(dir, 'edited.db');
    const db = openDb(edited);
    const log = new AuditLog(db);
    for (let i = 0; i < 5; i++) await log.append({ event: 'call.decided', decision: 'deny' });
    db.close();
    const raw = attackerConnection(edited);
    raw.exec("UPDATE audit SET decision = 'allow' WHERE seq = 3;");
    raw.close();
    const broken = await cli(['audit', 'verify', '--db', edited]);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/^BROKEN at seq 3 \(altered\): row 3 does not match its hash/);

    const missing = await cli(['audit', 'verify', '--db', join(dir, 'nope.db')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no Warden database at .*nope\.db/);

    const badRef = await cli(['audit', 'verify', '--db', dbPath, '--checkpoint', '12:zz']);
    expect(badRef.code).toBe(2);
    expect(badRef.stderr).toMatch(/--checkpoint must be SEQ:HASH/);
  });

  it('query prints csv/json/table, takes WARDEN_DB, and refuses a bad query with exit 2', async () => {
    const dbPath = await storeLocation(dir, 'query.db');
    await seed(dbPath);
    const csv = await cli(['audit', 'query', 'decision:denied', 'format:csv', '--db', dbPath]);
    expect(csv.code).toBe(0);
    const lines = csv.stdout.trimEnd().split('\r\n');
    expect(lines[0]!.startsWith('seq,ts,event')).toBe(true);
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual(['5', '3', '1']);
    expect(csv.stdout).toContain(",'=1+1,");

    const json = await cli(['audit', 'query', 'agent:support-triage limit:2', '--format', 'json'], {
      WARDEN_DB: dbPath,
    });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).map((r: { seq: number }) => r.seq)).toEqual([6, 5]);
    expect(json.stderr).toContain('--before 5');

    const table = await cli(['audit', 'query', '--db', dbPath]);
    expect(table.stdout.split('\n')[0]).toMatch(/^SEQ\s+TIME \(UTC\)/);

    const bad = await cli(['audit', 'query', 'colour:red', '--db', dbPath]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/QUERY_INVALID: unknown key "colour".*Example: /);
  });
});
