import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError, describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { Db } from '../store/db.ts';
import type { AuditReader } from '../audit/reader.ts';
import type { AuditSink } from '../audit/types.ts';
import type { AlertSink } from './types.ts';
import type { KillSwitch } from './kill-switch.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';

export type DrillMode = 'canary' | 'org';

export type CanaryCallResult = { kind: 'ok'; text: string } | { kind: 'error'; text: string; protocol?: boolean };

export interface CanaryConnection {
  listTools(): Promise<string[]>;
  callTool(
    name: string,
    args: Record<string, unknown>,
    opts?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<CanaryCallResult>;
  close(): Promise<void>;
}

export interface CanaryConnector {
  connect(url: string, token: string): Promise<CanaryConnection>;
}

/** A drill gets its own canary token and gives it back, so no standing credential exists for it. */
export interface DrillTokens {
  create(agent: string): string;
  revoke(token: string): void;
}

/**
 * A governed agent process (`warden run`, src/sandbox/) that a drill starts
 * before the halt and expects the halt to stop: the kill switch promises to
 * stop processes, not only calls.
 */
export interface CanaryRun {
  /** Resolves once the process is running; rejects if it could not start. */
  started: Promise<void>;
  /** How the run ended (`halted` when the kill switch stopped it). */
  ended: Promise<{ cause: string; exitCode: number }>;
  /** Stops it when the drill ends without the halt having done so. */
  stop(): void;
}

export type CanaryRunStarter = (agent: string) => CanaryRun;

export interface DrillToolPlan {
  slow: { name: string; args: Record<string, unknown> };
  probe: { name: string; args: Record<string, unknown> };
}

export interface DrillResult {
  id: string;
  mode: DrillMode;
  agent: string;
  ok: boolean;
  startedAt: number;
  finishedAt: number;
  /**
   * From the halt to the first call the gateway refused before forwarding it
   * (a call forwarded after the halt and then stopped does not count: the
   * halt reached the gateway too late for it).
   */
  timeToHaltMs?: number | undefined;
  /** The slow call that was in flight at the halt was cut short. */
  inflightCancelled: boolean;
  /** Calls go through again after resume. */
  restored: boolean;
  /** Why it failed, one line each. */
  problems: string[];
  detail: Record<string, unknown>;
}

export interface DrillOptions {
  /** For the drills table, which this module owns. */
  db: Db;
  audit: AuditSink;
  /** Where the drill reads the gateway's decisions: the audit table is audit/'s. */
  auditReader: Pick<AuditReader, 'headSeq' | 'firstDecidedAfter'>;
  killSwitch: KillSwitch;
  policy: PolicySource;
  /** The gateway's MCP endpoint, e.g. http://127.0.0.1:8787/mcp. */
  gatewayUrl: string | (() => string);
  tokens: DrillTokens;
  connector: CanaryConnector;
  alerts: AlertSink;
  /** Posts the report (Slack: on-call channel). Failures are logged, not thrown. */
  report?: ((result: DrillResult) => Promise<void>) | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** Which canary tools to use; discovered from the canary's tool list when absent. */
  tools?: DrillToolPlan | undefined;
  /** Halt must be observed within this, or the drill fails. Default DEFAULT_MAX_TIME_TO_HALT_MS (250 ms). */
  maxTimeToHaltMs?: number | undefined;
  /** How long to wait for the refused probe, the cancelled in-flight call, and the post-resume probe. Default 5 s each. */
  stepTimeoutMs?: number | undefined;
  /** Also start a canary process before the halt and check the halt stops it (`warden agents drill --with-run`). */
  canaryRun?: CanaryRunStarter | undefined;
}

/** The kill switch's promise to other processes: their calls are refused within this of a halt. */
export const DEFAULT_MAX_TIME_TO_HALT_MS = 250;

/** Known slow read tools, with arguments for a long call and a quick one. */
const KNOWN_SLOW_TOOLS: { suffix: string; slow: Record<string, unknown>; quick: Record<string, unknown> }[] = [
  { suffix: '__sleep', slow: { ms: 60_000, steps: 60 }, quick: { ms: 0 } },
  { suffix: '__trigger-long-running-operation', slow: { duration: 60, steps: 60 }, quick: { duration: 0, steps: 1 } },
];

export function planDrillTools(toolNames: string[]): DrillToolPlan | undefined {
  for (const known of KNOWN_SLOW_TOOLS) {
    const name = toolNames.find((t) => t.endsWith(known.suffix));
    if (name) return { slow: { name, args: known.slow }, probe: { name, args: known.quick } };
  }
  return undefined;
}

/** The audit may record the upstream's bare tool name or the namespaced one. */
const bareTool = (name: string) => (name.includes('__') ? name.slice(name.indexOf('__') + 2) : name);

/**
 * A call the halt stopped after it had been forwarded (the pipeline's
 * "<tool> was stopped: … halted by …"), as opposed to one refused up front.
 */
const isStoppedInFlight = (r: CanaryCallResult) => r.kind === 'error' && /\bwas stopped: .*\bhalted by\b/i.test(r.text);

/**
 * Drills the kill switch end to end: a canary agent with a fresh token calls
 * through the real gateway, one call is left in flight, the same halt used in
 * an incident is engaged, and we measure what an incident would need: how
 * soon calls are refused, whether the in-flight call was cut, and that resume
 * restores service. The result is stored, audited and reported; a failed
 * drill alerts loudly.
 */
export class DrillRunner {
  readonly #options: DrillOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #policy: ReturnType<typeof policyGetter>;
  #running: Promise<DrillResult> | undefined;

