import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** The throwaway server's URL (test/support/global-postgres.ts). */
export function pgServerUrl(): string {
  return inject('pgUrl');
}

/**
 * A fresh, empty store on the test server, for one test or one file: its
 * postgres:// URL. A schema of its own rather than a database (CREATE
 * DATABASE takes about a second; a schema, a millisecond), selected by the
 * connection's search_path, so every table, trigger and function Warden
 * creates lands in it.
 */
export async function freshPgDatabase(prefix = 'warden'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgServerUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(pgServerUrl());
  url.searchParams.set('options', `-c search_path=${name}`);
  // Names its connections too, so a test can pick out its own in pg_stat_activity.
  url.searchParams.set('application_name', name);
  return url.toString();
}
