import type { AuditDecision } from '../src/audit/types.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/audit/log.ts';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { AnomalyDetector, type AnomalyEvent } from '../src/control/anomaly.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';
import { ManualClock } from './support/manual-clock.ts';
import { UNSTARTED_SERVERS_YAML } from './support/policies.ts';
import { AuditReader } from '../src/audit/reader.ts';

const POLICY = `
${UNSTARTED_SERVERS_YAML}
agents:
  - agent: chatty
    owner: U0OWNER
    channel: C0OWNER
    mcp_scopes: { tickets: [read] }
    limits: { calls_per_minute: 5, max_denials: 2, denial_window: 1m, max_rejections: 1, max_call_duration: 30s }
  - agent: guarded
    owner: U0OWNER
    mcp_scopes: { tickets: [read] }
    limits: { max_denials: 2, denial_window: 1m, auto_halt: true }
  - agent: unlimited
    mcp_scopes: { tickets: [read] }
control:
  oncall_channel: C0ONCALL
`;

let dir: string;
let db: Db;
let audit: AuditLog;
const T0 = Date.UTC(2026, 0, 5, 9, 0, 0);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-anomaly-'));
  db = openDb(await storeLocation(dir));
  audit = new AuditLog(db);
});
afterEach(async () => {
  await audit.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

function setup(opts: { killSwitch?: KillSwitch } = {}) {
  const policy = parsePolicy(POLICY, 'policy.yml');
  const alerts = new MemoryAlertSink();
  // Moved by hand; the detector is driven by tick() here, never started, so it schedules nothing.
  const clock = new ManualClock(T0);
  const detector = new AnomalyDetector({ policy, alerts, audit, clock, killSwitch: opts.killSwitch });
  const events: AnomalyEvent[] = [];
  detector.onAnomaly((e) => events.push(e));
  detector.watchAudit(new AuditReader(db));
  return { alerts, clock, detector, events };
}

const decided = (agent: string, decision: AuditDecision, ts: number, callId = `c-${Math.random()}`) =>
  audit.append({ event: 'call.decided', agent, server: 'tickets', tool: 'read_ticket', callId, decision, ts });

describe('AnomalyDetector fed by the audit trail', () => {
  it('alerts on a call rate over calls_per_minute, once per cooldown', async () => {
    const { alerts, detector, events } = setup();
    for (let i = 0; i < 5; i++) await decided('chatty', 'allow', T0 + i * 1000);
    detector.tick();
    expect(events).toHaveLength(0);
    await decided('chatty', 'allow', T0 + 6000);
    await decided('chatty', 'allow', T0 + 7000);
    detector.tick();
    expect(events).toEqual([
      expect.objectContaining({ agent: 'chatty', rule: 'rate', count: 6, limit: 5, autoHalted: false }),
    ]);
    expect(alerts.alerts[0]).toMatchObject({
      kind: 'anomaly',
      severity: 'warning',
      agent: 'chatty',
      text: expect.stringMatching(/6 calls in the last minute/),
    });
    const row = db.prepare("SELECT decision, agent FROM audit WHERE event = 'anomaly'").get();
    await audit.flush();
    expect(db.prepare("SELECT decision, agent FROM audit WHERE event = 'anomaly'").get() ?? row).toEqual({
      decision: 'rate',
      agent: 'chatty',
    });
  });

  it('does not count calls older than the minute', async () => {
    const { detector, events } = setup();
    for (let i = 0; i < 10; i++) await decided('chatty', 'allow', T0 + i * 15_000);
    detector.tick();
    expect(events).toHaveLength(0);
  });

  it('alerts on repeated denials within the window, not on sparse ones', async () => {
    const { detector, events } = setup();
    await decided('chatty', 'deny', T0);
    await decided('chatty', 'deny', T0 + 120_000);
    await decided('chatty', 'deny', T0 + 240_000);
    detector.tick();
    expect(events).toHaveLength(0);
    await decided('chatty', 'deny', T0 + 250_000);
    await decided('chatty', 'deny', T0 + 260_000);
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ rule: 'denials', count: 3, limit: 2 })]);
  });

  it("counts a sandbox's aggregated egress refusals toward max_denials", async () => {
    const { detector, events } = setup();
    const refused = (count: number, ts: number) =>
      audit.append({
        event: 'sandbox.egress_denied',
        agent: 'chatty',
        decision: 'deny',
        detail: { run: 'run_1', destinations: { 'example.org:443': count }, count },
        ts,
      });
    await refused(2, T0);
    detector.tick();
    expect(events).toHaveLength(0);
    await refused(1, T0 + 1_000);
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ agent: 'chatty', rule: 'denials', count: 3, limit: 2 })]);
  });

  it('alerts on repeated human rejections', async () => {
    const { detector, events, alerts } = setup();
    await audit.append({
      event: 'approval.decided',
      agent: 'chatty',
      decision: 'rejected',
      approver: 'U0OWNER',
      ts: T0,
    });
    detector.tick();
    expect(events).toHaveLength(0);
    await audit.append({
      event: 'approval.decided',
      agent: 'chatty',
      decision: 'approved',
      approver: 'U0OWNER',
      ts: T0 + 1000,
    });
    await audit.append({
      event: 'approval.decided',
      agent: 'chatty',
      decision: 'rejected',
      approver: 'U0OWNER',
      ts: T0 + 2000,
    });
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ rule: 'rejections', count: 2, limit: 1 })]);
    expect(alerts.alerts[0]!.text).toMatch(/rejected by humans/);
  });

  it('alerts on a long run while it is still running, and on a long completed call', async () => {
    const { detector, events, clock } = setup();
    await decided('chatty', 'allow', T0, 'call-long');
    detector.tick();
    await clock.advanceTo(T0 + 29_000);
    detector.tick();
    expect(events).toHaveLength(0);
    await clock.advanceTo(T0 + 31_000);
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ rule: 'long_run', callId: 'call-long' })]);
    // Its completion is not reported a second time.
    await audit.append({
      event: 'call.completed',
      agent: 'chatty',
      callId: 'call-long',
      decision: 'ok',
      durationMs: 45_000,
      ts: T0 + 45_000,
    });
    detector.tick();
    expect(events).toHaveLength(1);

    const other = setup();
    await audit.append({
      event: 'call.completed',
      agent: 'chatty',
      callId: 'call-2',
      decision: 'ok',
      durationMs: 40_000,
      ts: T0 + 50_000,
    });
    other.detector.tick();
    expect(other.events).toEqual([expect.objectContaining({ rule: 'long_run', count: 40_000, limit: 30_000 })]);
  });

  it('flags a spike over the baseline for an agent without explicit limits', async () => {
    const { detector, events } = setup();
    // Ten quiet minutes at 2 calls a minute, then a burst.
    for (let m = 0; m < 10; m++)
      for (let k = 0; k < 2; k++) await decided('unlimited', 'allow', T0 + m * 60_000 + k * 1000);
    detector.tick();
    expect(events).toHaveLength(0);
    for (let k = 0; k < 31; k++) await decided('unlimited', 'allow', T0 + 10 * 60_000 + k * 100);
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ agent: 'unlimited', rule: 'rate_baseline' })]);
  });

  it('halts the agent automatically when its limits say auto_halt', async () => {
    const ks = new KillSwitch({ db, audit });
    const { detector, events, alerts } = setup({ killSwitch: ks });
    for (let i = 0; i < 3; i++) await decided('guarded', 'deny', T0 + i * 1000);
    detector.tick();
    expect(events).toEqual([expect.objectContaining({ agent: 'guarded', rule: 'denials', autoHalted: true })]);
    expect(alerts.alerts[0]).toMatchObject({
      severity: 'critical',
      text: expect.stringMatching(/halted automatically/),
    });
    await expect.poll(() => ks.check('guarded')).toMatchObject({ scope: 'agent', actor: 'warden:anomaly' });
    expect(ks.check('chatty')).toBeNull();
    await audit.flush();
    const halt = db.prepare("SELECT agent, reason FROM audit WHERE event = 'control.halt'").get() as {
      agent: string;
      reason: string;
    };
    expect(halt.agent).toBe('guarded');
    expect(halt.reason).toMatch(/auto-halt on anomaly \(denials\)/);
  });
});

