import { WardenError } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { AUDIT_DECISIONS, AUDIT_EVENTS, type AuditDecision, type AuditEvent, type AuditRow } from './types.ts';

/**
 * The audit query language, shared by `/audit` in Slack and `warden audit
 * query`: space-separated key:value terms, all ANDed, e.g.
 *   agent:support-triage tool:send_customer_email decision:denied since:7d
 */

export type OutputFormat = 'table' | 'json' | 'csv';

export interface AuditQuery {
  agent?: string | undefined;
  server?: string | undefined;
  /** Bare tool name; `server` is set too when the query named `server__tool`. */
  tool?: string | undefined;
  /** Stored decision values to match (any of). */
  decisions?: AuditDecision[] | undefined;
  /** Inclusive lower bound, epoch ms. */
  since?: number | undefined;
  /** Exclusive upper bound, epoch ms. */
  until?: number | undefined;
  approver?: string | undefined;
  /** Exact event, or a prefix when the query ended it with `*` (e.g. `call.*`). */
  event?: AuditEvent | string | undefined;
  eventPrefix?: boolean | undefined;
  callId?: string | undefined;
  limit: number;
  /**
   * Only rows of these agents: an access scope the caller sets from policy
   * (never parsed from the query text), so a Slack user who may see some
   * agents' rows gets them and nothing else. An empty list matches no row.
   */
  agents?: readonly string[] | undefined;
  /** Parsed and returned; rendering is the caller's job (formatRows). */
  format?: OutputFormat | undefined;
}

export const DEFAULT_QUERY_LIMIT = 50;
export const MAX_QUERY_LIMIT = 1000;
export const QUERY_EXAMPLE = 'agent:support-triage tool:send_customer_email decision:denied since:7d limit:100';
export const QUERY_KEYS = [
  'agent',
  'tool',
  'server',
  'decision',
  'since',
  'until',
  'approver',
  'event',
  'call',
  'limit',
  'format',
] as const;
type QueryKey = (typeof QUERY_KEYS)[number];

/** Words people type → the decision values Warden stores: each stored value as itself, plus the words people use. */
const DECISIONS: Readonly<Record<string, readonly AuditDecision[]>> = {
  ...Object.fromEntries(AUDIT_DECISIONS.map((d) => [d, [d]])),
  denied: ['deny'],
  allowed: ['allow'],
  approve: ['approved', 'approve'],
  approved: ['approved', 'approve'],
  reject: ['rejected', 'reject'],
  rejected: ['rejected', 'reject'],
  canceled: ['cancelled'],
};

/** The policy decisions and outcomes a person is likely to ask for, named in the error for an unknown word. */
const COMMON_DECISION_WORDS = 'denied, allowed, approved, rejected, expired, cancelled, abandoned, halted, error, ok';

const DURATION_UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const NAME = /^[A-Za-z0-9_.:@\-/]+$/;

function fail(message: string, key?: string): never {
  throw new WardenError('QUERY_INVALID', `${message}. Example: ${QUERY_EXAMPLE}`, {
    details: key ? { key } : undefined,
  });
}

/** Splits on whitespace, keeping key:"quoted value" together. */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  const re = /(\S+?:)"([^"]*)"|\S+/g;
  for (const m of text.matchAll(re)) tokens.push(m[1] !== undefined ? m[1] + m[2] : m[0]);
  return tokens;
}