  constructor(opts: DrillOptions) {
    this.#options = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger ?? silentLogger();
    this.#policy = policyGetter(opts.policy);
  }

  get running(): boolean {
    return this.#running !== undefined;
  }

  /** One drill at a time: two would halt and resume under each other. */
  run(mode: DrillMode = 'canary', actor = 'warden:scheduler'): Promise<DrillResult> {
    if (this.#running) return Promise.reject(new WardenError('DRILL_IN_PROGRESS', 'a drill is already running'));
    const p = this.#run(mode, actor).finally(() => {
      this.#running = undefined;
    });
    this.#running = p;
    return p;
  }

  async #run(mode: DrillMode, actor: string): Promise<DrillResult> {
    const id = `drill_${randomUUID()}`;
    const policy = this.#policy();
    const agent = policy.control.drill.canaryAgent;
    const startedAt = this.#clock.now();
    const problems: string[] = [];
    const detail: Record<string, unknown> = { actor, agent };
    const stepMs = this.#options.stepTimeoutMs ?? 5000;
    const maxHaltMs = this.#options.maxTimeToHaltMs ?? DEFAULT_MAX_TIME_TO_HALT_MS;
    const ks = this.#options.killSwitch;
    const db = this.#options.db;
    const reader = this.#options.auditReader;
    db.prepare('INSERT INTO drills (id, mode, started_at) VALUES (?, ?, ?)').run(id, mode, startedAt);

