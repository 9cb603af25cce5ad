import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../src/audit/log.ts';
import { canDrill, canHalt, canResume } from '../src/control/authorize.ts';
import { alertChannels, MemoryAlertSink } from '../src/control/alerts.ts';
import { wireHaltEffects } from '../src/control/halt-effects.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import type { HaltState } from '../src/control/types.ts';
import { isWardenError } from '../src/errors.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { UNSTARTED_SERVERS_YAML } from './support/policies.ts';
import { storeLocation } from './support/store-under-test.ts';

let dir: string;
let dbs: Db[];
/** Every connection of a test opens the one store (a SQLite file, or a PostgreSQL schema). */
let location: string;

function open(): Db {
  const db = openDb(location);
  dbs.push(db);
  return db;
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-ks-'));
  location = await storeLocation(dir);
  dbs = [];
});
afterEach(() => {
  vi.useRealTimers();
  for (const db of dbs) db.close();
  rmSync(dir, { recursive: true, force: true });
});

const POLICY = `
${UNSTARTED_SERVERS_YAML}
agents:
  - agent: support-triage
    owner: U0OWNER
    channel: C0OWNER
    mcp_scopes: { tickets: [read] }
control:
  halters: [U0HALT, U0BOTH]
  resumers: [U0BOTH]
  oncall_channel: C0ONCALL
`;

describe('KillSwitch in one process', () => {
  it('halts at once, tells listeners synchronously, persists and audits; resume clears and audits', async () => {
    const db = open();
    const audit = new AuditLog(db);
    const ks = new KillSwitch({ db, audit });
    ks.start();
    const seen: { state: HaltState; origin: string }[] = [];
    ks.onHalt((state, info) => seen.push({ state, origin: info.origin }));
    expect(ks.check('support-triage')).toBeNull();

    const pending = ks.halt({ scope: 'agent', agent: 'support-triage', reason: 'runaway loop', actor: 'slack:U0HALT' });
    // Before the audit write has even committed, the halt is in force and listeners have run.
    expect(ks.check('support-triage')?.reason).toBe('runaway loop');
    expect(ks.check('other-agent')).toBeNull();
    expect(seen).toHaveLength(1);
    expect(seen[0]!.origin).toBe('local');
    await pending;

    const row = db.prepare("SELECT * FROM control_state WHERE scope = 'agent:support-triage'").get() as {
      halted: number;
      actor: string;
      reason: string;
    };
    expect(row).toMatchObject({ halted: 1, actor: 'slack:U0HALT', reason: 'runaway loop' });
    const halts = db
      .prepare("SELECT agent, decision, reason, detail FROM audit WHERE event = 'control.halt'")
      .all() as { agent: string; detail: string }[];
    expect(halts).toHaveLength(1);
    expect(halts[0]!.agent).toBe('support-triage');
    expect(JSON.parse(halts[0]!.detail)).toMatchObject({ scope: 'agent', actor: 'slack:U0HALT' });

    await ks.halt({ scope: 'org', reason: 'incident 42', actor: 'cli:alice' });
    expect(ks.check('anyone')?.scope).toBe('org');
    expect(ks.status().map((s) => s.scope)).toEqual(['org', 'agent']);

    const r = await ks.resume({ scope: 'org', actor: 'cli:alice' });
    expect(r.resumed).toBe(true);
    expect(ks.check('anyone')).toBeNull();
    // The agent halt outlives the org resume: resuming 'all' must not silently release a quarantined agent.
    expect(ks.check('support-triage')?.scope).toBe('agent');
    await ks.resume({ scope: 'agent', agent: 'support-triage', actor: 'cli:alice' });
    expect(ks.check('support-triage')).toBeNull();
    const resumes = db.prepare("SELECT decision FROM audit WHERE event = 'control.resume' ORDER BY seq").all();
    expect(resumes).toEqual([{ decision: 'resumed' }, { decision: 'resumed' }]);
    ks.stop();
    await audit.close();
  });

  it('honours a halt after restart, before and after start()', async () => {
    const db1 = open();
    const ks1 = new KillSwitch({ db: db1, audit: new AuditLog(db1) });
    await ks1.halt({ scope: 'org', reason: 'weekend freeze', actor: 'cli:bob' });
    ks1.stop();

    const db2 = open();
    const ks2 = new KillSwitch({ db: db2, audit: new AuditLog(db2) });
    expect(ks2.check('support-triage')?.reason).toBe('weekend freeze');
    ks2.start();
    expect(ks2.check('support-triage')).toMatchObject({ scope: 'org', actor: 'cli:bob' });
    ks2.stop();
  });

  it('rejects malformed requests naming the field', async () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db) });
    const err = await ks.halt({ scope: 'agent', reason: 'x', actor: 'cli:a' }).catch((e: unknown) => e);
    expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
    expect((err as Error).message).toMatch(/agent/);
    const err2 = await ks.halt({ scope: 'org', reason: 'x', actor: '' }).catch((e: unknown) => e);
    expect((err2 as Error).message).toMatch(/actor/);
    expect(ks.check('a')).toBeNull();
  });
});