export function parseQuery(text: string, now: number): AuditQuery {
  if (typeof text !== 'string') fail('query must be text');
  if (text.length > 2000) fail('query is too long (max 2000 characters)');
  const q: AuditQuery = { limit: DEFAULT_QUERY_LIMIT };
  const seen = new Set<QueryKey>();
  for (const token of tokenize(text.trim())) {
    const colon = token.indexOf(':');
    if (colon <= 0) fail(`"${token}" is not a key:value term (keys: ${QUERY_KEYS.join(', ')})`);
    const rawKey = token.slice(0, colon).toLowerCase();
    const value = token.slice(colon + 1);
    if (!(QUERY_KEYS as readonly string[]).includes(rawKey))
      fail(`unknown key "${rawKey}" (keys: ${QUERY_KEYS.join(', ')})`, rawKey);
    const key = rawKey as QueryKey;
    if (seen.has(key)) fail(`key "${key}" is given twice`, key);
    seen.add(key);
    if (value === '') fail(`key "${key}" has no value`, key);
    switch (key) {
      case 'agent':
      case 'server':
      case 'event':
      case 'call': {
        let v = value;
        let prefix = false;
        if (key === 'event' && v.endsWith('*')) {
          prefix = true;
          v = v.slice(0, -1);
        }
        if (!NAME.test(v)) fail(`${key}:"${value}" has characters a ${key} name cannot have`, key);
        if (key === 'agent') q.agent = v;
        else if (key === 'server') setServer(q, v);
        else if (key === 'event') {
          // Only what Warden writes: a typo would otherwise match nothing and look like a clean trail.
          const known = prefix
            ? AUDIT_EVENTS.some((e) => e.startsWith(v))
            : (AUDIT_EVENTS as readonly string[]).includes(v);
          if (!known)
            fail(
              `event:"${value}" is not an event Warden records (one of: ${AUDIT_EVENTS.join(', ')}; end with * for a prefix)`,
              key,
            );
          q.event = v;
          q.eventPrefix = prefix;
        } else q.callId = v;
        break;
      }
      case 'tool': {
        if (!NAME.test(value)) fail(`tool:"${value}" has characters a tool name cannot have`, key);
        const sep = value.indexOf('__');
        if (sep > 0 && sep < value.length - 2) {
          setServer(q, value.slice(0, sep));
          q.tool = value.slice(sep + 2);
        } else q.tool = value;
        break;
      }
      case 'approver': {
        // Slack turns a typed @mention into <@U123|name>.
        const v = value.replace(/^<@([^|>]+)(?:\|[^>]*)?>$/, '$1').replace(/^@/, '');
        if (!NAME.test(v)) fail(`approver:"${value}" is not a Slack user id (e.g. approver:U012ABCDEF)`, key);
        q.approver = v;
        break;
      }
      case 'decision': {
        const values = new Set<AuditDecision>();
        for (const word of value.toLowerCase().split(',')) {
          const mapped = Object.hasOwn(DECISIONS, word) ? DECISIONS[word] : undefined;
          if (!mapped) fail(`decision:"${word}" is not a decision Warden records (e.g. ${COMMON_DECISION_WORDS})`, key);
          for (const d of mapped) values.add(d);
        }
        q.decisions = [...values];
        break;
      }
      case 'since':
      case 'until':
        q[key] = parseTime(value, key, now);
        break;
      case 'limit': {
        if (!/^\d+$/.test(value)) fail(`limit:"${value}" is not a whole number`, key);
        const n = Number(value);
        if (n < 1 || n > MAX_QUERY_LIMIT) fail(`limit:${value} is out of range (1..${MAX_QUERY_LIMIT})`, key);
        q.limit = n;
        break;
      }
      case 'format': {
        const f = value.toLowerCase();
        if (f !== 'table' && f !== 'json' && f !== 'csv') fail(`format:"${value}" is not one of table, json, csv`, key);
        q.format = f;
        break;
      }
    }
  }
  if (q.since !== undefined && q.until !== undefined && q.since >= q.until) {
    fail(
      `since (${new Date(q.since).toISOString()}) must be before until (${new Date(q.until).toISOString()})`,
      'since',
    );
  }
  return q;
}

function setServer(q: AuditQuery, server: string): void {
  if (q.server !== undefined && q.server !== server)
    fail(`server is given as both "${q.server}" and "${server}"`, 'server');
  q.server = server;
}