    let timeToHaltMs: number | undefined;
    let inflightCancelled = false;
    let restored = false;
    let token: string | undefined;
    let conn: CanaryConnection | undefined;
    let planned: DrillToolPlan | undefined;
    let halted = false;
    let canaryRun: CanaryRun | undefined;
    let canaryEnded = false;
    const haltActor = `drill:${id}`;
    const scope = mode === 'org' ? ({ scope: 'org' } as const) : ({ scope: 'agent', agent } as const);
    try {
      if (!policy.agents[agent])
        throw new WardenError('NOT_FOUND', `canary agent "${agent}" is not declared in the policy`);
      const already = mode === 'org' ? ks.orgHalt() : ks.check(agent);
      if (already)
        throw new WardenError(
          'HALTED',
          `${mode === 'org' ? 'the org' : agent} is already halted (by ${already.actor}); a drill would resume it`,
        );

      token = this.#options.tokens.create(agent);
      const url =
        typeof this.#options.gatewayUrl === 'function' ? this.#options.gatewayUrl() : this.#options.gatewayUrl;
      conn = await this.#options.connector.connect(url, token);
      const plan = this.#options.tools ?? planDrillTools(await conn.listTools());
      if (!plan)
        throw new WardenError(
          'NOT_FOUND',
          `canary agent "${agent}" sees no slow read tool (a *__sleep or *__trigger-long-running-operation tool); grant it one`,
        );
      planned = plan;
      detail.tools = { slow: plan.slow.name, probe: plan.probe.name };

      const before = await conn.callTool(plan.probe.name, plan.probe.args, { timeoutMs: stepMs });
      if (before.kind !== 'ok')
        throw new WardenError(
          'UPSTREAM_UNAVAILABLE',
          `canary probe failed before the halt: ${before.text.slice(0, 300)}`,
        );

      const seqBefore = reader.headSeq();
      const slowStartedAt = this.#clock.monotonic();
      let slowEndedAt: number | undefined;
      const slow = conn.callTool(plan.slow.name, plan.slow.args, { timeoutMs: 120_000 }).then((r) => {
        slowEndedAt = this.#clock.monotonic();
        return r;
      });
      // In flight means the gateway has decided and is forwarding it: its call.decided row is durable.
      const inflight = await this.#waitFor(() => {
        const row = reader.firstDecidedAfter(seqBefore, {
          agent,
          tools: [plan.slow.name, bareTool(plan.slow.name)],
          decision: 'allow',
        });
        return row !== undefined || slowEndedAt !== undefined;
      }, stepMs);
      if (!inflight || slowEndedAt !== undefined) {
        const r = slowEndedAt !== undefined ? await slow : undefined;
        throw new WardenError(
          'UPSTREAM_UNAVAILABLE',
          `the slow canary call never got in flight${r ? `: ${r.text.slice(0, 300)}` : ''}`,
        );
      }
      // Give the gateway a moment to have the upstream request actually on the wire.
      await this.#sleep(50);

      if (this.#options.canaryRun) {
        canaryRun = this.#options.canaryRun(agent);
        const running = await this.#within(
          canaryRun.started.then(() => true),
          stepMs,
        );
        if (!running) throw new WardenError('INTERNAL', `the canary run did not start within ${stepMs} ms`);
      }

      const t0 = this.#clock.monotonic();
      // Refusals are read from the audit trail from here on.
      let refusalCursor = reader.headSeq();
      const haltState = await ks.halt({ ...scope, reason: `kill-switch drill ${id}`, actor: haltActor });
      halted = true;
      detail.haltedAt = haltState.at;

      // Probe until refused: the time to the first refusal is what an incident gets.
      // Refused means refused before forwarding: the gateway recorded the call
      // as `halted` (its call.decided is written, durably, before it answers).
      // A probe that was forwarded and then stopped by the halt is a cancelled
      // in-flight call, counted apart; it says the halt came too late for it.
      const deadline = t0 + stepMs;
      let probes = 0;
      let probesStoppedInFlight = 0;
      while (this.#clock.monotonic() < deadline) {
        probes++;
        const r = await conn.callTool(plan.probe.name, plan.probe.args, { timeoutMs: stepMs });
        if (r.kind === 'error') {
          const at = this.#clock.monotonic();
          const refusedSeq = reader.firstDecidedAfter(refusalCursor, {
            agent,
            tools: [plan.probe.name, bareTool(plan.probe.name)],
            decision: 'halted',
          });
          if (refusedSeq !== undefined) {
            refusalCursor = refusedSeq;
            timeToHaltMs = at - t0;
            detail.refusal = r.text.slice(0, 300);
            break;
          }
          if (isStoppedInFlight(r)) {
            probesStoppedInFlight++;
            detail.probeStoppedInFlight ??= r.text.slice(0, 300);
          }
        }
        await this.#sleep(10);
      }
      detail.probes = probes;
      detail.probesStoppedInFlight = probesStoppedInFlight;
      if (timeToHaltMs === undefined) problems.push(`calls were not refused within ${stepMs} ms of the halt`);
      else if (timeToHaltMs > maxHaltMs)
        problems.push(`first refusal took ${Math.round(timeToHaltMs)} ms, over ${maxHaltMs} ms`);

      let timer: NodeJS.Timeout | undefined;
      const ended = await Promise.race([
        slow,
        new Promise<undefined>((resolve) => (timer = this.#clock.setTimeout(() => resolve(undefined), stepMs))),
      ]);
      // A pending timer would keep a finished `warden agents drill` process alive.
      if (timer) this.#clock.clearTimeout(timer);
      if (ended === undefined) problems.push(`the in-flight call was still running ${stepMs} ms after the halt`);
      else if (ended.kind === 'ok') problems.push('the in-flight call completed normally instead of being cancelled');
      else {
        inflightCancelled = true;
        detail.inflightEndedMs = Math.round((slowEndedAt ?? this.#clock.monotonic()) - t0);
        detail.inflightResult = ended.text.slice(0, 300);
      }
      detail.slowRanMs = Math.round((slowEndedAt ?? this.#clock.monotonic()) - slowStartedAt);

      if (canaryRun) {
        // The grace is part of the promise: SIGTERM, then SIGKILL once it has passed.
        const graceMs = policy.agents[agent]!.sandbox.stopGraceMs;
        const end = await this.#within(canaryRun.ended, graceMs + stepMs);
        if (end === undefined) problems.push(`the canary run was still running ${graceMs + stepMs} ms after the halt`);
        else {
          canaryEnded = true;
          detail.canaryRun = {
            cause: end.cause,
            exitCode: end.exitCode,
            stoppedMs: Math.round(this.#clock.monotonic() - t0),
          };
          if (end.cause !== 'halted') problems.push(`the canary run ended as ${end.cause}, not stopped by the halt`);
        }
      }
    } catch (err) {
      problems.push(describeError(err));
    } finally {
      if (canaryRun && !canaryEnded) {
        canaryRun.stop();
        await canaryRun.ended.catch(() => undefined);
      }
      if (halted) {
        try {
          await ks.resume({ ...scope, actor: haltActor, reason: `drill ${id} finished` });
        } catch (err) {
          problems.push(`resume after the drill failed: ${describeError(err)}`);
        }
      }
    }

    const c = conn;
    // Halting happens only after the plan was made, so a halted drill has one.
    if (halted && c && planned) {
      // Service must come back: in-process at once, elsewhere within the propagation window.
      const deadline = this.#clock.monotonic() + stepMs;
      while (this.#clock.monotonic() < deadline) {
        const r = await c.callTool(planned.probe.name, planned.probe.args, { timeoutMs: 5000 });
        if (r.kind === 'ok') {
          restored = true;
          break;
        }
        await this.#sleep(25);
      }
      if (!restored) problems.push('calls were still refused after resume');
    }
    await conn?.close().catch(() => {});
    if (token) {
      try {
        this.#options.tokens.revoke(token);
      } catch (err) {
        problems.push(`revoking the drill token failed: ${describeError(err)}`);
      }
    }

    const finishedAt = this.#clock.now();
    const ok = problems.length === 0;
    const result: DrillResult = {
      id,
      mode,
      agent,
      ok,
      startedAt,
      finishedAt,
      timeToHaltMs,
      inflightCancelled,
      restored,
      problems,
      detail,
    };
    db.prepare(
      'UPDATE drills SET finished_at = ?, ok = ?, time_to_halt_ms = ?, inflight_cancelled = ?, detail = ? WHERE id = ?',
    ).run(
      finishedAt,
      ok ? 1 : 0,
      timeToHaltMs ?? null,
      inflightCancelled ? 1 : 0,
      JSON.stringify({ ...detail, restored, problems }),
      id,
    );
    await this.#options.audit
      .append({
        event: 'drill.completed',
        agent,
        decision: ok ? 'ok' : 'failed',
        reason: ok ? undefined : problems.join('; ').slice(0, 2000),
        durationMs: finishedAt - startedAt,
        detail: {
          id,
          mode,
          timeToHaltMs,
          inflightCancelled,
          probesStoppedInFlight: detail.probesStoppedInFlight,
          restored,
          actor,
        },
      })
      .catch((err: unknown) => this.#logger.error({ err: describeError(err) }, 'auditing drill failed'));
    this.#logger.info(
      { id, mode, ok, timeToHaltMs, inflightCancelled, probesStoppedInFlight: detail.probesStoppedInFlight, restored },
      'drill finished',
    );
    if (!ok) {
      this.#options.alerts.alert({
        kind: 'drill_failed',
        severity: 'critical',
        agent,
        text: `Kill-switch drill (${mode}) FAILED: ${problems.join('; ')}`.slice(0, 2500),
        detail: { id, mode, timeToHaltMs, inflightCancelled, restored },
      });
    }
    if (this.#options.report) {
      await this.#options
        .report(result)
        .catch((err: unknown) => this.#logger.error({ err: describeError(err) }, 'posting drill report failed'));
    }
    return result;
  }

  async #waitFor(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = this.#clock.monotonic() + timeoutMs;
    while (this.#clock.monotonic() < deadline) {
      if (cond()) return true;
      await this.#sleep(10);
    }
    return cond();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }

  /** The promise's value, or undefined if it takes longer than `ms` (a rejection counts as undefined too). */
  async #within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        promise.catch(() => undefined),
        new Promise<undefined>((resolve) => (timer = this.#clock.setTimeout(() => resolve(undefined), ms))),
      ]);
    } finally {
      // A pending timer would keep a finished `warden agents drill` process alive.
      if (timer) this.#clock.clearTimeout(timer);
    }
  }
}

