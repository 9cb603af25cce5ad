import type { ChainRow } from './chain.ts';

/**
 * Messages between AuditLog (main thread) and the audit writer thread
 * (writer-worker.ts). Types only: both sides import them with `import type`.
 */

/** A row ready to be chained: everything but seq, prev_hash and hash. */
export type WriterRow = ChainRow;

/** The caller's connection settings the writer mirrors, so both write paths behave alike. */
export interface WriterSettings {
  busyTimeout: number;
  /** PRAGMA synchronous as a number: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA. */
  synchronous: number;
}

export type ToWriter =
  | { t: 'batch'; log: number; path: string; id: number; rows: WriterRow[]; settings: WriterSettings }
  | { t: 'detach'; log: number };

export type FromWriter =
  | { t: 'ready' }
  /** Batches `ids` of `log` were committed in one transaction; row i has seq firstSeq + i. */
  | { t: 'committed'; log: number; ids: number[]; firstSeq: number; hashes: string[] }
  /** Batches `ids` of `log` shared one transaction that failed: none of their rows was written. */
  | { t: 'failed'; log: number; ids: number[]; rows: number; message: string; code: string | undefined }
  | { t: 'detached'; log: number };
