import { createHash } from 'node:crypto';
import type { AuditRow } from './types.ts';

/** prev_hash of the first row: there is nothing before it. */
export const GENESIS_HASH = '0'.repeat(64);

/** Every stored column except `hash`, in the sorted order the canonical form uses. */
export const CANONICAL_COLUMNS = [
  'agent',
  'approver',
  'args',
  'call_id',
  'decision',
  'detail',
  'duration_ms',
  'event',
  'owner',
  'prev_hash',
  'reason',
  'result',
  'seq',
  'server',
  'tool',
  'ts',
] as const satisfies readonly (keyof AuditRow)[];

export type UnhashedRow = Omit<AuditRow, 'hash'>;

/**
 * Deterministic serialisation of a row: JSON with sorted keys, every column
 * except `hash`, nulls kept. Values are only strings, numbers and null (JSON
 * columns are hashed as the text that is stored), so the form is stable
 * across processes and Node versions.
 */
export function canonicalRow(row: UnhashedRow): string {
  const ordered: Record<string, unknown> = {};
  for (const col of CANONICAL_COLUMNS) ordered[col] = row[col] ?? null;
  return JSON.stringify(ordered);
}

/** hash = sha256(prev_hash ‖ canonical row), hex. */
export function rowHash(row: UnhashedRow): string {
  return createHash('sha256').update(row.prev_hash).update(canonicalRow(row)).digest('hex');
}
