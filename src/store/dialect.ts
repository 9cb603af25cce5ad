/**
 * Which database a store runs on. Its own module, free of imports, because
 * the audit writer thread (loaded through tsx's CommonJS hook from source)
 * reaches it through chain.ts and must not load db.ts or pg-db.ts, which use
 * import.meta.
 */
export type Dialect = 'sqlite' | 'postgres';

/** PgDb carries `dialect: 'postgres'`; a better-sqlite3 Database has no such field. */
export function dialectOf(db: object): Dialect {
  return (db as { dialect?: unknown }).dialect === 'postgres' ? 'postgres' : 'sqlite';
}

/**
 * The advisory lock an IMMEDIATE transaction takes on PostgreSQL: SQLite's
 * BEGIN IMMEDIATE serialises every writer of the file, and the stores'
 * read-then-write transactions (the chain head, a claim) rely on it; this
 * gives them the same guarantee across replicas. Here, not in pg-db.ts, so
 * the audit writer thread can take the same lock.
 */
export const PG_WRITE_LOCK_KEY = 0x5741_5244; // "WARD"

/** A `postgres://` or `postgresql://` URL selects PostgreSQL; anything else is a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}
