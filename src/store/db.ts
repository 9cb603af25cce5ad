import { readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { WardenError } from '../errors.ts';
import { PgDb, redactUrl } from './pg-db.ts';
import { dialectOf } from './dialect.ts';

export { dialectOf, type Dialect } from './dialect.ts';

/**
 * One prepared statement, as every owning module uses it: the subset of
 * better-sqlite3's Statement that PgStatement also gives.
 */
export interface Statement<P extends unknown[] = unknown[], R = unknown> {
  run(...params: P): { changes: number; lastInsertRowid: number | bigint };
  get(...params: P): R | undefined;
  all(...params: P): R[];
  iterate(...params: P): IterableIterator<R>;
  pluck(toggleState?: boolean): this;
}

// biome-ignore lint/suspicious/noExplicitAny: mirrors better-sqlite3's own Transaction typing
export type AnyFn = (...args: any[]) => unknown;

export type ArgumentTypes<F extends AnyFn> = F extends (...args: infer A) => unknown ? A : never;

export interface Transaction<F extends AnyFn> {
  (...params: ArgumentTypes<F>): ReturnType<F>;
  immediate(...params: ArgumentTypes<F>): ReturnType<F>;
}

/**
 * The store interface every owning module is written against: synchronous,
 * like better-sqlite3, on SQLite or (through PgDb) on PostgreSQL. SQL is
 * written in the subset both share (see pg-db.ts); the few places that
 * differ ask `dialectOf(db)`.
 */
export interface Db {
  readonly name: string;
  readonly memory: boolean;
  readonly readonly: boolean;
  readonly open: boolean;
  readonly inTransaction: boolean;
  // biome-ignore lint/complexity/noBannedTypes: `{}` as in better-sqlite3's own typing, so typed statements infer alike
  prepare<P extends unknown[] | {} = unknown[], R = unknown>(
    source: string,
  ): P extends unknown[] ? Statement<P, R> : Statement<[P], R>;
  exec(source: string): unknown;
  transaction<F extends AnyFn>(fn: F): Transaction<F>;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  close(): unknown;
  /**
   * PostgreSQL only: calls `onNotify` on each NOTIFY on `channel` (from any
   * replica), on a connection of its own; returns the way to stop. SQLite
   * has no such thing: its processes poll (PRAGMA data_version).
   */
  listen?(channel: string, onNotify: () => void, onTrouble?: (err: Error) => void): () => void;
}

export type SqliteDb = Database.Database;

/** Where the store is, fit for a log line: a PostgreSQL URL loses its password. */
export function describeStore(location: string): string {
  return isPostgresUrl(location) ? redactUrl(location) : location;
}

export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/**
 * Whether the database answers now (`SELECT 1`), for health checks: never
 * throws. The reason is the driver's message, which names no password.
 */
export function pingDb(db: Db): { ok: true } | { ok: false; reason: string } {
  try {
    db.prepare('SELECT 1').get();
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../db/', import.meta.url));
const POSTGRES_MIGRATIONS_DIR = fileURLToPath(new URL('../../db/postgres/', import.meta.url));
const MIGRATION_FILE = /^(\d+)_([\w-]+)\.sql$/;

export interface OpenOptions {
  migrationsDir?: string;
  readonly?: boolean;
}

/**
 * Opens (creating if needed) the Warden database, sets the pragmas Warden
 * relies on and applies any migrations not yet applied.
 */
export function openDb(path: string, options: OpenOptions = {}): Db {
  if (isPostgresUrl(path)) return openPostgres(path, options);
  if (path !== ':memory:' && !options.readonly) mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { readonly: options.readonly ?? false });
  // Several Warden processes may share one file: wait for a lock rather than fail.
  db.pragma('busy_timeout = 5000');
  if (!options.readonly) {
    db.pragma('journal_mode = WAL');
    // FULL: a committed audit row survives power loss; group commit keeps it fast.
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    // REPLACE conflict resolution deletes rows; with recursive triggers on,
    // that delete fires the audit's no-delete trigger instead of slipping past it.
    db.pragma('recursive_triggers = ON');
    migrate(db, options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR);
  }
  return db;
}

/**
 * A PostgreSQL store shared by replicas. Its migrations (db/postgres/) are
 * applied under the same advisory lock as every IMMEDIATE transaction, so
 * replicas starting together apply each one once.
 */
function openPostgres(url: string, options: OpenOptions): Db {
  const db = new PgDb(url, { readonly: options.readonly });
  if (!options.readonly) {
    try {
      migrate(db, options.migrationsDir ?? POSTGRES_MIGRATIONS_DIR);
    } catch (err) {
      db.close();
      throw err;
    }
  }
  return db;
}

interface Migration {
  version: number;
  name: string;
  sql: string;
}

function readMigrations(dir: string): Migration[] {
  const migrations = readdirSync(dir)
    .map((file) => ({ file, match: MIGRATION_FILE.exec(file) }))
    .filter((m): m is { file: string; match: RegExpExecArray } => m.match !== null)
    .map(({ file, match }) => ({
      version: Number(match[1]),
      name: match[2]!,
      sql: readFileSync(join(dir, file), 'utf8'),
    }))
    .sort((a, b) => a.version - b.version);
  for (let i = 0; i < migrations.length; i++) {
    if (migrations[i]!.version !== i + 1) {
      throw new WardenError(
        'STORE_MIGRATION',
        `migrations in ${dir} must be numbered 1..n without gaps; found ${migrations[i]!.version} at position ${i + 1}`,
      );
    }
  }
  return migrations;
}

/** Forward only: a database newer than this code is refused, never rewound. */
export function migrate(db: Db, dir: string = DEFAULT_MIGRATIONS_DIR): number {
  const migrations = readMigrations(dir);
  const create = () =>
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
  if (dialectOf(db) === 'postgres') {
    // All under the write lock, as one transaction (PostgreSQL's DDL is
    // transactional): replicas starting at once apply each migration once,
    // and a failed one leaves the schema as it was.
    return db
      .transaction(() => {
        // Only when missing: a role that may not create tables (one that does not own the schema, so
        // it cannot disable the audit triggers) still starts on a database that is up to date.
        if (db.prepare("SELECT to_regclass('schema_migrations') IS NULL AS missing").pluck().get()) create();
        return applyMigrations(db, dir, migrations, (fn) => fn());
      })
      .immediate();
  }
  create();
  // One transaction per migration: a failed one leaves those before it applied.
  return applyMigrations(db, dir, migrations, (fn) => db.transaction(fn).immediate());
}

function applyMigrations(
  db: Db,
  dir: string,
  migrations: Migration[],
  inTransaction: (fn: () => void) => void,
): number {
  const applied = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
  const current = applied.v ?? 0;
  if (current > migrations.length) {
    throw new WardenError(
      'STORE_MIGRATION',
      `database is at schema version ${current} but this Warden knows only ${migrations.length} (${dir}); upgrade Warden`,
    );
  }
  const insert = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations.slice(current)) {
    inTransaction(() => {
      try {
        db.exec(m.sql);
      } catch (err) {
        throw new WardenError('STORE_MIGRATION', `migration ${m.version}_${m.name} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      insert.run(m.version, m.name, Date.now());
    });
  }
  return migrations.length;
}
