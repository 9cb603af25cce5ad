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

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, `undefined`
 * members dropped (as JSON.stringify does). Two values that mean the same thing (an
 * agent's arguments, a tool definition) hash the same, whatever the key order.
 */
export function canonicalJson(value: unknown): string {
  return write(value) ?? 'null';
}

function write(value: unknown): string | undefined {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'undefined':
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  const withJson = value as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return write(withJson.toJSON());
  if (Array.isArray(value)) return `[${value.map((v) => write(v) ?? 'null').join(',')}]`;
  const obj = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of Object.keys(obj).sort()) {
    const v = write(obj[key]);
    if (v !== undefined) parts.push(`${JSON.stringify(key)}:${v}`);
  }
  return `{${parts.join(',')}}`;
}

/** sha256 of a string, hex. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
