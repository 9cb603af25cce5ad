import { join } from 'node:path';
import type { Dialect } from '../../src/store/dialect.ts';
import { freshPgDatabase } from './postgres.ts';

/**
 * Which store the behaviour tests of this test file run on. A test file
 * written against `storeLocation()` runs on SQLite by default; its
 * PostgreSQL twin (test/postgres/NAME.pg.test.ts) selects PostgreSQL and then
 * imports it, so the very same tests run on both stores:
 *
 *   import { useStore } from '../support/store-under-test.ts';
 *   useStore('postgres');
 *   await import('../gateway-tokens.test.ts');
 *
 * Module state, not process.env: vitest isolates each test file's modules,
 * but a forked worker process (and its env) may be reused for the next file.
 */
let current: Dialect = 'sqlite';

export function useStore(dialect: Dialect): void {
  current = dialect;
}

export function storeUnderTest(): Dialect {
  return current;
}

/**
 * Where a test's Warden store lives: a fresh PostgreSQL schema when the file
 * runs on PostgreSQL, else `name` in `dir` (a SQLite file).
 */
export async function storeLocation(dir: string, name = 'warden.db'): Promise<string> {
  return current === 'postgres' ? freshPgDatabase() : join(dir, name);
}

/** For a test about SQLite itself (its file, WAL, a raw connection): `it.skipIf(!onSqlite())`. */
export function onSqlite(): boolean {
  return current === 'sqlite';
}
