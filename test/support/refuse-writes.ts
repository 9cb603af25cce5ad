import type { Db } from '../../src/store/db.ts';
import { dialectOf } from '../../src/store/dialect.ts';

/**
 * Every insert into `table` fails with `message` from now on: a trigger in
 * the store's own dialect (a full disk, a constraint another writer added).
 * PostgreSQL reports it through PgDb as "PostgreSQL: <message>".
 */
export function refuseInserts(db: Db, table: string, message: string): void {
  const name = `refuse_${table}`;
  const quoted = message.replaceAll("'", "''");
  if (dialectOf(db) === 'sqlite') {
    db.exec(`CREATE TRIGGER ${name} BEFORE INSERT ON ${table} BEGIN SELECT RAISE(ABORT, '${quoted}'); END`);
    return;
  }
  db.exec(`CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${quoted}'; END $$;
    CREATE TRIGGER ${name} BEFORE INSERT ON ${table} FOR EACH ROW EXECUTE FUNCTION ${name}();`);
}

/** Undoes refuseInserts: the disk has room again. */
export function allowInserts(db: Db, table: string): void {
  const name = `refuse_${table}`;
  db.exec(
    dialectOf(db) === 'sqlite' ? `DROP TRIGGER ${name}` : `DROP TRIGGER ${name} ON ${table}; DROP FUNCTION ${name}();`,
  );
}
