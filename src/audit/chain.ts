import type { Db } from '../store/db.ts';
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

export function chainWriter(db: Db): ChainWriter {
  const selectHead = db.prepare<[], ChainHead>('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1');
  // Positional parameters: binding 17 named ones from an object costs more than the row's insert itself.
  const insert = db.prepare<unknown[]>(
    `INSERT INTO audit (seq, ts, event, call_id, agent, owner, server, tool, args, result, decision, reason,
       approver, duration_ms, detail, prev_hash, hash)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const head = (): ChainHead => selectHead.get() ?? { seq: 0, hash: GENESIS_HASH };
  const write = db.transaction((rows: readonly ChainRow[]) => {
    let h = head();
    const firstSeq = h.seq + 1;
    const hashes: string[] = [];
    for (const row of rows) {
      const unhashed: UnhashedRow = { ...row, seq: h.seq + 1, prev_hash: h.hash };
      const hash = rowHash(unhashed);
      const u = unhashed;
      insert.run(
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
      );
      h = { seq: unhashed.seq, hash };
      hashes.push(hash);
    }
    return { firstSeq, hashes };
  }).immediate;
  return { head, write };
}
