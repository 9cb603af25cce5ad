import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { drillTokensFromDb } from '../src/cli/commands/agents-control.ts';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { DrillRunner, drillOverdue, listDrills, type DrillResult } from '../src/control/drill.ts';
import { wireHaltEffects } from '../src/control/halt-effects.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { ControlScheduler } from '../src/control/scheduler.ts';
import { AuditLog } from '../src/audit/log.ts';
import { mcpCanaryConnector } from '../src/gateway/canary-client.ts';
import { openDb } from '../src/store/db.ts';
import { connectAgent, startWardenEnv, upstreamCounters, type WardenEnv } from './support/control-env.ts';
import { onSqlite, storeLocation } from './support/store-under-test.ts';
import { AuditReader } from '../src/audit/reader.ts';

let env: WardenEnv;

beforeAll(async () => {
  env = await startWardenEnv({ store: onSqlite() ? undefined : await storeLocation('') });
});
afterAll(async () => {
  await env?.close();
});
afterEach(() => {
  vi.useRealTimers();
});

/**
 * These tests check what a drill does (halt, refusal, cancel, resume, record),
 * not how fast: latency on a shared machine is noise, so the time-to-halt
 * bound is lifted here and measured by bench/halt.ts instead.
 */
function runner(
  opts: {
    alerts?: MemoryAlertSink;
    reports?: DrillResult[];
    ks?: KillSwitch;
    stepTimeoutMs?: number;
    maxTimeToHaltMs?: number;
  } = {},
) {
  return new DrillRunner({
    db: env.db,
    audit: env.audit,
    auditReader: new AuditReader(env.db),
    killSwitch: opts.ks ?? env.ks,
    policy: env.policy,
    gatewayUrl: env.gateway.url,
    tokens: drillTokensFromDb(env.db),
    connector: mcpCanaryConnector,
    alerts: opts.alerts ?? new MemoryAlertSink(),
    report: async (r) => {
      opts.reports?.push(r);
    },
    stepTimeoutMs: opts.stepTimeoutMs,
    maxTimeToHaltMs: opts.maxTimeToHaltMs ?? Infinity,
  });
}