/** `7d`, `90m`, … (that long before now) or an ISO date / date-time (a date alone is midnight UTC). */
function parseTime(value: string, key: 'since' | 'until', now: number): number {
  const dur = /^(\d+)([smhdw])$/.exec(value);
  if (dur) return now - Number(dur[1]) * DURATION_UNITS[dur[2]!]!;
  if (/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,3})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/.test(value)) {
    // A date-time without a zone is read as UTC, so the answer does not depend on the server's TZ.
    const iso =
      value.length > 10 && !/(?:Z|[+-]\d{2}:?\d{2})$/.test(value)
        ? `${value.replace(' ', 'T')}Z`
        : value.replace(' ', 'T');
    const ms = Date.parse(iso);
    // Round-trip the date part so 2026-02-31 is refused rather than read as 3 March.
    const [y, mo, d] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
    const day = new Date(Date.UTC(y, mo - 1, d));
    if (Number.isFinite(ms) && day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d)
      return ms;
    fail(`${key}:"${value}" is not a real date`, key);
  }
  fail(
    `${key}:"${value}" is neither a duration (30m, 12h, 7d, 2w; units s m h d w) nor an ISO date (2026-11-01 or 2026-11-01T09:30Z)`,
    key,
  );
}

export interface QueryPage {
  /** Newest first. */
  rows: AuditRow[];
  /** Pass as `before` to get the next (older) page; absent on the last page. */
  nextCursor?: number | undefined;
}

export function runQuery(db: Db, q: AuditQuery, opts: { before?: number | undefined } = {}): QueryPage {
  const where: string[] = [];
  const params: unknown[] = [];
  const eq = (col: string, v: string | undefined) => {
    if (v !== undefined) {
      where.push(`${col} = ?`);
      params.push(v);
    }
  };
  eq('agent', q.agent);
  if (q.agents !== undefined) {
    // Fail closed: an empty scope is "nothing", not "no filter".
    if (q.agents.length === 0) where.push('1 = 0');
    else {
      where.push(`agent IN (${q.agents.map(() => '?').join(', ')})`);
      params.push(...q.agents);
    }
  }
  eq('approver', q.approver);
  eq('call_id', q.callId);
  if (q.tool !== undefined) {
    if (q.server !== undefined) {
      // Rows may hold the bare tool with its server, or the qualified name.
      where.push('((server = ? AND tool = ?) OR tool = ?)');
      params.push(q.server, q.tool, `${q.server}__${q.tool}`);
    } else {
      where.push(`(tool = ? OR tool LIKE ? ESCAPE '\\')`);
      params.push(q.tool, `%\\_\\_${likeEscape(q.tool)}`);
    }
  } else eq('server', q.server);
  if (q.decisions?.length) {
    where.push(`decision IN (${q.decisions.map(() => '?').join(', ')})`);
    params.push(...q.decisions);
  }
  if (q.event !== undefined) {
    if (q.eventPrefix) {
      where.push(`event LIKE ? ESCAPE '\\'`);
      params.push(`${likeEscape(q.event)}%`);
    } else eq('event', q.event);
  }
  if (q.since !== undefined) {
    where.push('ts >= ?');
    params.push(q.since);
  }
  if (q.until !== undefined) {
    where.push('ts < ?');
    params.push(q.until);
  }
  if (opts.before !== undefined) {
    if (!Number.isInteger(opts.before) || opts.before < 1)
      throw new WardenError('QUERY_INVALID', `cursor must be a positive row number, got ${String(opts.before)}`);
    where.push('seq < ?');
    params.push(opts.before);
  }
  const limit = Math.min(Math.max(1, Math.trunc(q.limit || DEFAULT_QUERY_LIMIT)), MAX_QUERY_LIMIT);
  const sql = `SELECT * FROM audit${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
  const rows = db.prepare<unknown[], AuditRow>(sql).all(...params, limit + 1);
  if (rows.length > limit) {
    rows.length = limit;
    return { rows, nextCursor: rows[limit - 1]!.seq };
  }
  return { rows };
}

function likeEscape(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}
