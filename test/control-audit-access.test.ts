import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, parseQuery, runQuery } from '../src/audit/index.ts';
import { auditAccess, canAuditAgent, scopeAuditQuery } from '../src/control/authorize.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';

const POLICY = (control: string) => `
servers:
  s: { url: "http://127.0.0.1:9/mcp" }
agents:
  - agent: alpha
    owner: U0ALPHA
    approvers: [U0SHARED]
    mcp_scopes: { s: [read] }
  - agent: beta
    owner: U0BETA
    approvers: [U0SHARED]
    mcp_scopes: { s: [read] }
  - agent: gamma
    mcp_scopes: { s: [read] }
control:
  halters: [U0HALT]
  resumers: [U0RESUME]
${control}`;

const slack = (userId: string) => ({ kind: 'slack', userId }) as const;

describe('auditAccess (pure)', () => {
  it('with control.auditors set, only the listed users may read, and they read everything', () => {
    const p = parsePolicy(POLICY('  auditors: [U0AUDIT]'), 'p.yml', {});
    expect(auditAccess(p, slack('U0AUDIT'))).toEqual({ ok: true, agents: 'all' });
    for (const u of ['U0ALPHA', 'U0SHARED', 'U0HALT', 'U0RESUME', 'U0NOBODY']) {
      expect(auditAccess(p, slack(u))).toEqual({ ok: false, reason: `<@${u}> is not in control.auditors` });
    }
    expect(auditAccess(p, { kind: 'cli', user: 'ops' })).toEqual({ ok: true, agents: 'all' });
  });

  it('with no auditors: listed halters and resumers read all, owners and approvers their agents, others nothing', () => {
    const p = parsePolicy(POLICY(''), 'p.yml', {});
    expect(auditAccess(p, slack('U0HALT'))).toEqual({ ok: true, agents: 'all' });
    expect(auditAccess(p, slack('U0RESUME'))).toEqual({ ok: true, agents: 'all' });
    expect(auditAccess(p, slack('U0ALPHA'))).toEqual({ ok: true, agents: ['alpha'] });
    expect(auditAccess(p, slack('U0SHARED'))).toEqual({ ok: true, agents: ['alpha', 'beta'] });
    expect(auditAccess(p, slack('U0NOBODY'))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/<@U0NOBODY> owns or approves no agent.*control\.auditors is empty/),
    });
  });

  it('an empty halters list (anyone may halt) opens no audit rows', () => {
    const p = parsePolicy(POLICY('').replace('halters: [U0HALT]', 'halters: []'), 'p.yml', {});
    expect(auditAccess(p, slack('U0HALT')).ok).toBe(false);
  });

  it('scopeAuditQuery binds a scoped user to their agents and refuses naming another', () => {
    const p = parsePolicy(POLICY(''), 'p.yml', {});
    const access = auditAccess(p, slack('U0ALPHA'));
    expect(scopeAuditQuery(parseQuery('since:7d', 0), access)).toMatchObject({
      ok: true,
      query: { agents: ['alpha'] },
    });
    expect(scopeAuditQuery(parseQuery('agent:alpha', 0), access)).toMatchObject({
      ok: true,
      query: { agent: 'alpha', agents: ['alpha'] },
    });
    expect(scopeAuditQuery(parseQuery('agent:beta', 0), access)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/`agent:beta` is not one of them/),
    });
    const all = scopeAuditQuery(parseQuery('agent:beta', 0), auditAccess(p, slack('U0HALT')));
    expect(all).toEqual({ ok: true, query: parseQuery('agent:beta', 0) });
    expect(canAuditAgent(access, 'alpha')).toEqual({ ok: true });
    expect(canAuditAgent(access, 'beta').ok).toBe(false);
  });
});

describe('runQuery honours the agents scope', () => {
  let dir: string;
  let db: Db;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-audit-access-'));
    db = openDb(join(dir, 'w.db'));
    const log = new AuditLog(db);
    for (const agent of ['alpha', 'beta', 'gamma', 'alpha'])
      await log.append({ event: 'call.decided', agent, decision: 'allow' });
    await log.append({ event: 'control.halt', decision: 'halted', reason: 'org-wide' });
    await log.close();
  });
  afterAll(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns only rows of the listed agents; an empty scope returns nothing', () => {
    const q = parseQuery('', 0);
    expect(runQuery(db, q).rows).toHaveLength(5);
    expect(runQuery(db, { ...q, agents: ['alpha'] }).rows.map((r) => r.agent)).toEqual(['alpha', 'alpha']);
    expect(runQuery(db, { ...q, agents: ['alpha', 'beta'] }).rows.map((r) => r.agent)).toEqual([
      'alpha',
      'beta',
      'alpha',
    ]);
    // Agent-less rows (org-wide halts, refusals) are not any owner's.
    expect(runQuery(db, { ...q, event: 'control.halt', agents: ['alpha'] }).rows).toEqual([]);
    expect(runQuery(db, { ...q, agents: [] }).rows).toEqual([]);
    // Both filters apply: a named agent outside the scope yields nothing.
    expect(runQuery(db, { ...parseQuery('agent:beta', 0), agents: ['alpha'] }).rows).toEqual([]);
  });
});
