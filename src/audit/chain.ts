import type { Db } from '../store/db.ts';
import { dialectOf } from '../store/dialect.ts';
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

const ROW_PLACEHOLDERS = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';
/** PostgreSQL binds at most 65,535 parameters per statement; 17 per row. */
const MAX_ROWS_PER_INSERT = 1000;

/** The columns of an audit row, in INSERT_HEAD's order. */
export const AUDIT_COLUMNS = [
  'seq',
  'ts',
  'event',
  'call_id',
  'agent',
  'owner',
  'server',
  'tool',
  'args',
  'result',
  'decision',
  'reason',
  'approver',
  'duration_ms',
  'detail',
  'prev_hash',
  'hash',
] as const;

const INSERT_HEAD = `INSERT INTO audit (${AUDIT_COLUMNS.join(', ')})`;

/** `rows` hashed onto `head`, each as its column values in AUDIT_COLUMNS order; row i gets seq firstSeq + i. */
export function chainRows(
  head: ChainHead,
  rows: readonly ChainRow[],
): { values: unknown[][]; firstSeq: number; hashes: string[] } {
  let h = head;
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
  const selectHead = db.prepare<[], ChainHead>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  // Positional parameters: binding 17 named ones from an object costs more than the row's insert itself.
  const insert = db.prepare<unknown[]>(`${INSERT_HEAD} VALUES ${ROW_PLACEHOLDERS}`);
  const head = (): ChainHead => selectHead.get() ?? { seq: 0, hash: GENESIS_HASH };
  const chained = (rows: readonly ChainRow[]) => chainRows(head(), rows);
  const postgres = dialectOf(db) === 'postgres';
  const write = db.transaction((rows: readonly ChainRow[]) => {
    const { values, firstSeq, hashes } = chained(rows);
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