describe('AnomalyDetector fed directly (gateway hook)', () => {
  it('counts recordCall the same way', () => {
    const policy = parsePolicy(POLICY, 'policy.yml');
    const alerts = new MemoryAlertSink();
    const detector = new AnomalyDetector({ policy, alerts, clock: new ManualClock(T0) });
    for (let i = 0; i < 3; i++) detector.recordCall({ agent: 'chatty', decision: 'deny', ts: T0 + i });
    expect(alerts.alerts.map((a) => a.detail?.rule)).toEqual(['denials']);
    detector.recordCall({ agent: 'chatty', decision: 'allow', callId: 'x', durationMs: 31_000, ts: T0 + 10 });
    expect(alerts.alerts.map((a) => a.detail?.rule)).toEqual(['denials', 'long_run']);
  });
});

describe('AnomalyDetector behind the real gateway', () => {
  it('auto-halts an agent over its call rate, and flags a call still running past max_call_duration', async () => {
    const { startWardenEnv, connectAgent, controlPolicyText } = await import('./support/control-env.ts');
    const env = await startWardenEnv({
      policyText: controlPolicyText(`
  - agent: greedy
    owner: U0GREEDY
    channel: C0GREEDY
    mcp_scopes: { slow: [read] }
    limits: { calls_per_minute: 3, auto_halt: true }
  - agent: slowpoke
    owner: U0SLOW
    mcp_scopes: { slow: [read] }
    limits: { max_call_duration: 300ms }
`),
      store: onSqlite() ? undefined : await storeLocation(''),
    });
    const alerts = new MemoryAlertSink();
    const detector = new AnomalyDetector({
      policy: env.policy,
      alerts,
      killSwitch: env.ks,
      audit: env.audit,
      tickMs: 50,
    });
    detector.watchAudit(new AuditReader(env.db));
    detector.start();
    try {
      const greedy = await connectAgent(env.db, env.gateway.url, 'greedy');
      for (let i = 0; i < 3; i++) expect((await greedy.call('slow__sleep', { ms: 0 })).isError).toBe(false);
      // The 4th goes over the limit. The detector halts as soon as its call.decided
      // lands, which may be while the call itself still runs: then the halt stops it.
      // Either ending is right; which one comes first is the machine's business.
      const fourth = await greedy.call('slow__sleep', { ms: 0 });
      if (fourth.isError)
        expect(fourth.text).toMatch(
          /slow__sleep was stopped: agent greedy halted by warden:anomaly: auto-halt on anomaly \(rate\)/,
        );
      else expect(fourth.text).toMatch(/^slept 0ms/);
      await expect.poll(() => env.ks.check('greedy'), { timeout: 15_000 }).toMatchObject({ actor: 'warden:anomaly' });
      const refused = await greedy.call('slow__sleep', { ms: 0 });
      expect(refused.isError).toBe(true);
      expect(refused.text).toMatch(/agent greedy halted by warden:anomaly: auto-halt on anomaly \(rate\)/);
      expect(alerts.alerts.find((a) => a.agent === 'greedy')).toMatchObject({ kind: 'anomaly', severity: 'critical' });

      const slowpoke = await connectAgent(env.db, env.gateway.url, 'slowpoke');
      // A minute-long call, cancelled by the test once checked: "still running" never depends on how fast the alert came.
      const cancel = new AbortController();
      const running = slowpoke.client.callTool(
        { name: 'slow__sleep', arguments: { ms: 60_000, steps: 60 } },
        undefined,
        { signal: cancel.signal, timeout: 120_000 },
      );
      running.catch(() => {});
      await expect
        .poll(() => alerts.alerts.find((a) => a.agent === 'slowpoke'), { timeout: 15_000 })
        .toMatchObject({ kind: 'anomaly', detail: expect.objectContaining({ rule: 'long_run' }) });
      // Alerted while it was still running: the call has not completed yet.
      expect(
        env.db.prepare("SELECT count(*) AS n FROM audit WHERE agent = 'slowpoke' AND event = 'call.completed'").get(),
      ).toEqual({ n: 0 });
      // No auto_halt for this agent: an alert only.
      expect(env.ks.check('slowpoke')).toBeNull();
      cancel.abort();
      await greedy.close();
      await slowpoke.close();
    } finally {
      detector.stop();
      await env.close();
    }
  });
});