export interface DrillRecord {
  id: string;
  mode: DrillMode;
  startedAt: number;
  finishedAt: number | null;
  ok: boolean | null;
  timeToHaltMs: number | null;
  inflightCancelled: boolean | null;
}

export function listDrills(db: Db, limit = 10): DrillRecord[] {
  const rows = db.prepare('SELECT * FROM drills ORDER BY started_at DESC LIMIT ?').all(limit) as {
    id: string;
    mode: string;
    started_at: number;
    finished_at: number | null;
    ok: number | null;
    time_to_halt_ms: number | null;
    inflight_cancelled: number | null;
  }[];
  return rows.map((r) => ({
    id: r.id,
    mode: r.mode as DrillMode,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    ok: r.ok === null ? null : r.ok === 1,
    timeToHaltMs: r.time_to_halt_ms,
    inflightCancelled: r.inflight_cancelled === null ? null : r.inflight_cancelled === 1,
  }));
}

export interface DrillOverdue {
  overdue: boolean;
  lastOkAt?: number | undefined;
  /** Days since the last good drill (undefined if there never was one). */
  daysSince?: number | undefined;
}

/** Overdue when the last good drill is older than overdueAfterDays, or there never was one. */
export function drillOverdue(db: Db, overdueAfterDays: number, now: number): DrillOverdue {
  const row = db.prepare('SELECT max(finished_at) AS at FROM drills WHERE ok = 1').get() as { at: number | null };
  if (row.at === null) return { overdue: true };
  const daysSince = (now - row.at) / 86_400_000;
  return { overdue: daysSince > overdueAfterDays, lastOkAt: row.at, daysSince: Math.floor(daysSince) };
}

/**
 * A `DrillOptions.report` that posts to the on-call channel. The message
 * builder is passed in (Slack's buildDrillReport) so control stays free of Slack.
 */
export function drillReportPoster(
  poster: { post(channel: string, message: { text: string; blocks?: unknown[] | undefined }): Promise<void> },
  policy: PolicySource,
  build: (r: DrillResult) => { text: string; blocks?: unknown[] | undefined },
): (r: DrillResult) => Promise<void> {
  const current = policyGetter(policy);
  return async (r) => {
    const channel = current().control.oncallChannel;
    if (channel) await poster.post(channel, build(r));
  };
}
