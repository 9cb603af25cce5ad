import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AuditLog,
  csvCell,
  formatRows,
  parseQuery,
  runQuery,
  type AuditEntry,
  type AuditRow,
} from '../src/audit/index.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';

const NOW = Date.parse('2026-11-20T12:00:00Z');
const DAY = 86_400_000;

function queryError(text: string): Error {
  try {
    parseQuery(text, NOW);
  } catch (err) {
    expect(isWardenError(err, 'QUERY_INVALID')).toBe(true);
    return err as Error;
  }
  throw new Error(`expected "${text}" to be refused`);
}

describe('parseQuery', () => {
  it('defaults: empty query, limit 50', () => {
    expect(parseQuery('', NOW)).toEqual({ limit: 50 });
    expect(parseQuery('   ', NOW)).toEqual({ limit: 50 });
  });

  it('parses every key', () => {
    const q = parseQuery(
      'agent:support-triage tool:send_customer_email server:tickets decision:denied since:7d until:2026-11-19 approver:U012ABC event:call.decided call:c-1 limit:200 format:csv',
      NOW,
    );
    expect(q).toEqual({
      agent: 'support-triage',
      tool: 'send_customer_email',
      server: 'tickets',
      decisions: ['deny'],
      since: NOW - 7 * DAY,
      until: Date.parse('2026-11-19T00:00:00Z'),
      approver: 'U012ABC',
      event: 'call.decided',
      eventPrefix: false,
      callId: 'c-1',
      limit: 200,
      format: 'csv',
    });
  });

  it('reads every duration unit and ISO forms', () => {
    expect(parseQuery('since:30s', NOW).since).toBe(NOW - 30_000);
    expect(parseQuery('since:15m', NOW).since).toBe(NOW - 15 * 60_000);
    expect(parseQuery('since:12h', NOW).since).toBe(NOW - 12 * 3_600_000);
    expect(parseQuery('since:2d', NOW).since).toBe(NOW - 2 * DAY);
    expect(parseQuery('since:2w', NOW).since).toBe(NOW - 14 * DAY);
    expect(parseQuery('since:2026-11-01T09:30Z', NOW).since).toBe(Date.parse('2026-11-01T09:30:00Z'));
    expect(parseQuery('since:2026-11-01T09:30', NOW).since).toBe(Date.parse('2026-11-01T09:30:00Z'));
    expect(parseQuery('since:2026-11-01T09:30:00+02:00', NOW).since).toBe(Date.parse('2026-11-01T07:30:00Z'));
  });

  it('maps decision words to stored values', () => {
    expect(parseQuery('decision:deny', NOW).decisions).toEqual(['deny']);
    expect(parseQuery('decision:allowed', NOW).decisions).toEqual(['allow']);
    expect(parseQuery('decision:blocked,failed', NOW).decisions).toEqual(['blocked', 'failed']);
    expect(parseQuery('decision:approved', NOW).decisions).toEqual(['approved', 'approve']);
    expect(parseQuery('decision:Rejected', NOW).decisions).toEqual(['rejected', 'reject']);
    for (const d of ['expired', 'error', 'ok', 'halted'])
      expect(parseQuery(`decision:${d}`, NOW).decisions).toEqual([d]);
    expect(parseQuery('decision:cancelled', NOW).decisions).toContain('cancelled');
    expect(parseQuery('decision:denied,halted', NOW).decisions).toEqual(['deny', 'halted']);
    expect(() => parseQuery('decision:maybe', NOW)).toThrow(/decision:"maybe" is not a decision Warden records/);
  });

  it('accepts only events Warden records, or a prefix of one', () => {
    expect(parseQuery('event:approval.*', NOW)).toMatchObject({ event: 'approval.', eventPrefix: true });
    expect(() => parseQuery('event:call.decide', NOW)).toThrow(/event:"call.decide" is not an event Warden records/);
    expect(() => parseQuery('event:tool.*', NOW)).toThrow(/is not an event Warden records/);
  });

  it('splits a qualified tool name into server and tool', () => {
    expect(parseQuery('tool:crm__refund_request', NOW)).toMatchObject({ server: 'crm', tool: 'refund_request' });
    expect(parseQuery('tool:crm__refund_request server:crm', NOW)).toMatchObject({
      server: 'crm',
      tool: 'refund_request',
    });
    expect(queryError('tool:crm__refund_request server:tickets').message).toMatch(
      /server is given as both "crm" and "tickets"/,
    );
  });

  it('accepts quoted values, Slack mentions and event prefixes', () => {
    expect(parseQuery('approver:<@U0123ABC|alice>', NOW).approver).toBe('U0123ABC');
    expect(parseQuery('agent:"support-triage"', NOW).agent).toBe('support-triage');
    expect(parseQuery('event:approval.*', NOW)).toMatchObject({ event: 'approval.', eventPrefix: true });
  });

  it('refuses bad input with QUERY_INVALID naming the key, with an example', () => {
    const unknown = queryError('agent:x colour:red');
    expect(unknown.message).toMatch(/unknown key "colour"/);
    expect(unknown.message).toMatch(/Example: agent:/);
    expect(queryError('since:7y').message).toMatch(/since:"7y" is neither a duration/);
    expect(queryError('since:yesterday').message).toMatch(/since:"yesterday"/);
    expect(queryError('until:2026-02-31').message).toMatch(/until:"2026-02-31" is not a real date/);
    expect(queryError('decision:maybe').message).toMatch(/decision:"maybe" is not a decision/);
    expect(queryError('limit:0').message).toMatch(/limit:0 is out of range \(1\.\.1000\)/);
    expect(queryError('limit:1001').message).toMatch(/out of range/);
    expect(queryError('limit:ten').message).toMatch(/limit:"ten" is not a whole number/);
    expect(queryError('format:xml').message).toMatch(/format:"xml"/);
    expect(queryError('agent:').message).toMatch(/key "agent" has no value/);
    expect(queryError('agent:a agent:b').message).toMatch(/key "agent" is given twice/);
    expect(queryError('refunds').message).toMatch(/"refunds" is not a key:value term/);
    expect(queryError('agent:a;drop').message).toMatch(/agent:"a;drop"/);
    expect(queryError('since:1d until:2d').message).toMatch(/since .* must be before until/);
    for (const text of ['colour:red', 'since:7y', 'limit:0']) expect(queryError(text).message).toContain('Example:');
  });
});

