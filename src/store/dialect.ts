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
