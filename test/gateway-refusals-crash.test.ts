import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb, type Db } from '../src/store/db.ts';
import { waitFor } from './support/gateway-harness.ts';
import { startServeChild, type ServeChild } from './support/serve-child.ts';

/*
 * Refused requests are counted in memory for at most about a second before
 * their aggregated row is written: a `warden serve` killed with SIGKILL after
 * N refusals (no shutdown, no flush) leaves all N on the trail.
 */

let dir: string;
let child: ServeChild | undefined;
let db: Db | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-refusals-crash-'));
  writeFileSync(join(dir, 'policy.yml'), readFileSync('examples/seed-policy.yml', 'utf8'));
});

afterAll(async () => {
  await child?.kill('SIGKILL');
  db?.close();
  rmSync(dir, { recursive: true, force: true });
});

function countedFailures(reader: Db): number {
  const rows = reader.prepare("SELECT detail FROM audit WHERE event = 'auth.failed'").all() as Array<{
    detail: string;
  }>;
  return rows.reduce((n, r) => n + (JSON.parse(r.detail) as { count: number }).count, 0);
}

describe('refused requests across a crash', () => {
  it('10 refusals, then kill -9: all 10 are counted in the trail within about a second, with no shutdown', async () => {
    const dbPath = join(dir, 'warden.db');
    child = await startServeChild({ dbPath, policyPath: join(dir, 'policy.yml') });
    const url = child.running.gateway;
    const bogus = `wdn_${'C'.repeat(43)}`;
    for (let i = 0; i < 10; i++) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bogus}` },
        body: '{}',
      });
      expect(res.status).toBe(401);
    }
    db = openDb(dbPath, { readonly: true });
    const reader = db;
    // The first refusal is written before its answer; the other nine within the 1 s window (waited on, not slept).
    await waitFor(() => countedFailures(reader) === 10 || undefined, 'all 10 refusals on the trail', 5_000);
    expect(await child.kill('SIGKILL')).toBeNull();
    expect(child.proc.signalCode).toBe('SIGKILL');
    expect(countedFailures(reader)).toBe(10);
    const rows = reader
      .prepare("SELECT reason, detail FROM audit WHERE event = 'auth.failed' ORDER BY seq")
      .all() as Array<{
      reason: string;
      detail: string;
    }>;
    expect(rows.length).toBeLessThanOrEqual(10);
    expect(rows.every((r) => (JSON.parse(r.detail) as { code: string }).code === 'token_unknown')).toBe(true);
  });
});