describe('kill-switch drill through the real gateway', () => {
  it('canary drill: halts, refuses, cancels the in-flight call, resumes, records and reports', async () => {
    const observer = await connectAgent(env.db, env.gateway.url, 'worker');
    const before = await upstreamCounters(observer);
    const reports: DrillResult[] = [];
    const alerts = new MemoryAlertSink();
    const off = wireHaltEffects({ killSwitch: env.ks, approvals: env.approvals, alerts });
    const result = await runner({ reports, alerts }).run('canary', 'slack:U0LEAD');
    off();

    expect(result.problems).toEqual([]);
    expect(result).toMatchObject({
      ok: true,
      mode: 'canary',
      agent: 'warden-canary',
      inflightCancelled: true,
      restored: true,
    });
    // A refusal was observed (and timed); how long it took is bench/halt.ts's business.
    expect(result.timeToHaltMs).toBeDefined();
    expect(result.timeToHaltMs).toBeGreaterThanOrEqual(0);
    expect(result.detail.refusal).toMatch(/halted by drill:/);
    expect(reports).toEqual([result]);
    // The cancel reached the upstream: the fixture counted a cancelled sleep.
    const after = await upstreamCounters(observer);
    expect(after.cancelled).toBe(before.cancelled + 1);
    // The canary is running again and its drill token is gone.
    expect(env.ks.check('warden-canary')).toBeNull();
    const live = env.db
      .prepare("SELECT count(*) AS n FROM agent_tokens WHERE agent = 'warden-canary' AND revoked_at IS NULL")
      .get() as { n: number };
    expect(live.n).toBe(0);
    // Only the canary was halted: the worker kept working through the drill.
    expect((await observer.call('slow__sleep', { ms: 0 })).isError).toBe(false);

    const [drill] = listDrills(env.db, 1);
    expect(drill).toMatchObject({ id: result.id, ok: true, inflightCancelled: true });
    await env.audit.flush();
    const rows = env.db
      .prepare(
        "SELECT seq, event, agent, decision, detail FROM audit WHERE agent = 'warden-canary' AND event IN ('control.halt', 'control.resume', 'drill.completed') ORDER BY seq",
      )
      .all() as { seq: number; event: string; decision: string; detail: string }[];
    expect(rows.map((r) => r.event)).toEqual(['control.halt', 'control.resume', 'drill.completed']);
    expect(rows[2]!.decision).toBe('ok');
    // Zero calls forwarded while halted: no allow for the canary between the halt row and the resume row.
    const allowedWhileHalted = env.db
      .prepare(
        "SELECT count(*) AS n FROM audit WHERE agent = 'warden-canary' AND event = 'call.decided' AND decision = 'allow' AND seq > ? AND seq < ?",
      )
      .get(rows[0]!.seq, rows[1]!.seq) as { n: number };
    expect(allowedWhileHalted.n).toBe(0);
    const refused = env.db
      .prepare(
        "SELECT count(*) AS n FROM audit WHERE agent = 'warden-canary' AND event = 'call.decided' AND decision = 'halted' AND seq > ? AND seq < ?",
      )
      .get(rows[0]!.seq, rows[1]!.seq) as { n: number };
    expect(refused.n).toBeGreaterThanOrEqual(1);
    // The drill's own halt is announced as a drill, not as a page.
    expect(alerts.alerts.find((a) => a.kind === 'halted')).toMatchObject({
      severity: 'info',
      text: expect.stringMatching(/^Drill: agent warden-canary halted/),
    });
    expect(alerts.alerts.some((a) => a.kind === 'drill_failed')).toBe(false);
    await observer.close();
  });

  it('org drill halts every agent during the drill and restores them', async () => {
    const result = await runner().run('org', 'cli:ops');
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.timeToHaltMs).toBeDefined();
    expect(result.detail.refusal).toMatch(/all agents \(org-wide\) halted by drill:/);
    expect(env.ks.status()).toEqual([]);
    await env.audit.flush();
    const halt = env.db
      .prepare("SELECT detail FROM audit WHERE event = 'control.halt' ORDER BY seq DESC LIMIT 1")
      .get() as { detail: string };
    expect(JSON.parse(halt.detail)).toMatchObject({ scope: 'org' });
  });

  it('fails loudly when the gateway never learns of the halt', async () => {
    // A kill switch on its own connection that the gateway does not read: as if
    // the gateway process had stopped polling. The drill must notice, not pass.
    const db2 = openDb(env.dbPath);
    const lonely = new KillSwitch({ db: db2, audit: new AuditLog(db2) });
    env.ks.stop();
    try {
      const alerts = new MemoryAlertSink();
      // Short steps keep the test quick; 2 s is still ample for the probes before the halt on a loaded machine.
      const result = await runner({ ks: lonely, alerts, stepTimeoutMs: 2000 }).run('canary');
      expect(result.ok).toBe(false);
      expect(result.timeToHaltMs).toBeUndefined();
      expect(result.problems.join('\n')).toMatch(/not refused within 2000 ms/);
      expect(result.problems.join('\n')).toMatch(/in-flight call was still running/);
      expect(alerts.alerts).toEqual([expect.objectContaining({ kind: 'drill_failed', severity: 'critical' })]);
      expect(listDrills(env.db, 1)[0]).toMatchObject({ ok: false });
    } finally {
      // The persisted halt was resumed by the drill; let the gateway's switch catch up before others run.
      env.ks.start();
      db2.close();
    }
    expect(env.ks.check('warden-canary')).toBeNull();
  });

  it('does not count a probe that was forwarded after the halt and then stopped as a refusal', async () => {
    // The halt is made on a connection the gateway does not read (a gateway that
    // has not polled yet), so the first probes after it are forwarded. Once a
    // probe is running upstream, the gateway learns of the halt, which stops it
    // mid-call; only the probes after that are refused up front.
    const db2 = openDb(env.dbPath);
    const lonely = new KillSwitch({ db: db2, audit: new AuditLog(db2) });
    env.ks.stop();
    const since = (env.db.prepare('SELECT coalesce(max(seq), 0) AS s FROM audit').get() as { s: number }).s;
    const tools = {
      slow: { name: 'slow__sleep', args: { ms: 60_000, steps: 60 } },
      probe: { name: 'slow__sleep', args: { ms: 3_000, steps: 30 } },
    };
    const drill = new DrillRunner({
      db: env.db,
      audit: env.audit,
      auditReader: new AuditReader(env.db),
      killSwitch: lonely,
      policy: env.policy,
      gatewayUrl: env.gateway.url,
      tokens: drillTokensFromDb(env.db),
      connector: mcpCanaryConnector,
      alerts: new MemoryAlertSink(),
      tools,
      maxTimeToHaltMs: Infinity,
      stepTimeoutMs: 15_000,
    });
    try {
      const running = drill.run('canary');
      // A probe the gateway let through after the halt row…
      await vi.waitFor(
        () => {
          const halt = env.db
            .prepare("SELECT seq FROM audit WHERE seq > ? AND event = 'control.halt' AND agent = 'warden-canary'")
            .get(since) as { seq: number } | undefined;
          expect(halt).toBeDefined();
          const forwarded = env.db
            .prepare(
              "SELECT count(*) AS n FROM audit WHERE seq > ? AND event = 'call.decided' AND decision = 'allow' AND agent = 'warden-canary'",
            )
            .get(halt!.seq) as { n: number };
          expect(forwarded.n).toBeGreaterThanOrEqual(1);
        },
        { timeout: 15_000, interval: 10 },
      );
      // …is running when the gateway learns of the halt.
      env.ks.start();
      const result = await running;

      expect(result.problems).toEqual([]);
      expect(result).toMatchObject({ ok: true, inflightCancelled: true, restored: true });
      // The refusal that was counted is the gateway's refusal before forwarding.
      expect(result.detail.refusal).toMatch(/^Refused by Warden: warden-canary is halted by the kill switch/);
      expect(result.detail.refusal).not.toMatch(/was stopped/);
      // The probe stopped mid-call is reported apart, as a cancelled in-flight call.
      expect(result.detail.probesStoppedInFlight).toBe(1);
      expect(result.detail.probeStoppedInFlight).toMatch(
        /slow__sleep was stopped: agent warden-canary halted by drill:/,
      );
      await env.audit.flush();
      const drillRow = env.db
        .prepare("SELECT detail FROM audit WHERE seq > ? AND event = 'drill.completed'")
        .get(since) as { detail: string };
      expect(JSON.parse(drillRow.detail)).toMatchObject({ id: result.id, probesStoppedInFlight: 1 });
    } finally {
      env.ks.start();
      db2.close();
    }
    expect(env.ks.check('warden-canary')).toBeNull();
  });

  it('fails a drill whose first refusal came later than maxTimeToHaltMs, and says by how much', async () => {
    // A bound no round trip can meet: the criterion, not the machine's speed, is under test.
    const alerts = new MemoryAlertSink();
    const result = await runner({ alerts, maxTimeToHaltMs: 0.001 }).run('canary');
    expect(result.ok).toBe(false);
    expect(result.timeToHaltMs).toBeDefined();
    expect(result.problems).toEqual([expect.stringMatching(/^first refusal took \d+ ms, over 0\.001 ms$/)]);
    // Everything else about the drill held.
    expect(result).toMatchObject({ inflightCancelled: true, restored: true });
    expect(alerts.alerts).toEqual([expect.objectContaining({ kind: 'drill_failed', severity: 'critical' })]);
    expect(env.ks.check('warden-canary')).toBeNull();
  });

  it('refuses to start a second drill while one runs', async () => {
    const r = runner();
    const first = r.run('canary');
    await expect(r.run('canary')).rejects.toThrow(/already running/);
    expect((await first).problems).toEqual([]);
  });
});