describe('parseQuery: edges', () => {
  const refused = (text: string) => queryError(text) as Error & { details?: Record<string, unknown> };

  it('refuses a query that is not text, and one over 2000 characters (2000 is fine)', () => {
    expect(() => parseQuery(42 as unknown as string, NOW)).toThrow(/^query must be text\. Example: /);
    expect(parseQuery(`agent:${'a'.repeat(1994)}`, NOW).agent).toHaveLength(1994);
    expect(refused(`agent:${'a'.repeat(1995)}`).message).toMatch(/^query is too long \(max 2000 characters\)/);
  });

  it('names the key in the error details, and none when there is no key', () => {
    expect(refused('limit:0').details).toEqual({ key: 'limit' });
    expect(refused('since:1d until:2d').details).toEqual({ key: 'since' });
    expect(refused('refunds').details).toBeUndefined();
    expect(refused(':x').message).toMatch(/^":x" is not a key:value term \(keys: agent, tool, server, decision/);
  });

  it('reads keys in any case', () => {
    expect(parseQuery('AGENT:a Limit:2', NOW)).toEqual({ agent: 'a', limit: 2 });
  });

  it('splits a tool at its first __ only when both halves are there', () => {
    expect(parseQuery('tool:__x', NOW)).toEqual({ tool: '__x', limit: 50 });
    expect(parseQuery('tool:crm__', NOW)).toEqual({ tool: 'crm__', limit: 50 });
    expect(parseQuery('tool:crm__x', NOW)).toMatchObject({ server: 'crm', tool: 'x' });
    expect(parseQuery('tool:a__b__c', NOW)).toMatchObject({ server: 'a', tool: 'b__c' });
    expect(refused('tool:a;b').message).toMatch(/^tool:"a;b" has characters a tool name cannot have/);
    expect(refused('server:a server:b').message).toMatch(/given twice/);
  });

  it('reads an approver as an id, @id or a Slack mention, and refuses anything else', () => {
    expect(parseQuery('approver:@U0AB', NOW).approver).toBe('U0AB');
    expect(parseQuery('approver:<@U0AB>', NOW).approver).toBe('U0AB');
    expect(refused('approver:<@U0AB|x').message).toMatch(/^approver:"<@U0AB\|x" is not a Slack user id/);
    expect(refused('approver:U0;x').message).toMatch(/is not a Slack user id/);
  });

  it('an event prefix still has to be a name', () => {
    expect(refused('event:call;*').message).toMatch(/^event:"call;\*" has characters a event name cannot have/);
    expect(parseQuery('event:call.completed', NOW)).toMatchObject({ event: 'call.completed', eventPrefix: false });
  });

  it('takes only decision words it knows, never an inherited property name', () => {
    for (const word of ['constructor', '__proto__'])
      expect(refused(`decision:${word}`).message).toMatch(
        new RegExp(`^decision:"${word}" is not a decision Warden records`),
      );
    expect(parseQuery('decision:approve,approved,canceled', NOW).decisions).toEqual([
      'approved',
      'approve',
      'cancelled',
    ]);
  });

  it('limit: 1 and 1000 are the bounds', () => {
    expect(parseQuery('limit:1', NOW).limit).toBe(1);
    expect(parseQuery('limit:1000', NOW).limit).toBe(1000);
    expect(refused('limit:-1').message).toMatch(/not a whole number/);
  });

  it('format: table, json or csv in any case', () => {
    expect(parseQuery('format:table', NOW).format).toBe('table');
    expect(parseQuery('format:JSON', NOW).format).toBe('json');
    expect(refused('format:xml').message).toMatch(/^format:"xml" is not one of table, json, csv/);
  });

  it('since must be strictly before until', () => {
    expect(refused('since:2026-11-01 until:2026-11-01').message).toMatch(
      /^since \(2026-11-01T00:00:00\.000Z\) must be before until \(2026-11-01T00:00:00\.000Z\)/,
    );
    expect(parseQuery('since:2026-11-01 until:2026-11-01T00:00:01Z', NOW)).toMatchObject({
      since: Date.parse('2026-11-01T00:00:00Z'),
      until: Date.parse('2026-11-01T00:00:01Z'),
    });
  });

  it('reads the other ISO forms: a date alone, a space, seconds with a fraction, a zone without a colon', () => {
    expect(parseQuery('since:2026-11-01', NOW).since).toBe(Date.parse('2026-11-01T00:00:00Z'));
    expect(parseQuery('since:"2026-11-01 09:30"', NOW).since).toBe(Date.parse('2026-11-01T09:30:00Z'));
    expect(parseQuery('since:2026-11-01T09:30:15.5', NOW).since).toBe(Date.parse('2026-11-01T09:30:15.500Z'));
    expect(parseQuery('since:2026-11-01T09:30-0130', NOW).since).toBe(Date.parse('2026-11-01T11:00:00Z'));
    expect(parseQuery('since:2024-02-29', NOW).since).toBe(Date.parse('2024-02-29T00:00:00Z'));
    expect(refused('since:2026-02-29').message).toMatch(/^since:"2026-02-29" is not a real date/);
    expect(refused('since:2026-11-01T25:00Z').message).toMatch(/is not a real date/);
    expect(refused('since:2026-11-01T09:30Zjunk').message).toMatch(/is neither a duration/);
  });
});

describe('runQuery against a seeded database', () => {
  let dir: string;
  let db: Db;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-audit-query-'));
    db = openDb(await storeLocation(dir));
    const log = new AuditLog(db);
    const entries: AuditEntry[] = [
      {
        ts: NOW - 10 * DAY,
        event: 'call.decided',
        agent: 'support-triage',
        server: 'tickets',
        tool: 'send_customer_email',
        decision: 'deny',
        reason: 'old',
      },
      {
        ts: NOW - 3 * DAY,
        event: 'call.decided',
        agent: 'support-triage',
        server: 'tickets',
        tool: 'send_customer_email',
        decision: 'deny',
        reason: 'recent',
      },
      {
        ts: NOW - 2 * DAY,
        event: 'approval.decided',
        agent: 'support-triage',
        server: 'crm',
        tool: 'refund_request',
        decision: 'approved',
        approver: 'U0ALICE',
      },
      {
        ts: NOW - 2 * DAY,
        event: 'approval.decided',
        agent: 'support-triage',
        server: 'crm',
        tool: 'refund_request',
        decision: 'rejected',
        approver: 'U0BOB',
      },
      {
        ts: NOW - DAY,
        event: 'call.decided',
        agent: 'billing-bot',
        server: 'crm',
        tool: 'lookup_customer',
        decision: 'allow',
      },
      {
        ts: NOW - DAY,
        event: 'call.completed',
        agent: 'billing-bot',
        server: 'crm',
        tool: 'lookup_customer',
        decision: 'ok',
        durationMs: 5,
      },
      {
        ts: NOW - 60_000,
        event: 'call.decided',
        agent: 'billing-bot',
        tool: 'crm__refund_request',
        decision: 'halted',
      },
    ];
    for (const e of entries) await log.append(e);
    // A page-able block of rows.
    await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        log.append({ ts: NOW - 30_000, event: 'call.decided', agent: 'pager', decision: 'allow', callId: `p${i}` }),
      ),
    );
  });

  afterAll(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const seqs = (text: string) => runQuery(db, parseQuery(text, NOW)).rows.map((r) => r.reason ?? r.decision);

  it('filters by agent, tool, decision and time, newest first', () => {
    expect(seqs('agent:support-triage tool:send_customer_email decision:denied since:7d')).toEqual(['recent']);
    expect(seqs('agent:support-triage tool:send_customer_email decision:denied')).toEqual(['recent', 'old']);
    expect(seqs('agent:support-triage decision:denied until:2026-11-15')).toEqual(['old']);
  });

  it('matches a tool given bare or qualified, stored bare or qualified', () => {
    expect(seqs('tool:refund_request')).toEqual(['halted', 'rejected', 'approved']);
    expect(seqs('tool:crm__refund_request')).toEqual(['halted', 'rejected', 'approved']);
    expect(seqs('tool:tickets__refund_request')).toEqual([]);
    expect(seqs('server:crm agent:billing-bot')).toEqual(['ok', 'allow']);
  });

  it('filters by approver, event (exact and prefix) and call id', () => {
    expect(seqs('approver:U0BOB')).toEqual(['rejected']);
    expect(seqs('event:approval.decided decision:approved')).toEqual(['approved']);
    expect(seqs('event:approval.* agent:support-triage')).toEqual(['rejected', 'approved']);
    expect(runQuery(db, parseQuery('call:p7', NOW)).rows.map((r) => r.call_id)).toEqual(['p7']);
  });

  it('pages with a cursor: default 50, then the next page before the cursor, no overlap', () => {
    const q = parseQuery('agent:pager', NOW);
    const first = runQuery(db, q);
    expect(first.rows).toHaveLength(50);
    expect(first.nextCursor).toBe(first.rows[49]!.seq);
    const second = runQuery(db, q, { before: first.nextCursor });
    const third = runQuery(db, q, { before: second.nextCursor });
    expect(second.rows).toHaveLength(50);
    expect(third.rows).toHaveLength(20);
    expect(third.nextCursor).toBeUndefined();
    const all = [...first.rows, ...second.rows, ...third.rows].map((r) => r.seq);
    expect(new Set(all).size).toBe(120);
    expect(all).toEqual([...all].sort((a, b) => b - a));
    expect(runQuery(db, parseQuery('agent:pager limit:1000', NOW)).rows).toHaveLength(120);
  });

  it('a page exactly the limit long has no next page', () => {
    const page = runQuery(db, parseQuery('agent:pager limit:120', NOW));
    expect(page.rows).toHaveLength(120);
    expect(page.nextCursor).toBeUndefined();
    const short = runQuery(db, parseQuery('agent:pager limit:119', NOW));
    expect(short.nextCursor).toBe(short.rows[118]!.seq);
  });

  it('clamps a limit set in code: none is the default, and it stays within 1..1000, whole', () => {
    const q = parseQuery('agent:pager', NOW);
    expect(runQuery(db, { ...q, limit: 0 }).rows).toHaveLength(50);
    expect(runQuery(db, { ...q, limit: 2.7 }).rows).toHaveLength(2);
    expect(runQuery(db, { ...q, limit: -3 }).rows).toHaveLength(1);
    expect(runQuery(db, { ...q, limit: 5000 }).rows).toHaveLength(120);
  });

  it('refuses a cursor that is not a positive whole row number', () => {
    const q = parseQuery('agent:pager', NOW);
    for (const before of [0, -1, 1.5, Number.NaN])
      expect(() => runQuery(db, q, { before })).toThrow(`cursor must be a positive row number, got ${String(before)}`);
    expect(runQuery(db, q, { before: 1 }).rows).toEqual([]);
  });

  it('an agent scope limits rows to those agents, and an empty scope matches nothing', () => {
    const agentsOf = (agents: readonly string[] | undefined, text = '') =>
      [...new Set(runQuery(db, { ...parseQuery(`${text} limit:1000`, NOW), agents }).rows.map((r) => r.agent))].sort();
    expect(agentsOf(undefined)).toEqual(['billing-bot', 'pager', 'support-triage']);
    expect(agentsOf([])).toEqual([]);
    expect(agentsOf(['billing-bot', 'support-triage'])).toEqual(['billing-bot', 'support-triage']);
    expect(agentsOf(['billing-bot'], 'agent:support-triage')).toEqual([]);
    expect(agentsOf([], 'agent:support-triage')).toEqual([]);
  });

  it('a server alone, an empty decision list and the time bounds filter as they say', () => {
    const q = parseQuery('', NOW);
    expect(runQuery(db, { ...q, server: 'tickets' }).rows.map((r) => r.reason)).toEqual(['recent', 'old']);
    expect(runQuery(db, { ...q, agent: 'support-triage', decisions: [] }).rows).toHaveLength(4);
    // since is inclusive, until exclusive.
    const at = NOW - 2 * DAY;
    expect(runQuery(db, { ...q, since: at, until: at + 1 }).rows.map((r) => r.decision)).toEqual([
      'rejected',
      'approved',
    ]);
    expect(runQuery(db, { ...q, since: at + 1, until: NOW - DAY }).rows).toEqual([]);
    expect(runQuery(db, { ...q, since: at - 1, until: at }).rows).toEqual([]);
  });

  it('treats LIKE wildcards in names literally', () => {
    // _ is a LIKE wildcard: unescaped, these would match refund_request and call.decided.
    expect(seqs('tool:refund_reques_')).toEqual([]);
    // No event has a LIKE wildcard in its name, so such a prefix is refused before it reaches SQL.
    expect(() => seqs('event:call_*')).toThrow(/is not an event Warden records/);
    expect(seqs('event:call.*').length).toBeGreaterThan(0);
  });
});

