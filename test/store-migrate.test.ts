import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, createCheckpoint, generateCheckpointKeyPair } from '../src/audit/index.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, TokenStore } from '../src/gateway/tokens.ts';
import { openDb } from '../src/store/db.ts';
import { ROOT } from './support/policies.ts';
import { freshPgDatabase } from './support/postgres.ts';

/**
 * `warden store migrate`: a SQLite store written by real Warden services is
 * copied into PostgreSQL, and the copy is the same store — its audit chain
 * verifies, its tokens authenticate, its halt still holds.
 */

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/index.ts'), ...args],
      {
        cwd: ROOT,
        env: { ...process.env, LOG_LEVEL: 'silent', WARDEN_CHECKPOINT_KEY: '', WARDEN_CHECKPOINT_WITNESS: '' },
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

const AUDIT_ROWS = 1_234;
let dir: string;
let sqlitePath: string;
let token: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-migrate-'));
  sqlitePath = join(dir, 'warden.db');
  const db = openDb(sqlitePath);
  const audit = new AuditLog(db);
  for (let i = 0; i < AUDIT_ROWS; i++)
    await audit.append({ event: 'call.decided', agent: 'support-triage', tool: 'search', decision: 'allow' });
  createCheckpoint(db, generateCheckpointKeyPair().privateKeyPem);
  token = createAgentToken(db, 'support-triage');
  const killSwitch = new KillSwitch({ db, audit });
  await killSwitch.halt({ scope: 'agent', agent: 'billing', reason: 'runaway loop', actor: 'cli:alice' });
  killSwitch.stop();
  await audit.close();
  db.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('warden store migrate', () => {
  it('copies a SQLite store into PostgreSQL in batches, with progress, and the chain verifies there', async () => {
    const url = await freshPgDatabase();
    // Counts the INSERT statements into audit on the target, so the batches themselves are seen.
    const prepared = openDb(url);
    try {
      prepared.exec(`CREATE TABLE test_audit_inserts (n integer);
        CREATE FUNCTION test_audit_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN INSERT INTO test_audit_inserts VALUES (1); RETURN NULL; END $$;
        CREATE TRIGGER test_audit_inserted AFTER INSERT ON audit
          FOR EACH STATEMENT EXECUTE FUNCTION test_audit_inserted();`);
    } finally {
      prepared.close();
    }
    const run = await cli(['store', 'migrate', '--from', sqlitePath, '--to', url, '--batch', '100']);
    expect(run.stderr).toMatch(/^audit: \d+\/\d+ rows$/m);
    expect(run.code, run.stderr).toBe(0);
    // The halt added one audit row to those appended.
    const auditTotal = AUDIT_ROWS + 1;
    expect(run.stderr).toContain(`audit: ${auditTotal}/${auditTotal} rows`);
    expect(run.stderr).toContain('agent_tokens: 1/1 rows');
    expect(run.stdout).toMatch(/^OK: copied \d+ rows in \d+ tables/);
    expect(run.stdout).not.toContain('password');

    const verify = await cli(['audit', 'verify', '--db', url]);
    expect(verify.stdout + verify.stderr).toContain(`OK: ${auditTotal} rows`);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);

    const target = openDb(url);
    try {
      // 1,235 rows at --batch 100: twelve full INSERTs and one of 35.
      expect(target.prepare('SELECT count(*) FROM test_audit_inserts').pluck().get()).toBe(Math.ceil(auditTotal / 100));
      expect(new TokenStore(target).authenticate(token)).toMatchObject({ ok: true, agent: 'support-triage' });
      const audit = new AuditLog(target);
      const killSwitch = new KillSwitch({ db: target, audit });
      expect(killSwitch.check('billing')).toMatchObject({ reason: 'runaway loop' });
      killSwitch.stop();
      // The chain goes on from the copied head.
      await audit.append({ event: 'call.decided', agent: 'support-triage', decision: 'allow' });
      await audit.close();
    } finally {
      target.close();
    }
    const after = await cli(['audit', 'verify', '--db', url]);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    expect(after.stdout).toContain(`OK: ${auditTotal + 1} rows`);
  });

  it('refuses a target that already holds data, naming the table, and leaves it as it was', async () => {
    const url = await freshPgDatabase();
    const target = openDb(url);
    createAgentToken(target, 'support-triage');
    target.close();
    const run = await cli(['store', 'migrate', '--from', sqlitePath, '--to', url]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('target is not empty: table agent_tokens has 1 row');
    const verify = await cli(['audit', 'verify', '--db', url]);
    expect(verify.stdout).toContain('OK: 0 rows');
  });

  it('refuses a missing source file and a bad batch size, naming the option', async () => {
    const url = await freshPgDatabase();
    const missing = await cli(['store', 'migrate', '--from', join(dir, 'nope.db'), '--to', url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--from: no Warden database at');
    const batch = await cli(['store', 'migrate', '--from', sqlitePath, '--to', url, '--batch', '0']);
    expect(batch.code).toBe(2);
    expect(batch.stderr).toContain('--batch must be a positive whole number');
  });
});