describe('drill schedule (node-cron, fake timers)', () => {
  it('runs the monthly drill at its cron time and alerts when the last good drill is overdue', async () => {
    // Fake Date and timers, but let them advance with real time so the real gateway and child process keep working.
    vi.useFakeTimers({
      shouldAdvanceTime: true,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });
    // The first of next month (after every drill the tests above ran on real time), 10 s before 09:00:
    // fake time also advances with real time, so the margin must outlast a slow, busy machine.
    const real = new Date();
    const firstOfMonth = Date.UTC(real.getUTCFullYear(), real.getUTCMonth() + 1, 1);
    vi.setSystemTime(firstOfMonth + 9 * 3_600_000 - 10_000);
    const alerts = new MemoryAlertSink();
    const reports: DrillResult[] = [];
    const scheduler = new ControlScheduler({
      db: env.db,
      policy: env.policy,
      alerts,
      drill: runner({ reports, alerts }),
      timezone: 'Etc/UTC',
      overdueCheckSchedule: '0 * * * *',
    });
    scheduler.start();
    try {
      expect(scheduler.jobs).toEqual(['drill', 'drill-overdue']);
      const drillsBefore = listDrills(env.db, 100).length;
      await vi.advanceTimersByTimeAsync(5000);
      expect(reports).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(6000);
      await vi.waitFor(() => expect(reports).toHaveLength(1), { timeout: 15_000 });
      expect(reports[0]).toMatchObject({ ok: true, detail: expect.objectContaining({ actor: 'warden:scheduler' }) });
      expect(listDrills(env.db, 100)).toHaveLength(drillsBefore + 1);
      expect(reports[0]!.startedAt - firstOfMonth - 9 * 3_600_000).toBeGreaterThanOrEqual(0);
      expect(reports[0]!.startedAt - firstOfMonth - 9 * 3_600_000).toBeLessThan(10_000);

      // 36 days on, just before the hourly overdue check.
      expect(drillOverdue(env.db, 35, Date.now()).overdue).toBe(false);
      // (Re-armed, as a Warden started that day would be: node-cron counts a jumped-over slot as missed.)
      vi.setSystemTime(firstOfMonth + 36 * 86_400_000 + 11 * 3_600_000 - 1000);
      await scheduler.restart();
      await vi.advanceTimersByTimeAsync(1500);
      await vi.waitFor(() => expect(alerts.alerts.some((a) => a.kind === 'drill_overdue')).toBe(true));
      const overdue = alerts.alerts.find((a) => a.kind === 'drill_overdue')!;
      expect(overdue.severity).toBe('critical');
      expect(overdue.text).toMatch(/36 days ago \(limit 35\)/);
    } finally {
      await scheduler.stop();
    }
  });
});

