import { systemClock, type Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { AuditReader } from '../audit/reader.ts';
import type { AuditSink } from '../audit/types.ts';
import type { AgentLimits } from '../policy/types.ts';
import type { AlertSink, HaltCheck } from './types.ts';
import type { HaltRequest } from './kill-switch.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';

export type AnomalyRule = 'rate' | 'rate_baseline' | 'denials' | 'rejections' | 'long_run';

export interface AnomalyEvent {
  agent: string;
  rule: AnomalyRule;
  text: string;
  count?: number | undefined;
  limit?: number | undefined;
  windowMs?: number | undefined;
  callId?: string | undefined;
  autoHalted: boolean;
}

export interface AnomalyOptions {
  policy: PolicySource;
  alerts: AlertSink;
  /** Needed only for auto-halt; `check` avoids halting an agent twice. */
  killSwitch?: (HaltCheck & { halt(req: HaltRequest): Promise<unknown> }) | undefined;
  /** Where `anomaly` rows are written; optional so a detector can run read-only. */
  audit?: AuditSink | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** The same (agent, rule) alerts at most once per cooldown. Default 5 minutes. */
  cooldownMs?: number | undefined;
  /** Baseline spike detection when an agent has no callsPerMinute: factor over the hourly mean, and a floor. */
  baselineFactor?: number | undefined;
  baselineFloor?: number | undefined;
  /** How often the live long-run check and the audit tail run. Default 1 s. */
  tickMs?: number | undefined;
}

interface AgentWindow {
  calls: number[];
  denials: number[];
  rejections: number[];
  /** Calls per completed minute over the last hour, for the baseline. */
  minuteBuckets: Map<number, number>;
  firstSeen: number;
}

const MINUTE = 60_000;

/** How many refusals an aggregated `sandbox.egress_denied` row stands for (at least one). */
function egressCount(detail: string | null): number {
  try {
    const count = (JSON.parse(detail ?? '{}') as { count?: unknown }).count;
    return typeof count === 'number' && Number.isSafeInteger(count) && count > 0 ? count : 1;
  } catch {
    return 1;
  }
}

/**
 * Watches calls for behaviour a policy did not foresee. Fed either directly
 * (`recordCall` etc., e.g. from the gateway) or by tailing the audit table
 * (`watchAudit`), which also sees calls from other gateway processes. Use one
 * feed per detector, or calls are counted twice.
 */
export class AnomalyDetector {
  readonly #policy: ReturnType<typeof policyGetter>;
  readonly #alerts: AlertSink;
  readonly #kill: AnomalyOptions['killSwitch'];
  readonly #audit: AuditSink | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #cooldownMs: number;
  readonly #baselineFactor: number;
  readonly #baselineFloor: number;
  readonly #tickMs: number;
  readonly #windows = new Map<string, AgentWindow>();
  readonly #lastFired = new Map<string, number>();
  /** Calls forwarded and not yet completed: callId → start. */
  readonly #open = new Map<string, { agent: string; start: number; alerted: boolean }>();
  readonly #listeners = new Set<(e: AnomalyEvent) => void>();
  #timer: NodeJS.Timeout | undefined;
  #tail: { reader: Pick<AuditReader, 'headSeq' | 'tail'>; seq: number } | undefined;

  constructor(opts: AnomalyOptions) {
    this.#policy = policyGetter(opts.policy);
    this.#alerts = opts.alerts;
    this.#kill = opts.killSwitch;
    this.#audit = opts.audit;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger ?? silentLogger();
    this.#cooldownMs = opts.cooldownMs ?? 5 * MINUTE;
    this.#baselineFactor = opts.baselineFactor ?? 5;
    this.#baselineFloor = opts.baselineFloor ?? 30;
    this.#tickMs = opts.tickMs ?? 1000;
  }

  /** Observed anomalies, for callers that want more than the alert (tests, the status view). */
  onAnomaly(listener: (e: AnomalyEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Starts the periodic tick (live long-run check, and the audit tail if watching). */
  start(): void {
    if (this.#timer) return;
    this.#timer = this.#clock.setInterval(() => this.tick(), this.#tickMs);
    this.#timer.unref?.();
  }

  stop(): void {
    if (this.#timer) this.#clock.clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Tail the audit table from its current head (history is not replayed). */
  watchAudit(reader: Pick<AuditReader, 'headSeq' | 'tail'>, fromSeq?: number): void {
    this.#tail = { reader, seq: fromSeq ?? reader.headSeq() };
  }

  /** One pass: read new audit rows, then look for calls running too long. Public so tests can drive it. */
  tick(): void {
    try {
      this.#readTail();
      this.#checkOpenCalls(this.#clock.now());
    } catch (err) {
      this.#logger.error({ err: describeError(err) }, 'anomaly tick failed');
    }
  }

  /** A decided call. `decision` as audited: allow | deny | approve | halted … */
  recordCall(e: {
    agent: string;
    decision: string;
    callId?: string | undefined;
    durationMs?: number | undefined;
    ts?: number | undefined;
  }): void {
    const now = e.ts ?? this.#clock.now();
    const w = this.#window(e.agent, now);
    w.calls.push(now);
    const minute = Math.floor(now / MINUTE);
    w.minuteBuckets.set(minute, (w.minuteBuckets.get(minute) ?? 0) + 1);
    // Refusals because of a halt are not counted: on-call already knows, and they would page again for it.
    if (e.decision === 'deny' || e.decision === 'denied') w.denials.push(now);
    if (e.decision === 'allow' && e.callId && e.durationMs === undefined)
      this.#open.set(e.callId, { agent: e.agent, start: now, alerted: false });
    this.#evaluate(e.agent, now);
    if (e.durationMs !== undefined)
      this.recordCompletion({ agent: e.agent, callId: e.callId, durationMs: e.durationMs, ts: now });
  }

  /** A forwarded call ended. */
  recordCompletion(e: {
    agent: string;
    callId?: string | undefined;
    durationMs: number;
    ts?: number | undefined;
  }): void {
    const open = e.callId ? this.#open.get(e.callId) : undefined;
    if (e.callId) this.#open.delete(e.callId);
    const limit = this.#limits(e.agent)?.maxCallDurationMs;
    if (limit !== undefined && e.durationMs > limit && !open?.alerted) {
      this.#fire(
        e.agent,
        'long_run',
        `a call ran ${Math.round(e.durationMs)} ms, over the ${limit} ms limit`,
        { count: e.durationMs, limit, callId: e.callId },
        e.ts ?? this.#clock.now(),
        e.callId,
      );
    }
  }

  /**
   * The sandbox of a `warden run` refused connections (one aggregated row);
   * each counts as a denial, so an agent probing the network trips max_denials.
   */
  recordEgressDenied(e: { agent: string; count: number; ts?: number | undefined }): void {
    const now = e.ts ?? this.#clock.now();
    const w = this.#window(e.agent, now);
    for (let i = 0; i < Math.min(e.count, 10_000); i++) w.denials.push(now);
    this.#evaluate(e.agent, now);
  }

  /** A human rejected one of this agent's held calls. */
  recordRejection(e: { agent: string; ts?: number | undefined }): void {
    const now = e.ts ?? this.#clock.now();
    this.#window(e.agent, now).rejections.push(now);
    this.#evaluate(e.agent, now);
  }

  #readTail(): void {
    if (!this.#tail) return;
    const rows = this.#tail.reader.tail(this.#tail.seq, 5000);
    for (const r of rows) {
      this.#tail.seq = r.seq;
      if (!r.agent) continue;
      if (r.event === 'call.decided')
        this.recordCall({ agent: r.agent, decision: r.decision ?? '', callId: r.call_id ?? undefined, ts: r.ts });
      else if (r.event === 'call.completed' && r.duration_ms !== null)
        this.recordCompletion({ agent: r.agent, callId: r.call_id ?? undefined, durationMs: r.duration_ms, ts: r.ts });
      else if (r.event === 'approval.decided' && r.decision === 'rejected')
        this.recordRejection({ agent: r.agent, ts: r.ts });
      else if (r.event === 'sandbox.egress_denied')
        this.recordEgressDenied({ agent: r.agent, count: egressCount(r.detail), ts: r.ts });
    }
  }

  #checkOpenCalls(now: number): void {
    for (const [callId, c] of this.#open) {
      if (c.alerted) continue;
      const limit = this.#limits(c.agent)?.maxCallDurationMs;
      if (limit === undefined || now - c.start <= limit) continue;
      c.alerted = true;
      this.#fire(
        c.agent,
        'long_run',
        `a call has been running ${now - c.start} ms, over the ${limit} ms limit`,
        { count: now - c.start, limit, callId },
        now,
        callId,
      );
    }
    // Calls whose completion we never saw (process died) must not pile up forever.
    for (const [callId, c] of this.#open) if (now - c.start > 24 * 3_600_000) this.#open.delete(callId);
  }

  #limits(agent: string): AgentLimits | undefined {
    try {
      return this.#policy().agents[agent]?.limits;
    } catch {
      return undefined;
    }
  }

  #window(agent: string, now: number): AgentWindow {
    let w = this.#windows.get(agent);
    if (!w) {
      w = { calls: [], denials: [], rejections: [], minuteBuckets: new Map(), firstSeen: now };
      this.#windows.set(agent, w);
    }
    return w;
  }

  #evaluate(agent: string, now: number): void {
    const w = this.#windows.get(agent);
    if (!w) return;
    const limits = this.#limits(agent);
    const denialWindow = limits?.denialWindowMs ?? 10 * MINUTE;
    prune(w.calls, now - MINUTE);
    prune(w.denials, now - denialWindow);
    prune(w.rejections, now - denialWindow);
    const currentMinute = Math.floor(now / MINUTE);
    for (const m of w.minuteBuckets.keys()) if (m < currentMinute - 60) w.minuteBuckets.delete(m);

    if (limits?.callsPerMinute !== undefined) {
      if (w.calls.length > limits.callsPerMinute) {
        this.#fire(
          agent,
          'rate',
          `${w.calls.length} calls in the last minute, over the limit of ${limits.callsPerMinute}`,
          { count: w.calls.length, limit: limits.callsPerMinute, windowMs: MINUTE },
          now,
        );
      }
    } else if (now - w.firstSeen >= 10 * MINUTE) {
      // Baseline: mean of the completed minutes we have seen in the last hour, gaps counted as zero.
      const minutes = Math.min(60, Math.floor((now - w.firstSeen) / MINUTE));
      let total = 0;
      for (const [m, n] of w.minuteBuckets) if (m < currentMinute && m >= currentMinute - minutes) total += n;
      const mean = total / Math.max(1, minutes);
      const threshold = Math.max(this.#baselineFloor, mean * this.#baselineFactor);
      if (w.calls.length > threshold) {
        this.#fire(
          agent,
          'rate_baseline',
          `${w.calls.length} calls in the last minute, ${this.#baselineFactor}x over its hourly baseline of ${mean.toFixed(1)}/min`,
          { count: w.calls.length, limit: Math.ceil(threshold), windowMs: MINUTE },
          now,
        );
      }
    }
    if (limits?.maxDenials !== undefined && w.denials.length > limits.maxDenials) {
      this.#fire(
        agent,
        'denials',
        `${w.denials.length} refused calls within ${Math.round(denialWindow / 1000)} s, over the limit of ${limits.maxDenials}`,
        { count: w.denials.length, limit: limits.maxDenials, windowMs: denialWindow },
        now,
      );
    }
    if (limits?.maxRejections !== undefined && w.rejections.length > limits.maxRejections) {
      this.#fire(
        agent,
        'rejections',
        `${w.rejections.length} held calls rejected by humans within ${Math.round(denialWindow / 1000)} s, over the limit of ${limits.maxRejections}`,
        { count: w.rejections.length, limit: limits.maxRejections, windowMs: denialWindow },
        now,
      );
    }
  }

  #fire(
    agent: string,
    rule: AnomalyRule,
    text: string,
    facts: { count?: number; limit?: number; windowMs?: number; callId?: string | undefined },
    now: number,
    callId?: string,
  ): void {
    const key = `${agent}\u0000${rule}`;
    const last = this.#lastFired.get(key);
    if (last !== undefined && now - last < this.#cooldownMs) return;
    this.#lastFired.set(key, now);
    const limits = this.#limits(agent);
    const autoHalt = limits?.autoHalt === true && this.#kill !== undefined && this.#kill.check(agent) === null;
    const event: AnomalyEvent = { agent, rule, text, ...facts, callId, autoHalted: autoHalt };
    this.#logger.warn({ agent, rule, count: facts.count, limit: facts.limit }, 'anomaly');
    this.#alerts.alert({
      kind: 'anomaly',
      severity: autoHalt ? 'critical' : 'warning',
      agent,
      text: `${text}${autoHalt ? '. The agent has been halted automatically (limits.auto_halt).' : '.'}`,
      detail: { rule, count: facts.count, limit: facts.limit, windowMs: facts.windowMs, autoHalted: autoHalt },
    });
    this.#audit
      ?.append({
        event: 'anomaly',
        agent,
        callId,
        decision: rule,
        reason: text,
        detail: { count: facts.count, limit: facts.limit, windowMs: facts.windowMs, autoHalted: autoHalt },
      })
      .catch((err: unknown) => {
        this.#logger.error({ err: describeError(err) }, 'auditing anomaly failed');
      });
    if (autoHalt) {
      this.#kill!.halt({
        scope: 'agent',
        agent,
        reason: `auto-halt on anomaly (${rule}): ${text}`,
        actor: 'warden:anomaly',
      }).catch((err: unknown) => {
        this.#logger.error({ err: describeError(err), agent }, 'auto-halt failed');
      });
    }
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'anomaly listener threw');
      }
    }
  }
}

function prune(times: number[], cutoff: number): void {
  let i = 0;
  while (i < times.length && times[i]! < cutoff) i++;
  if (i > 0) times.splice(0, i);
}