describe('formatRows', () => {
  const row = (over: Partial<AuditRow>): AuditRow => ({
    seq: 1,
    ts: Date.parse('2026-11-01T09:30:00Z'),
    event: 'call.decided',
    call_id: 'c1',
    agent: 'support-triage',
    owner: null,
    server: 'tickets',
    tool: 'send_customer_email',
    args: '{"to":"a@b.c"}',
    result: null,
    decision: 'deny',
    reason: 'out of scope',
    approver: null,
    duration_ms: null,
    detail: null,
    prev_hash: '0'.repeat(64),
    hash: 'a'.repeat(64),
    ...over,
  });

  it('csv: RFC 4180 quoting, CRLF, header, formula-injection guard', () => {
    const csv = formatRows(
      [
        row({ reason: 'said "hi", then\nleft' }),
        row({ seq: 2, reason: '=HYPERLINK("http://evil")', agent: '+agent', approver: '@U1', tool: '-rm' }),
      ],
      'csv',
    );
    const lines = csv.split('\r\n');
    expect(lines[0]).toBe(
      'seq,ts,event,call_id,agent,owner,server,tool,decision,reason,approver,duration_ms,args,result,detail,prev_hash,hash',
    );
    expect(csv).toContain('"said ""hi"", then\nleft"');
    expect(csv).toContain(`"'=HYPERLINK(""http://evil"")"`);
    expect(csv).toContain(",'+agent,");
    expect(csv).toContain(",'@U1,");
    expect(csv).toContain(",'-rm,");
    expect(csv).toContain('2026-11-01T09:30:00.000Z');
    expect(csv).toContain('"{""to"":""a@b.c""}"');
    expect(csv.endsWith('\r\n')).toBe(true);
    expect(csvCell(null)).toBe('');
    expect(csvCell(-5)).toBe('-5');
    expect(csvCell('\tcmd')).toBe("'\tcmd");
    expect(csvCell('plain')).toBe('plain');
  });

  it('json: an array with JSON columns parsed, truncated text kept as text', () => {
    const parsed = JSON.parse(formatRows([row({ result: '{"a":1…[truncated 5 of 12 chars]' })], 'json'));
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({
      seq: 1,
      time: '2026-11-01T09:30:00.000Z',
      args: { to: 'a@b.c' },
      result: '{"a":1…[truncated 5 of 12 chars]',
      decision: 'deny',
    });
    expect(JSON.parse(formatRows([], 'json'))).toEqual([]);
  });

  it('table: fixed-width aligned columns, one line per row, long cells cut', () => {
    const table = formatRows(
      [row({ seq: 7, reason: 'x'.repeat(200) }), row({ seq: 12, reason: 'two\nlines', agent: 'a' })],
      'table',
    );
    const lines = table.trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^SEQ\s+TIME \(UTC\)\s+EVENT\s+AGENT\s+TOOL\s+DECISION/);
    expect(lines[2]).toContain('2026-11-01 09:30:00');
    expect(lines[2]).toContain('tickets__send_customer_email');
    expect(lines[2]).toContain('…');
    expect(lines[3]).toContain('two lines');
    // Columns line up: DECISION starts at the same offset in every line.
    const col = lines[0]!.indexOf('DECISION');
    for (const l of lines.slice(2)) expect(l.slice(col, col + 4)).toBe('deny');
    expect(formatRows([], 'table')).toMatch(/no matching audit rows/);
  });
});
