/**
 * Messages between PgDb (main thread) and its connection thread
 * (pg-worker.ts). Loaded by the thread through tsx's CommonJS hook when
 * running from source: no import.meta and no top-level await here.
 */

export interface PgWorkerData {
  url: string;
  /** Int32Array over this buffer: slot 0 is set to 1 when a reply is posted. */
  signal: SharedArrayBuffer;
  /** Server-side cap on one statement, so a stuck query cannot hold the caller for good. */
  statementTimeoutMs: number;
  /** Every transaction read-only (an inspecting CLI command): evidence cannot be changed through it. */
  readonly: boolean;
}

export interface PgRequest {
  sql: string;
  params: unknown[];
}

export type PgReply =
  | { ok: true; rows: Record<string, unknown>[]; rowCount: number; fields: string[] }
  | { ok: false; message: string; code: string | undefined };