describe('KillSwitch across connections (as across processes)', () => {
  it('sees another connection’s halt and resume on the next data_version poll', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const dbA = open();
    const dbB = open();
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA) });
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), pollMs: 50 });
    b.start();
    const observed: string[] = [];
    b.onHalt((s, info) => observed.push(`halt:${s.agent}:${info.origin}`));
    b.onResume((r, info) => observed.push(`resume:${r.agent}:${info.origin}:${r.actor}`));

    await a.halt({ scope: 'agent', agent: 'support-triage', reason: 'exfil suspected', actor: 'slack:U0HALT' });
    // Not yet polled: B still answers from memory.
    expect(b.check('support-triage')).toBeNull();
    vi.advanceTimersByTime(50);
    expect(b.check('support-triage')).toMatchObject({ scope: 'agent', reason: 'exfil suspected' });
    expect(observed).toEqual(['halt:support-triage:remote']);

    // Nothing changed: another poll does not re-announce.
    vi.advanceTimersByTime(200);
    expect(observed).toHaveLength(1);

    await a.resume({ scope: 'agent', agent: 'support-triage', actor: 'cli:carol' });
    vi.advanceTimersByTime(50);
    expect(b.check('support-triage')).toBeNull();
    expect(observed).toEqual(['halt:support-triage:remote', 'resume:support-triage:remote:cli:carol']);
    b.stop();
  });
});

describe('who may halt and resume', () => {
  const policy = parsePolicy(POLICY, 'policy.yml');

  it('lets listed halters halt, the CLI always, and only resumers resume', () => {
    expect(canHalt(policy.control, { kind: 'slack', userId: 'U0HALT' }).ok).toBe(true);
    expect(canHalt(policy.control, { kind: 'slack', userId: 'U0RANDOM' })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/halters/),
    });
    expect(canHalt(policy.control, { kind: 'cli', user: 'root' }).ok).toBe(true);
    expect(canResume(policy.control, { kind: 'slack', userId: 'U0HALT' })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/resumers/),
    });
    expect(canResume(policy.control, { kind: 'slack', userId: 'U0BOTH' }).ok).toBe(true);
    expect(canResume(policy.control, { kind: 'cli', user: 'root' }).ok).toBe(true);
    expect(canDrill(policy.control, { kind: 'slack', userId: 'U0HALT' }).ok).toBe(false);
    expect(canDrill(policy.control, { kind: 'slack', userId: 'U0BOTH' }).ok).toBe(true);
  });

  it('with empty lists anyone may halt and nobody may resume from Slack', () => {
    const open = { ...policy.control, halters: [], resumers: [] };
    expect(canHalt(open, { kind: 'slack', userId: 'U0ANY' }).ok).toBe(true);
    expect(canResume(open, { kind: 'slack', userId: 'U0ANY' })).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/CLI/),
    });
  });

  it('routes alerts to the owner channel and on-call', () => {
    expect(alertChannels(policy, { kind: 'anomaly', severity: 'warning', agent: 'support-triage', text: 'x' })).toEqual(
      ['C0OWNER', 'C0ONCALL'],
    );
    expect(alertChannels(policy, { kind: 'review_due', severity: 'info', agent: 'support-triage', text: 'x' })).toEqual(
      ['C0OWNER'],
    );
    expect(alertChannels(policy, { kind: 'halted', severity: 'info', agent: 'support-triage', text: 'x' })).toEqual([
      'C0OWNER',
      'C0ONCALL',
    ]);
    expect(alertChannels(policy, { kind: 'drill_failed', severity: 'critical', text: 'x' })).toEqual(['C0ONCALL']);
  });
});

describe('halt effects', () => {
  it('announces a local halt; a remote one only where actOnRemote is set', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const dbA = open();
    const dbB = open();
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA) });
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB) });
    const c = new KillSwitch({ db: open(), audit: new AuditLog(dbB) });
    b.start();
    c.start();
    const alertsA = new MemoryAlertSink();
    const alertsB = new MemoryAlertSink();
    const alertsC = new MemoryAlertSink();
    wireHaltEffects({ killSwitch: a, alerts: alertsA });
    wireHaltEffects({ killSwitch: b, alerts: alertsB, actOnRemote: true });
    wireHaltEffects({ killSwitch: c, alerts: alertsC });
    await a.halt({ scope: 'org', reason: 'breach', actor: 'cli:dave' });
    vi.advanceTimersByTime(60);
    await vi.waitFor(() => expect(alertsB.alerts).toHaveLength(1));
    expect(alertsA.alerts[0]).toMatchObject({
      kind: 'halted',
      severity: 'critical',
      text: expect.stringMatching(/all agents.*cli:dave: breach/),
    });
    expect(alertsB.alerts[0]!.detail).toMatchObject({ origin: 'remote', action: 'halt' });
    expect(alertsC.alerts).toHaveLength(0);
    b.stop();
    c.stop();
  });
});
