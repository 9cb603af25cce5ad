import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditLog } from '../src/audit/log.ts';
import { canDrill, canHalt, canResume } from '../src/control/authorize.ts';
import { alertChannels, MemoryAlertSink } from '../src/control/alerts.ts';
import { wireHaltEffects } from '../src/control/halt-effects.ts';
import { KillSwitch, type HaltRequest } from '../src/control/kill-switch.ts';
import type { HaltState } from '../src/control/types.ts';
import { isWardenError } from '../src/errors.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import type { Logger } from '../src/logger.ts';
import { ManualClock } from './support/manual-clock.ts';
import { UNSTARTED_SERVERS_YAML } from './support/policies.ts';
import { allowInserts, refuseInserts } from './support/refuse-writes.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';

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

/**
 * The connection of a process that hears others only by polling. On
 * PostgreSQL a NOTIFY would also arrive, in real time, whatever the manual
 * clock says; these tests are about the poll (the fallback there), so it is
 * hidden. NOTIFY itself: test/control-halt-propagation.test.ts.
 */
function pollOnly(db: Db): Db {
  if (onSqlite()) return db;
  return new Proxy(db, {
    get(target, prop) {
      if (prop === 'listen') return undefined;
      // The target as receiver: PgDb's getters read private fields.
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

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
    const dbB = pollOnly(open());
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

/*
 * The switch's own contract, one behaviour at a time (on a manual clock, so
 * polling runs only when a test says): what a halt and a resume store, audit,
 * log and announce; validation naming the field; and the poll that carries
 * other processes' writes. Found by mutation testing (README, "Mutation testing").
 */
describe('KillSwitch in detail', () => {
  const START = Date.parse('2026-06-01T12:00:00Z');
  /** The default poll: SQLite's data_version every 50 ms; on PostgreSQL a 1 s fallback to LISTEN/NOTIFY. */
  const DEFAULT_POLL = onSqlite() ? 50 : 1000;

  function logCapture(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
    const raw: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => raw.push(line) });
    return { logger, lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>) };
  }

  function auditRows(db: Db, event: string) {
    return (
      db.prepare('SELECT agent, decision, reason, detail, ts FROM audit WHERE event = ? ORDER BY seq').all(event) as {
        agent: string | null;
        decision: string;
        reason: string | null;
        detail: string;
        ts: number;
      }[]
    ).map((r) => ({ ...r, detail: JSON.parse(r.detail) as Record<string, unknown> }));
  }

  it('a halt states who, when and why: in memory, in control_state, in the audit row and the log; a missing reason says so', async () => {
    const db = open();
    const clock = new ManualClock(START);
    const log = logCapture();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock, logger: log.logger });
    const state = await ks.halt({ scope: 'org', actor: '  cli:alice  ' });
    expect(state).toEqual({ scope: 'org', reason: 'no reason given', actor: 'cli:alice', at: START });
    expect(ks.orgHalt()).toEqual(state);
    expect(ks.check('anyone')).toEqual(state);
    expect(db.prepare('SELECT * FROM control_state').all()).toEqual([
      { scope: 'org', halted: 1, reason: 'no reason given', actor: 'cli:alice', at: START },
    ]);
    expect(auditRows(db, 'control.halt')).toEqual([
      {
        agent: null,
        decision: 'halted',
        reason: 'no reason given',
        detail: { scope: 'org', actor: 'cli:alice', persisted: true },
        ts: START,
      },
    ]);
    expect(log.lines()).toEqual([
      expect.objectContaining({ level: 40, msg: 'halted', scope: 'org', actor: 'cli:alice' }),
    ]);

    await clock.tick(1000);
    const agentState = await ks.halt({ scope: 'agent', agent: ' support-triage ', reason: '   ', actor: 'cli:bob' });
    expect(agentState).toEqual({
      scope: 'agent',
      agent: 'support-triage',
      reason: 'no reason given',
      actor: 'cli:bob',
      at: START + 1000,
    });
    expect(auditRows(db, 'control.halt')[1]).toMatchObject({
      agent: 'support-triage',
      detail: { scope: 'agent', actor: 'cli:bob', persisted: true },
      ts: START + 1000,
    });
    expect(log.lines()[1]).toMatchObject({ msg: 'halted', scope: 'agent', agent: 'support-triage', actor: 'cli:bob' });
  });

  it('halting a scope again replaces its reason, actor and time (one row per scope)', async () => {
    const db = open();
    const clock = new ManualClock(START);
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock });
    await ks.halt({ scope: 'agent', agent: 'a1', reason: 'first', actor: 'cli:one' });
    await ks.resume({ scope: 'agent', agent: 'a1', actor: 'cli:one' });
    await clock.tick(5000);
    await ks.halt({ scope: 'agent', agent: 'a1', reason: 'second', actor: 'cli:two' });
    expect(db.prepare('SELECT * FROM control_state').all()).toEqual([
      { scope: 'agent:a1', halted: 1, reason: 'second', actor: 'cli:two', at: START + 5000 },
    ]);
    expect(ks.check('a1')).toMatchObject({ reason: 'second', actor: 'cli:two', at: START + 5000 });
  });

  it('the org halt wins over an agent halt; status lists the org first, then agents by name', async () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock: new ManualClock(START) });
    await ks.halt({ scope: 'agent', agent: 'zeta', reason: 'z', actor: 'cli:a' });
    await ks.halt({ scope: 'agent', agent: 'alpha', reason: 'a', actor: 'cli:a' });
    expect(ks.orgHalt()).toBeUndefined();
    expect(ks.check('alpha')).toMatchObject({ scope: 'agent', agent: 'alpha', reason: 'a' });
    expect(ks.check('zeta')).toMatchObject({ scope: 'agent', agent: 'zeta', reason: 'z' });
    expect(ks.check('mid')).toBeNull();
    await ks.halt({ scope: 'agent', agent: 'mid', reason: 'm', actor: 'cli:a' });
    await ks.halt({ scope: 'org', reason: 'everyone', actor: 'cli:a' });
    expect(ks.check('alpha')).toMatchObject({ scope: 'org', reason: 'everyone' });
    expect(ks.status().map((s) => s.agent ?? s.scope)).toEqual(['org', 'alpha', 'mid', 'zeta']);
    // Whatever order they were made in.
    const other = open();
    const fresh = new KillSwitch({ db: other, audit: new AuditLog(other) });
    expect(fresh.status().map((s) => s.agent ?? s.scope)).toEqual(['org', 'alpha', 'mid', 'zeta']);
  });

  it('resume reports whether there was a halt, audits either way, and tells listeners only of a real one', async () => {
    const db = open();
    const clock = new ManualClock(START);
    const log = logCapture();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock, logger: log.logger });
    const resumed: unknown[] = [];
    ks.onResume((r, info) => resumed.push({ ...r, origin: info.origin }));

    expect(await ks.resume({ scope: 'agent', agent: 'a1', actor: 'cli:carol', reason: 'was never halted' })).toEqual({
      resumed: false,
      previous: undefined,
    });
    expect(resumed).toEqual([]);
    expect(auditRows(db, 'control.resume')).toEqual([
      {
        agent: 'a1',
        decision: 'not_halted',
        reason: 'was never halted',
        detail: { scope: 'agent', actor: 'cli:carol', haltedSince: null },
        ts: START,
      },
    ]);
    expect(log.lines().at(-1)).toMatchObject({ msg: 'resumed', scope: 'agent', agent: 'a1', wasHalted: false });

    const halt = await ks.halt({ scope: 'agent', agent: 'a1', reason: 'loop', actor: 'cli:dave' });
    await clock.tick(60_000);
    expect(await ks.resume({ scope: 'agent', agent: 'a1', actor: 'cli:carol', reason: 'fixed' })).toEqual({
      resumed: true,
      previous: halt,
    });
    expect(resumed).toEqual([{ scope: 'agent', agent: 'a1', actor: 'cli:carol', at: START + 60_000, origin: 'local' }]);
    expect(auditRows(db, 'control.resume')[1]).toEqual({
      agent: 'a1',
      decision: 'resumed',
      reason: 'fixed',
      detail: { scope: 'agent', actor: 'cli:carol', haltedSince: START },
      ts: START + 60_000,
    });
    expect(log.lines().at(-1)).toMatchObject({
      level: 40,
      msg: 'resumed',
      scope: 'agent',
      agent: 'a1',
      actor: 'cli:carol',
      wasHalted: true,
    });
    expect(db.prepare('SELECT * FROM control_state').all()).toEqual([
      { scope: 'agent:a1', halted: 0, reason: 'fixed', actor: 'cli:carol', at: START + 60_000 },
    ]);
    // Resuming again: nothing in force any more.
    expect((await ks.resume({ scope: 'agent', agent: 'a1', actor: 'cli:carol' })).resumed).toBe(false);
    expect(db.prepare('SELECT reason FROM control_state').pluck().get()).toBeNull();
  });

  it('names the field of a malformed halt or resume, and changes nothing', async () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db) });
    const refused = async (request: unknown) => {
      const err = await ks.halt(request as HaltRequest).catch((e: unknown) => e);
      expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
      return (err as Error).message;
    };
    expect(await refused({ scope: 'agent', actor: 'cli:a' })).toBe(
      'invalid halt/resume request: agent: agent is required when scope is agent',
    );
    expect(await refused({ scope: 'agent', agent: '   ', actor: 'cli:a' })).toBe(
      'invalid halt/resume request: agent: agent is required; agent: agent may contain letters, digits, _ . : - only',
    );
    expect(await refused({ scope: 'agent', agent: 'bad name!', actor: 'cli:a' })).toBe(
      'invalid halt/resume request: agent: agent may contain letters, digits, _ . : - only',
    );
    expect(await refused({ scope: 'agent', agent: 'a'.repeat(201), actor: 'cli:a' })).toMatch(/^[^;]*agent: .*200/);
    expect(await refused({ scope: 'agent', agent: 'a'.repeat(200), actor: 'x'.repeat(201) })).toMatch(/actor: .*200/);
    expect(await refused({ scope: 'org', actor: '  ' })).toBe('invalid halt/resume request: actor: actor is required');
    expect(await refused({ scope: 'org', actor: 'cli:a', reason: 'r'.repeat(1001) })).toMatch(/reason: .*1000/);
    expect(await refused({ scope: 'everything', actor: 'cli:a' })).toMatch(/^invalid halt\/resume request: scope: /);
    expect(await refused({ scope: 'org', actor: 'cli:a', agent: 'x y' })).toMatch(/agent: /);
    // Two problems are both named.
    expect(await refused({ scope: 'agent', agent: 'bad name!', actor: '' })).toMatch(/agent: .*; actor: /);
    const resume = await ks.resume({ scope: 'agent', actor: 'cli:a' }).catch((e: unknown) => e);
    expect((resume as Error).message).toBe('invalid halt/resume request: agent: agent is required when scope is agent');
    // At the limits, accepted.
    await ks.halt({
      scope: 'agent',
      agent: `A.b:c-d_${'9'.repeat(192)}`,
      actor: 'x'.repeat(200),
      reason: 'r'.repeat(1000),
    });
    expect(db.prepare('SELECT count(*) FROM control_state').pluck().get()).toBe(1);
    expect(db.prepare("SELECT count(*) FROM audit WHERE event LIKE 'control.%'").pluck().get()).toBe(1);
  });

  it('a halt control_state cannot store still halts this process, is audited as not persisted, and says so', async () => {
    const db = open();
    refuseInserts(db, 'control_state', 'disk full');
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock: new ManualClock(START) });
    const told: string[] = [];
    ks.onHalt((s) => told.push(s.reason));
    const err = await ks.halt({ scope: 'org', reason: 'breach', actor: 'cli:a' }).catch((e: unknown) => e);
    expect(isWardenError(err, 'CONTROL_WRITE_FAILED')).toBe(true);
    expect((err as Error).message).toBe('halt is in force in this process only: control_state could not be written');
    expect(((err as Error).cause as Error).message).toMatch(/^(PostgreSQL: )?disk full$/);
    expect(ks.check('anyone')).toMatchObject({ scope: 'org', reason: 'breach' });
    expect(told).toEqual(['breach']);
    expect(auditRows(db, 'control.halt')[0]!.detail).toEqual({ scope: 'org', actor: 'cli:a', persisted: false });
  });

  it('a listener that throws is logged and does not stop the others; unsubscribed listeners hear nothing', async () => {
    const db = open();
    const log = logCapture();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), logger: log.logger });
    const heard: string[] = [];
    ks.onHalt(() => {
      throw new Error('halt boom');
    });
    ks.onResume(() => {
      throw new Error('resume boom');
    });
    ks.onHalt((s) => heard.push(`halt:${s.scope}`));
    ks.onResume((r) => heard.push(`resume:${r.scope}`));
    const offHalt = ks.onHalt((s) => heard.push(`gone-halt:${s.scope}`));
    const offResume = ks.onResume((r) => heard.push(`gone-resume:${r.scope}`));
    expect(offHalt()).toBe(true);
    expect(offResume()).toBe(true);
    await ks.halt({ scope: 'org', reason: 'r', actor: 'cli:a' });
    await ks.resume({ scope: 'org', actor: 'cli:a' });
    expect(heard).toEqual(['halt:org', 'resume:org']);
    const errors = log.lines().filter((l) => l.level === 50);
    expect(errors.map((l) => [l.msg, l.err])).toEqual([
      ['halt listener threw', 'halt boom'],
      ['resume listener threw', 'resume boom'],
    ]);
  });

  it('start() announces halts made since construction, once; the constructor loads them silently', async () => {
    const dbA = open();
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA) });
    await a.halt({ scope: 'agent', agent: 'early', reason: 'before b existed', actor: 'cli:a' });
    const dbB = open();
    const clock = new ManualClock(START);
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock });
    const heard: string[] = [];
    b.onHalt((s, info) => heard.push(`${s.agent}:${info.origin}`));
    expect(b.check('early')).toMatchObject({ reason: 'before b existed' });
    await a.halt({ scope: 'agent', agent: 'between', reason: 'after b existed', actor: 'cli:a' });
    expect(heard).toEqual([]);
    b.start();
    // The halt it already had is not news; the one made since is.
    expect(heard).toEqual(['between:remote']);
    // start() twice: still one poll timer, and nothing re-announced.
    b.start();
    expect(clock.pending).toBe(1);
    await clock.tick(500);
    expect(heard).toEqual(['between:remote']);
    b.stop();
    expect(clock.pending).toBe(0);
    // Stopped: another process's halt is not seen until started again.
    await a.halt({ scope: 'agent', agent: 'later', reason: 'while stopped', actor: 'cli:a' });
    await clock.tick(500);
    expect(b.check('later')).toBeNull();
    b.start();
    expect(b.check('later')).toMatchObject({ reason: 'while stopped' });
    b.stop();
  });

  it('polls every pollMs (by default 50 ms; 1 s on PostgreSQL) and carries another process’s changed halt and its resume, with who and when', async () => {
    const dbA = open();
    const clockA = new ManualClock(START);
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA), clock: clockA });
    const dbB = pollOnly(open());
    const clock = new ManualClock(START);
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock });
    const heard: unknown[] = [];
    b.onHalt((s, info) => heard.push({ halt: s, origin: info.origin }));
    b.onResume((r, info) => heard.push({ resume: r, origin: info.origin }));
    b.start();
    await a.halt({ scope: 'org', reason: 'one', actor: 'cli:first' });
    await clock.tick(DEFAULT_POLL - 1);
    expect(b.orgHalt()).toBeUndefined();
    await clock.tick(1);
    expect(b.orgHalt()).toEqual({ scope: 'org', reason: 'one', actor: 'cli:first', at: START });

    // The same scope halted again by someone else, later: news, with the new details.
    await clockA.tick(2000);
    await a.halt({ scope: 'org', reason: 'two', actor: 'cli:second' });
    await clock.tick(DEFAULT_POLL);
    expect(b.orgHalt()).toEqual({ scope: 'org', reason: 'two', actor: 'cli:second', at: START + 2000 });

    await clockA.tick(3000);
    await a.resume({ scope: 'org', actor: 'cli:third' });
    await clock.tick(DEFAULT_POLL);
    expect(b.orgHalt()).toBeUndefined();
    expect(heard).toEqual([
      { halt: { scope: 'org', reason: 'one', actor: 'cli:first', at: START }, origin: 'remote' },
      { halt: { scope: 'org', reason: 'two', actor: 'cli:second', at: START + 2000 }, origin: 'remote' },
      { resume: { scope: 'org', agent: undefined, actor: 'cli:third', at: START + 5000 }, origin: 'remote' },
    ]);
    b.stop();

    // A custom pollMs is honoured.
    const c = new KillSwitch({ db: pollOnly(open()), audit: new AuditLog(dbB), clock, pollMs: 300 });
    c.start();
    await a.halt({ scope: 'agent', agent: 'slow', reason: 'r', actor: 'cli:a' });
    await clock.tick(299);
    expect(c.check('slow')).toBeNull();
    await clock.tick(1);
    expect(c.check('slow')).toMatchObject({ scope: 'agent', agent: 'slow' });
    c.stop();
  });

  it('a row removed from control_state reads as a resume by nobody, at the time it was noticed', async () => {
    const dbA = open();
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA) });
    await a.halt({ scope: 'agent', agent: 'gone', reason: 'r', actor: 'cli:a' });
    const dbB = pollOnly(open());
    const clock = new ManualClock(START);
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock });
    const heard: unknown[] = [];
    b.onResume((r, info) => heard.push({ ...r, origin: info.origin }));
    b.start();
    dbA.prepare('DELETE FROM control_state').run();
    await clock.tick(DEFAULT_POLL);
    expect(b.check('gone')).toBeNull();
    expect(heard).toEqual([{ scope: 'agent', agent: 'gone', actor: '', at: START + DEFAULT_POLL, origin: 'remote' }]);
    b.stop();
  });

  it('status lists the org first even when it was halted before the agents', async () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock: new ManualClock(START) });
    await ks.halt({ scope: 'org', reason: 'o', actor: 'cli:a' });
    await ks.halt({ scope: 'agent', agent: 'zeta', reason: 'z', actor: 'cli:a' });
    await ks.halt({ scope: 'agent', agent: 'alpha', reason: 'a', actor: 'cli:a' });
    expect(ks.status().map((s) => s.agent ?? s.scope)).toEqual(['org', 'alpha', 'zeta']);
  });

  it('a non-object request is refused as a whole', async () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db) });
    const err = await ks.halt(null as unknown as HaltRequest).catch((e: unknown) => e);
    expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
    expect((err as Error).message).toMatch(/^invalid halt\/resume request: request: /);
  });

  it('a halt row written without reason or actor (another writer) reads as empty strings, and start() does not re-announce it', async () => {
    const db = open();
    db.prepare("INSERT INTO control_state (scope, halted, reason, actor, at) VALUES ('org', 1, NULL, NULL, ?)").run(
      START,
    );
    db.prepare(
      "INSERT INTO control_state (scope, halted, reason, actor, at) VALUES ('agent:a1', 1, NULL, NULL, ?)",
    ).run(START);
    const clock = new ManualClock(START);
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock });
    const heard: string[] = [];
    ks.onHalt((s) => heard.push(s.scope));
    expect(ks.orgHalt()).toEqual({ scope: 'org', reason: '', actor: '', at: START });
    expect(ks.status()[1]).toEqual({ scope: 'agent', agent: 'a1', reason: '', actor: '', at: START });
    ks.start();
    expect(heard).toEqual([]);
    ks.stop();
  });

  it('a halt only this process holds (control_state refused it) is not undone by the next poll', async () => {
    const db = open();
    refuseInserts(db, 'control_state', 'disk full');
    const clock = new ManualClock(START);
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock });
    ks.start();
    await ks.halt({ scope: 'org', reason: 'breach', actor: 'cli:a' }).catch(() => undefined);
    await clock.tick(2 * DEFAULT_POLL);
    expect(ks.orgHalt()).toMatchObject({ reason: 'breach' });
    ks.stop();
  });

  it('a halt only this process holds outlasts other processes’ writes, and ends at a newer resume of its scope', async () => {
    const db = open();
    refuseInserts(db, 'control_state', 'disk full');
    const clock = new ManualClock(START);
    const ks = new KillSwitch({ db: pollOnly(db), audit: new AuditLog(db), clock });
    const resumed: string[] = [];
    ks.onResume((r) => resumed.push(`${r.scope}:${r.actor}`));
    ks.start();
    await ks.halt({ scope: 'org', reason: 'breach', actor: 'cli:a' }).catch(() => undefined);
    allowInserts(db, 'control_state');
    // Another process writes control_state (on SQLite this changes data_version: a full reload).
    const other = open();
    const otherClock = new ManualClock(START - 1000);
    const b = new KillSwitch({ db: other, audit: new AuditLog(other), clock: otherClock });
    await b.halt({ scope: 'agent', agent: 'a1', reason: 'r', actor: 'cli:b' });
    // An org resume stamped before our halt (a slow clock, or an old decision) does not undo it either.
    await b.resume({ scope: 'org', actor: 'cli:old' });
    await clock.tick(2 * DEFAULT_POLL);
    expect(ks.orgHalt()).toMatchObject({ reason: 'breach', actor: 'cli:a' });
    expect(ks.check('a1')).toMatchObject({ scope: 'org' });
    expect(resumed).toEqual([]);
    // A resume of the org made after it ends it, as any remote resume would.
    await otherClock.tick(5000);
    await b.resume({ scope: 'org', actor: 'cli:later' });
    await clock.tick(DEFAULT_POLL);
    expect(ks.orgHalt()).toBeUndefined();
    expect(resumed).toEqual(['org:cli:later']);
    expect(ks.check('a1')).toMatchObject({ scope: 'agent', agent: 'a1' });
    ks.stop();
  });

  it('a halt only this process holds keeps its details over an older halt row and a resume of the same millisecond; halted again and stored, it is shared', async () => {
    const other = open();
    const otherClock = new ManualClock(START - 1000);
    const b = new KillSwitch({ db: other, audit: new AuditLog(other), clock: otherClock });
    await b.halt({ scope: 'org', reason: 'old', actor: 'cli:b' });
    const db = open();
    refuseInserts(db, 'control_state', 'disk full');
    const clock = new ManualClock(START);
    const ks = new KillSwitch({ db: pollOnly(db), audit: new AuditLog(db), clock });
    const heard: string[] = [];
    ks.onHalt((s, info) => heard.push(`${s.reason}:${info.origin}`));
    ks.onResume((r) => heard.push(`resume:${r.actor}`));
    ks.start();
    await ks.halt({ scope: 'org', reason: 'breach', actor: 'cli:a' }).catch(() => undefined);
    allowInserts(db, 'control_state');
    // Another process writes (on SQLite a changed data_version: a full reload), under the older org halt row.
    await b.halt({ scope: 'agent', agent: 'a1', reason: 'r', actor: 'cli:b' });
    await clock.tick(2 * DEFAULT_POLL);
    expect(ks.orgHalt()).toMatchObject({ reason: 'breach', actor: 'cli:a', at: START });
    // A resume stamped the very millisecond of our halt is not newer than it: the halt stands (fail closed).
    await otherClock.tick(1000);
    await b.resume({ scope: 'org', actor: 'cli:tie' });
    await clock.tick(2 * DEFAULT_POLL);
    expect(ks.orgHalt()).toMatchObject({ reason: 'breach' });
    // Halted again, now stored: a shared halt like any other, which a resume of that millisecond ends.
    await ks.halt({ scope: 'org', reason: 'again', actor: 'cli:a' });
    await b.resume({ scope: 'org', actor: 'cli:same-ms' });
    await clock.tick(2 * DEFAULT_POLL);
    expect(ks.orgHalt()).toBeUndefined();
    expect(heard).toEqual(['breach:local', 'r:remote', 'again:local', 'resume:cli:same-ms']);
    ks.stop();
  });

  it.skipIf(onSqlite())('on PostgreSQL another connection’s halt arrives by NOTIFY, with no poll at all', async () => {
    const dbA = open();
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA) });
    const dbB = open();
    // A manual clock that never moves: the fallback poll never runs.
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock: new ManualClock(START) });
    const heard: string[] = [];
    b.onHalt((s, info) => heard.push(`${s.agent}:${info.origin}`));
    b.start();
    await a.halt({ scope: 'agent', agent: 'notified', reason: 'r', actor: 'cli:a' });
    await vi.waitFor(() => expect(b.check('notified')).toMatchObject({ scope: 'agent', agent: 'notified' }), {
      timeout: 5_000,
    });
    expect(heard).toEqual(['notified:remote']);
    b.stop();
  });

  it('another process halting a scope again is news even from the same actor, or at the same millisecond', async () => {
    const dbA = open();
    const clockA = new ManualClock(START);
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA), clock: clockA });
    const dbB = pollOnly(open());
    const clock = new ManualClock(START);
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock });
    const heard: string[] = [];
    b.onHalt((s) => heard.push(`${s.actor}:${s.reason}`));
    b.start();
    await a.halt({ scope: 'org', reason: 'one', actor: 'cli:same' });
    await clock.tick(DEFAULT_POLL);
    // Same actor, later.
    await clockA.tick(1000);
    await a.halt({ scope: 'org', reason: 'two', actor: 'cli:same' });
    await clock.tick(DEFAULT_POLL);
    // Same millisecond, another actor.
    await a.halt({ scope: 'org', reason: 'three', actor: 'cli:other' });
    await clock.tick(DEFAULT_POLL);
    expect(heard).toEqual(['cli:same:one', 'cli:same:two', 'cli:other:three']);
    expect(b.orgHalt()).toMatchObject({ reason: 'three', actor: 'cli:other', at: START + 1000 });
    b.stop();
  });

  it('a remote resume of one agent names that agent’s resumer, not another row’s', async () => {
    const dbA = open();
    const clockA = new ManualClock(START);
    const a = new KillSwitch({ db: dbA, audit: new AuditLog(dbA), clock: clockA });
    await a.halt({ scope: 'org', reason: 'o', actor: 'cli:org-halter' });
    await a.halt({ scope: 'agent', agent: 'a1', reason: 'r', actor: 'cli:agent-halter' });
    const dbB = pollOnly(open());
    const clock = new ManualClock(START);
    const b = new KillSwitch({ db: dbB, audit: new AuditLog(dbB), clock });
    const heard: unknown[] = [];
    b.onResume((r) => heard.push(r));
    b.start();
    await clockA.tick(7000);
    await a.resume({ scope: 'agent', agent: 'a1', actor: 'cli:resumer' });
    await clock.tick(DEFAULT_POLL);
    expect(heard).toEqual([{ scope: 'agent', agent: 'a1', actor: 'cli:resumer', at: START + 7000 }]);
    expect(b.orgHalt()).toMatchObject({ actor: 'cli:org-halter' });
    b.stop();
  });

  it('stop() before start() is harmless', () => {
    const db = open();
    const ks = new KillSwitch({ db, audit: new AuditLog(db), clock: new ManualClock(START) });
    expect(() => ks.stop()).not.toThrow();
  });

  it('a failing poll is logged once per hundred failures in a row and polling goes on; a success starts the count again', async () => {
    const real = open();
    let failing = false;
    // The real connection, whose first read of a poll (SQLite's data_version; on PostgreSQL the
    // control_state query) fails while `failing` is set (a transient I/O error).
    const firstRead = onSqlite() ? 'pragma' : 'prepare';
    const db = new Proxy(pollOnly(real), {
      get(target, prop, receiver) {
        if (prop === firstRead) {
          return (...args: unknown[]) => {
            if (failing) throw new Error('disk I/O error');
            return (target[firstRead] as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const clock = new ManualClock(START);
    const log = logCapture();
    const ks = new KillSwitch({ db, audit: new AuditLog(real), clock, logger: log.logger, pollMs: 10 });
    ks.start();
    const failures = () => log.lines().filter((l) => l.msg === 'kill switch poll failed');
    failing = true;
    await clock.tick(10);
    expect(failures()).toEqual([expect.objectContaining({ level: 50, err: 'disk I/O error' })]);
    await clock.tick(990); // polls 2..100
    expect(failures()).toHaveLength(1);
    await clock.tick(10); // the 101st
    expect(failures()).toHaveLength(2);
    failing = false;
    await clock.tick(10);
    // It still works: another connection's halt arrives.
    const other = open();
    await new KillSwitch({ db: other, audit: new AuditLog(other) }).halt({ scope: 'org', reason: 'r', actor: 'cli:a' });
    await clock.tick(10);
    expect(ks.orgHalt()).toMatchObject({ reason: 'r' });
    failing = true;
    await clock.tick(10);
    // The count started again after the success: the first failure of the new run is logged.
    expect(failures()).toHaveLength(3);
    ks.stop();
  });
});
