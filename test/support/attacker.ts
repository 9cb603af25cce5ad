import Database from 'better-sqlite3';
import { isPostgresUrl, openDb, type Db } from '../../src/store/db.ts';

/** The append-only guards an attacker removes first, by the table each one guards. */
const AUDIT_GUARDS = ['audit_no_update', 'audit_no_delete', 'audit_append_at_end'] as const;

/**
 * The attacker who owns the store: a connection of their own with the audit
 * table's append-only guards removed. On SQLite, whoever can write the file
 * (a raw better-sqlite3 connection dropping the triggers); on PostgreSQL, a
 * superuser (the tests' role), who can switch the triggers off. Either way
 * the database no longer protects the chain, and only `audit verify` can
 * tell what was done.
 */
export function attackerConnection(location: string): Db {
  if (!isPostgresUrl(location)) {
    const raw = new Database(location);
    raw.exec(AUDIT_GUARDS.map((t) => `DROP TRIGGER IF EXISTS ${t};`).join(' '));
    return raw;
  }
  const db = openDb(location);
  for (const trigger of AUDIT_GUARDS) removeGuard(db, 'audit', trigger);
  return db;
}

/**
 * One more guard gone (e.g. `audit_checkpoints_no_update`). SQLite drops the
 * trigger; PostgreSQL disables it, which lasts for every connection as a
 * dropped one would.
 */
export function removeGuard(attacker: Db, table: 'audit' | 'audit_checkpoints', trigger: string): void {
  if (attacker instanceof Database) attacker.exec(`DROP TRIGGER IF EXISTS ${trigger}`);
  else attacker.exec(`ALTER TABLE ${table} DISABLE TRIGGER ${trigger}`);
}