describe('drill against the built-in canary upstream (`warden canary-server`)', () => {
  it('passes with the canary agent granted only the canary server', async () => {
    const cli = fileURLToPath(new URL('../src/cli/index.ts', import.meta.url));
    const own = await startWardenEnv({
      policyText: `
servers:
  canary:
    command: node
    args: ["--import", "tsx", ${JSON.stringify(cli)}, "canary-server"]
    tools:
      sleep: { scope: read }
agents:
  - agent: warden-canary
    mcp_scopes: { canary: [read] }
control:
  drill:
    schedule: "0 9 1 * *"
    canary_agent: warden-canary
`,
      store: onSqlite() ? undefined : await storeLocation(''),
    });
    try {
      const result = await new DrillRunner({
        db: own.db,
        audit: own.audit,
        auditReader: new AuditReader(own.db),
        killSwitch: own.ks,
        policy: own.policy,
        gatewayUrl: own.gateway.url,
        tokens: drillTokensFromDb(own.db),
        connector: mcpCanaryConnector,
        alerts: new MemoryAlertSink(),
        maxTimeToHaltMs: Infinity,
      }).run('canary');
      expect(result.problems).toEqual([]);
      expect(result.timeToHaltMs).toBeDefined();
      expect(result).toMatchObject({
        ok: true,
        inflightCancelled: true,
        restored: true,
        detail: expect.objectContaining({ tools: { slow: 'canary__sleep', probe: 'canary__sleep' } }),
      });
    } finally {
      await own.close();
    }
  });
});
