import { readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { dialectOf, openDb, type Db } from '../src/store/db.ts';
import { compileSql } from '../src/store/pg-db.ts';
import { freshPgDatabase } from './support/postgres.ts';

describe('compileSql (SQLite placeholders to PostgreSQL)', () => {
  it('numbers ? in order, names @x once each, and leaves literals and comments alone', () => {
    expect(compileSql("SELECT ? AS a, '?' AS b, @x, @y, @x -- what? @z\n, ?")).toEqual({
      text: "SELECT $1 AS a, '?' AS b, $2, $3, $2 -- what? @z\n, $4",
      binds: [0, 'x', 'y', 1],
    });
  });

  it('turns IS <param> into IS NOT DISTINCT FROM, which PostgreSQL needs for a bound value', () => {
    expect(compileSql('WHERE a IS @from AND b IS NOT ? AND c IS NULL').text).toBe(
      'WHERE a IS NOT DISTINCT FROM $1 AND b IS DISTINCT FROM $2 AND c IS NULL',
    );
  });
});

describe('PostgreSQL store', () => {
  let db: Db | undefined;
  afterEach(() => {
    db?.close();
    db = undefined;
  });

  it('applies its migrations once, forward only, and answers like better-sqlite3', async () => {
    const url = await freshPgDatabase();
    db = openDb(url);
    expect(dialectOf(db)).toBe('postgres');
    // Every numbered file in db/postgres, in order, each once.
    const files = readdirSync(new URL('../db/postgres/', import.meta.url)).filter((f) => /^\d+_.*\.sql$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(3);
    const version = db.prepare('SELECT max(version) AS v FROM schema_migrations').pluck().get();
    expect(version).toBe(files.length);
    db.close();
    db = openDb(url); // a second start applies nothing
    expect(db.prepare('SELECT count(*) AS n FROM schema_migrations').pluck().get()).toBe(files.length);

    const ins = db.prepare(
      'INSERT INTO control_state (scope, halted, reason, actor, at) VALUES (@scope, 1, @reason, @actor, @at)',
    );
    expect(ins.run({ scope: 'org', reason: 'drill', actor: 'U1', at: 1_800_000_000_000 }).changes).toBe(1);
    const row = db.prepare('SELECT * FROM control_state WHERE scope = ?').get('org');
    expect(row).toEqual({ scope: 'org', halted: 1, reason: 'drill', actor: 'U1', at: 1_800_000_000_000 });
    expect(db.prepare('SELECT * FROM control_state WHERE scope = ?').get('none')).toBeUndefined();
    expect(db.prepare('SELECT scope FROM control_state').pluck().all()).toEqual(['org']);
    expect(db.prepare('SELECT scope FROM control_state WHERE actor IS ?').pluck().all(null)).toEqual([]);
  });

  it('rolls a failed transaction back, and a failed nested one only to its savepoint', async () => {
    db = openDb(await freshPgDatabase());
    const d = db;
    const put = d.prepare('INSERT INTO control_state (scope, halted, at) VALUES (?, 0, 1)');
    expect(() =>
      d
        .transaction(() => {
          put.run('a');
          throw new Error('boom');
        })
        .immediate(),
    ).toThrow('boom');
    d.transaction(() => {
      put.run('b');
      try {
        d.transaction(() => {
          put.run('c');
          put.run('c'); // duplicate key
        })();
      } catch {
        // the inner one is undone; the outer goes on
      }
    }).immediate();
    expect(d.prepare('SELECT scope FROM control_state ORDER BY scope').pluck().all()).toEqual(['b']);
    expect(d.inTransaction).toBe(false);
  });

  it('refuses UPDATE, DELETE and TRUNCATE of the audit trail, and inserts behind the head', async () => {
    db = openDb(await freshPgDatabase());
    const row = (seq: number) =>
      db!
        .prepare(`INSERT INTO audit (seq, ts, event, prev_hash, hash) VALUES (?, 1, 'call.decided', 'p', 'h')`)
        .run(seq);
    row(1);
    row(2);
    expect(() => db!.exec("UPDATE audit SET event = 'x'")).toThrow(/append-only/);
    expect(() => db!.exec('DELETE FROM audit')).toThrow(/append-only/);
    expect(() => db!.exec('TRUNCATE audit')).toThrow(/append-only/);
    expect(() => row(1)).toThrow(/after the head/);
    expect(db.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(2);
  });

  it('a role granted only SELECT and INSERT on the trail cannot change it, not even by disabling the triggers', async () => {
    const url = await freshPgDatabase();
    db = openDb(url);
    db.prepare(`INSERT INTO audit (seq, ts, event, prev_hash, hash) VALUES (1, 1, 'call.decided', 'p', 'h')`).run();
    const schema = new URL(url).searchParams.get('options')!.replace('-c search_path=', '');
    const role = `app_${schema.slice(-12)}`;
    // What the README tells an operator to do: the schema's owner is not the role Warden connects as.
    db.exec(`CREATE ROLE ${role} LOGIN;
      GRANT USAGE ON SCHEMA ${schema} TO ${role};
      GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA ${schema} TO ${role};
      GRANT UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role};
      REVOKE UPDATE, DELETE, TRUNCATE ON ${schema}.audit, ${schema}.audit_checkpoints FROM ${role};`);
    const asApp = new URL(url);
    asApp.username = role;
    const app = openDb(asApp.toString(), { readonly: false });
    try {
      expect(app.prepare('SELECT count(*) FROM audit').pluck().get()).toBe(1);
      expect(() => app.exec('ALTER TABLE audit DISABLE TRIGGER USER')).toThrow(/must be owner/);
      expect(() => app.exec("UPDATE audit SET event = 'x'")).toThrow(/permission denied/);
      expect(() => app.exec('DELETE FROM audit')).toThrow(/permission denied/);
      expect(() => app.exec('TRUNCATE audit')).toThrow(/permission denied/);
      // The rest of Warden's tables stay writable for it.
      expect(app.prepare('INSERT INTO control_state (scope, halted, at) VALUES (?, 0, 1)').run('org').changes).toBe(1);
    } finally {
      app.close();
    }
  });

  it('names the cause when the server cannot be reached', () => {
    expect(() => openDb('postgres://nobody@127.0.0.1:1/none')).toThrow(/PostgreSQL: .*ECONNREFUSED|connect/);
  });
});
