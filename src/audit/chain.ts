import type { Db } from '../store/db.ts';
import { dialectOf, PG_WRITE_LOCK_KEY } from '../store/dialect.ts';
import { GENESIS_HASH, rowHash, type UnhashedRow } from './canonical.ts';

/**
 * How rows join the chain, in one place for both write paths (AuditLog
 * inline and the writer thread): they must build the very same chain.
 * Loaded by the writer thread through tsx's CommonJS hook, so: no
 * import.meta and no top-level await here.
 */

/** A row ready to be chained: everything but seq, prev_hash and hash. */
export type ChainRow = Omit<UnhashedRow, 'seq' | 'prev_hash'>;

export interface ChainHead {
  seq: number;
  hash: string;
}

export interface ChainWriter {
  /** The committed head as this connection sees it now (genesis for an empty chain). */
  head(): ChainHead;
  /**
   * One BEGIN IMMEDIATE transaction: reads the head inside the write lock
   * (another connection or process may have appended), hashes each row onto
   * it and inserts. Row i lands at seq firstSeq + i.
   */
  write(rows: readonly ChainRow[]): { firstSeq: number; hashes: string[] };
}

const INSERT_HEAD = `INSERT INTO audit (seq, ts, event, call_id, agent, owner, server, tool, args, result, decision, reason,
   approver, duration_ms, detail, prev_hash, hash)`;
const ROW_PLACEHOLDERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
/** PostgreSQL binds at most 65,535 parameters per statement; 17 per row. */
const MAX_ROWS_PER_INSERT = 1000;

const SELECT_HEAD = 'SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1';

/** Each row hashed onto `start` in order: the values of each row's INSERT, in INSERT_HEAD's column order. */
function chained(
  start: ChainHead,
  rows: readonly ChainRow[],
): { values: unknown[][]; firstSeq: number; hashes: string[] } {
  let h = start;
  const firstSeq = h.seq + 1;
  const hashes: string[] = [];
  const values: unknown[][] = [];
  for (const row of rows) {
    const u: UnhashedRow = { ...row, seq: h.seq + 1, prev_hash: h.hash };
    const hash = rowHash(u);
    values.push([
      u.seq,
      u.ts,
      u.event,
      u.call_id,
      u.agent,
      u.owner,
      u.server,
      u.tool,
      u.args,
      u.result,
      u.decision,
      u.reason,
      u.approver,
      u.duration_ms,
      u.detail,
      u.prev_hash,
      hash,
    ]);
    h = { seq: u.seq, hash };
    hashes.push(hash);
  }
  return { values, firstSeq, hashes };
}

export function chainWriter(db: Db): ChainWriter {
  const selectHead = db.prepare<[], ChainHead>(SELECT_HEAD);
  // Positional parameters: binding 17 named ones from an object costs more than the row's insert itself.
  const insert = db.prepare<unknown[]>(`${INSERT_HEAD} VALUES ${ROW_PLACEHOLDERS}`);
  const head = (): ChainHead => selectHead.get() ?? { seq: 0, hash: GENESIS_HASH };
  const postgres = dialectOf(db) === 'postgres';
  const write = db.transaction((rows: readonly ChainRow[]) => {
    const { values, firstSeq, hashes } = chained(head(), rows);
    if (postgres) {
      // One statement per group: on PostgreSQL each statement is a round trip to the server.
      for (let i = 0; i < values.length; i += MAX_ROWS_PER_INSERT) {
        const part = values.slice(i, i + MAX_ROWS_PER_INSERT);
        db.prepare(`${INSERT_HEAD} VALUES ${part.map(() => ROW_PLACEHOLDERS).join(', ')}`).run(...part.flat());
      }
    } else {
      for (const v of values) insert.run(...v);
    }
    return { firstSeq, hashes };
  }).immediate;
  return { head, write };
}

/** One statement on an asynchronous PostgreSQL connection ($n placeholders). */
export type PgQuery = (sql: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>;

/**
 * The same transaction as chainWriter's on PostgreSQL, awaited on a
 * connection of its own (the audit writer thread's): the same write lock
 * (so appends from every replica and connection still form one chain), the
 * head read inside it, one INSERT per group. The caller's thread never
 * blocks on the COMMIT.
 */
export async function writeChainPg(
  query: PgQuery,
  rows: readonly ChainRow[],
): Promise<{ firstSeq: number; hashes: string[] }> {
  // One round trip for both: a text without parameters may hold several statements.
  await query(`BEGIN; SELECT pg_advisory_xact_lock(${PG_WRITE_LOCK_KEY})`);
  try {
    const got = (await query(SELECT_HEAD)).rows[0] as { seq: unknown; hash: unknown } | undefined;
    const start = got ? { seq: Number(got.seq), hash: String(got.hash) } : { seq: 0, hash: GENESIS_HASH };
    const { values, firstSeq, hashes } = chained(start, rows);
    for (let i = 0; i < values.length; i += MAX_ROWS_PER_INSERT) {
      const part = values.slice(i, i + MAX_ROWS_PER_INSERT);
      const width = part[0]!.length;
      const tuples = part.map((_, r) => `(${part[0]!.map((__, c) => `$${r * width + c + 1}`).join(', ')})`);
      await query(`${INSERT_HEAD} VALUES ${tuples.join(', ')}`, part.flat());
    }
    await query('COMMIT');
    return { firstSeq, hashes };
  } catch (err) {
    await query('ROLLBACK').catch(() => {
      // The connection is gone: the server rolls back on its own.
    });
    throw err;
  }
}
