import { readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { WardenError } from '../errors.ts';

export type Db = Database.Database;

const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../db/', import.meta.url));
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
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const migrations = readMigrations(dir);
  const applied = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
  const current = applied.v ?? 0;
  if (current > migrations.length) {
    throw new WardenError(
      'STORE_MIGRATION',
      `database is at schema version ${current} but this Warden knows only ${migrations.length}; upgrade Warden`,
    );
  }
  const insert = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of migrations.slice(current)) {
    db.transaction(() => {
      try {
        db.exec(m.sql);
      } catch (err) {
        throw new WardenError('STORE_MIGRATION', `migration ${m.version}_${m.name} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      insert.run(m.version, m.name, Date.now());
    }).immediate();
  }
  return migrations.length;
}
