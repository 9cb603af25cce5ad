import { WardenError } from '../errors.ts';
import type { Db, Statement } from './db.ts';
import { dialectOf } from './dialect.ts';

/**
 * Copies a whole Warden store, table by table, into an empty one (`warden
 * store migrate`). It is the store layer's own tool, so it knows no table or
 * column: the tables are whatever the source's catalog lists, the columns
 * whatever `SELECT *` returns, and each row is written back as read. That
 * keeps one owner per table true (no module's SQL is repeated here) and means
 * a table added by a later migration is copied without touching this file.
 *
 * The hash chain survives because nothing is recomputed: every audit row
 * keeps its seq, prev_hash and hash, and rows go in seq order, which is all
 * the append-at-end triggers ask of an empty table.
 */

export interface CopyProgress {
  table: string;
  copied: number;
  total: number;
}

export interface CopyOptions {
  /** Rows per INSERT (capped so one statement stays well under PostgreSQL's 65,535 parameters). */
  batchRows?: number;
  /** Called after every batch, and once per table when it is done (copied === total). */
  onProgress?: (progress: CopyProgress) => void;
}

export interface CopyReport {
  tables: { table: string; rows: number }[];
}

const DEFAULT_BATCH_ROWS = 500;
const MAX_PARAMS_PER_STATEMENT = 30_000;
/** Names come from a catalog, not from a person, but they are spliced into SQL: only plain identifiers pass. */
const IDENTIFIER = /^[a-z_][a-z0-9_]*$/i;
/** Bookkeeping the target's own migrations wrote; never copied. */
const SCHEMA_TABLE = 'schema_migrations';

interface SourceTable {
  name: string;
  /** WITHOUT ROWID tables have no insertion order to keep (and no rowid to order by). */
  hasRowid: boolean;
}

/** The source's tables, in the order they were created (the order the migrations made them). */
function sqliteTables(source: Db): SourceTable[] {
  const rows = source
    .prepare<[], { name: string; sql: string }>(
      "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )
    .all();
  return rows
    .filter((row) => row.name !== SCHEMA_TABLE)
    .map((row) => {
      if (!IDENTIFIER.test(row.name))
        throw new WardenError('INVALID_INPUT', `source table ${JSON.stringify(row.name)} is not a plain identifier`);
      return { name: row.name, hasRowid: !/WITHOUT\s+ROWID/i.test(row.sql) };
    });
}

function rowCount(db: Db, table: string): number {
  return (db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM ${table}`).get()?.n ?? 0) as number;
}

/**
 * The target must be a fresh Warden store: every table the source has exists
 * there and is empty. Copying into a store that already holds an audit chain
 * would fork it (and the triggers would refuse the older rows anyway).
 */
function checkTarget(target: Db, tables: SourceTable[]): void {
  for (const { name } of tables) {
    let count: number;
    try {
      count = target.transaction(() => rowCount(target, name))();
    } catch (err) {
      throw new WardenError(
        'STORE_MIGRATION',
        `target has no table ${name} (is it at the same schema version as the source?): ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (count > 0)
      throw new WardenError(
        'STORE_NOT_EMPTY',
        `target is not empty: table ${name} has ${count} row${count === 1 ? '' : 's'}; migrate copies only into a new, empty store`,
      );
  }
}

/**
 * Copies every table of a SQLite `source` into `target` (any dialect) in one
 * write-locked transaction on the target: a copy that fails half-way leaves
 * the target empty, ready to be tried again, and no replica can write into
 * it meanwhile. The source is read inside one read transaction, so the copy
 * is one consistent snapshot even if a Warden is still writing to it.
 */
export function copyStore(source: Db, target: Db, options: CopyOptions = {}): CopyReport {
  if (dialectOf(source) !== 'sqlite')
    throw new WardenError('INVALID_INPUT', 'the source of a store copy must be a SQLite file');
  const tables = sqliteTables(source);
  const report: CopyReport = { tables: [] };
  source.exec('BEGIN');
  try {
    const totals = new Map(tables.map(({ name }) => [name, rowCount(source, name)]));
    target
      .transaction(() => {
        checkTarget(target, tables);
        for (const table of tables) {
          const total = totals.get(table.name)!;
          const rows = copyTable(source, target, table, total, options);
          report.tables.push({ table: table.name, rows });
        }
      })
      .immediate();
  } finally {
    source.exec('COMMIT');
  }
  return report;
}

function copyTable(source: Db, target: Db, table: SourceTable, total: number, options: CopyOptions): number {
  const order = table.hasRowid ? ' ORDER BY rowid' : '';
  const select = source.prepare<[], Record<string, unknown>>(`SELECT * FROM ${table.name}${order}`);
  let columns: string[] | undefined;
  let batchRows = options.batchRows ?? DEFAULT_BATCH_ROWS;
  const inserts = new Map<number, Statement>();
  const insert = (count: number) => {
    let statement = inserts.get(count);
    if (statement === undefined) {
      const one = `(${columns!.map(() => '?').join(', ')})`;
      statement = target.prepare(
        `INSERT INTO ${table.name} (${columns!.join(', ')}) VALUES ${Array.from({ length: count }, () => one).join(', ')}`,
      );
      inserts.set(count, statement);
    }
    return statement;
  };
  let batch: unknown[] = [];
  let inBatch = 0;
  let copied = 0;
  const flush = () => {
    if (inBatch === 0) return;
    try {
      insert(inBatch).run(...batch);
    } catch (err) {
      throw new WardenError(
        'STORE_MIGRATION',
        `copying ${table.name} (rows ${copied + 1}..${copied + inBatch}): ${(err as Error).message}`,
        { cause: err },
      );
    }
    copied += inBatch;
    batch = [];
    inBatch = 0;
    options.onProgress?.({ table: table.name, copied, total });
  };
  for (const row of select.iterate()) {
    if (columns === undefined) {
      columns = Object.keys(row);
      for (const column of columns)
        if (!IDENTIFIER.test(column))
          throw new WardenError(
            'INVALID_INPUT',
            `column ${JSON.stringify(column)} of ${table.name} is not a plain identifier`,
          );
      batchRows = Math.max(1, Math.min(batchRows, Math.floor(MAX_PARAMS_PER_STATEMENT / columns.length)));
    }
    for (const column of columns) batch.push(row[column]);
    inBatch++;
    if (inBatch === batchRows) flush();
  }
  flush();
  if (copied === 0) options.onProgress?.({ table: table.name, copied: 0, total });
  return copied;
}
