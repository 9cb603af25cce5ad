import cron, { type ScheduledTask } from 'node-cron';
import type { KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { Db } from '../store/db.ts';
import { createCheckpoint, markCheckpointPosted, type Checkpoint } from '../audit/checkpoint.ts';
import type { AlertSink } from './types.ts';
import type { ChannelPoster } from './alerts.ts';
import { drillOverdue, type DrillRunner } from './drill.ts';
import { daysUntilReview } from './status.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';

export interface ControlSchedulerOptions {
  db: Db;
  policy: PolicySource;
  alerts: AlertSink;
  /** Runs on `control.drill.schedule`; without it, only the overdue check runs. */
  drill?: DrillRunner | undefined;
  /** Signing key and where to post; without it, `control.checkpoint_schedule` is ignored (logged). */
  checkpoints?: { key: string | KeyObject; poster: ChannelPoster } | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  timezone?: string | undefined;
  /** When to look for an overdue drill. Default hourly. */
  overdueCheckSchedule?: string | undefined;
  /** Remind this many days before a review date (and every run after it). Default 7. */
  reviewLeadDays?: number | undefined;
}

/** Plain text for the compliance channel: everything needed to verify the head later, on one screen. */
export function checkpointText(cp: Checkpoint): string {
  return [
    `:lock: *Audit checkpoint* — head seq \`${cp.seq}\` at ${new Date(cp.ts).toISOString()}`,
    `hash \`${cp.head_hash}\``,
    `signature \`${cp.signature}\``,
    `public key \`${cp.public_key}\``,
    `Verify later with \`warden audit verify --checkpoint ${cp.seq}:${cp.head_hash}\`: a chain shorter than this, or with a different hash here, was truncated or rewritten.`,
  ].join('\n');
}

/**
 * The control plane's clock-driven work, on node-cron: the monthly drill, the
 * overdue-drill check, signed audit checkpoints to the compliance channel (so
 * truncation is visible outside the database) and review-date reminders.
 * Each job catches its own failure and turns it into an alert: a scheduler
 * that dies quietly is how drills become overdue.
 */
export class ControlScheduler {
  readonly #options: ControlSchedulerOptions;
  readonly #policy: ReturnType<typeof policyGetter>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #tasks: ScheduledTask[] = [];
  #lastOverdueAlert: number | undefined;
  /** Said once per process: a reload restarts the jobs but changes nothing about the missing key. */
  #warnedNoCheckpointKey = false;

  constructor(options: ControlSchedulerOptions) {
    this.#options = options;
    this.#policy = policyGetter(options.policy);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger();
  }

  /** Names of the scheduled jobs, for status output and tests. */
  get jobs(): string[] {
    return this.#tasks.map((t) => t.name ?? t.id);
  }

  start(): void {
    if (this.#tasks.length > 0) return;
    const control = this.#policy().control;
    const add = (name: string, expr: string | undefined, fn: () => Promise<void>) => {
      if (!expr) return;
      // noOverlap: a slow drill must not start a second one on top of itself.
      this.#tasks.push(cron.schedule(expr, () => fn(), { name, noOverlap: true, timezone: this.#options.timezone }));
    };
    if (this.#options.drill) add('drill', control.drill.schedule, () => this.runDrill());
    add('drill-overdue', this.#options.overdueCheckSchedule ?? '0 * * * *', async () => {
      this.checkDrillOverdue();
    });
    if (control.checkpointSchedule && !this.#options.checkpoints && !this.#warnedNoCheckpointKey) {
      this.#warnedNoCheckpointKey = true;
      this.#logger.warn(
        'control.checkpoint_schedule is set but no checkpoint key/poster is configured (WARDEN_CHECKPOINT_KEY); checkpoints are not posted',
      );
    }
    if (this.#options.checkpoints)
      add('checkpoint', control.checkpointSchedule, () => this.postCheckpoint().then(() => undefined));
    add('review-reminders', control.reviewReminderSchedule, async () => {
      this.remindReviews();
    });
  }

  async stop(): Promise<void> {
    const tasks = this.#tasks;
    this.#tasks = [];
    for (const t of tasks) await t.destroy();
  }

  /** After a policy reload: schedules may have changed. */
  async restart(): Promise<void> {
    await this.stop();
    this.start();
  }

  async runDrill(): Promise<void> {
    if (!this.#options.drill) return;
    try {
      await this.#options.drill.run('canary', 'warden:scheduler');
    } catch (err) {
      // The drill reports its own failures; this is a drill that could not even start.
      this.#options.alerts.alert({
        kind: 'drill_failed',
        severity: 'critical',
        text: `Scheduled kill-switch drill could not run: ${describeError(err)}`,
      });
    }
  }

  /** Alerts (critical, at most once a day) when the last good drill is too old. */
  checkDrillOverdue(): boolean {
    const control = this.#policy().control;
    const now = this.#clock.now();
    const overdue = drillOverdue(this.#options.db, control.drill.overdueAfterDays, now);
    if (!overdue.overdue) return false;
    if (this.#lastOverdueAlert !== undefined && now - this.#lastOverdueAlert < 86_400_000) return true;
    this.#lastOverdueAlert = now;
    this.#options.alerts.alert({
      kind: 'drill_overdue',
      severity: 'critical',
      text:
        overdue.lastOkAt === undefined
          ? `The kill switch has never passed a drill. Run \`/agents drill\` or \`warden agents drill\`.`
          : `The last passing kill-switch drill was ${overdue.daysSince} days ago (limit ${control.drill.overdueAfterDays}). Run \`/agents drill\`.`,
      detail: { lastOkAt: overdue.lastOkAt, overdueAfterDays: control.drill.overdueAfterDays },
    });
    return true;
  }

  /** Signs the head, posts it to the compliance channel and records where it went. */
  async postCheckpoint(): Promise<Checkpoint | undefined> {
    const cfg = this.#options.checkpoints;
    const channel = this.#policy().control.complianceChannel;
    if (!cfg) return undefined;
    try {
      const cp = createCheckpoint(this.#options.db, cfg.key, this.#clock);
      if (!channel) {
        this.#logger.warn({ seq: cp.seq }, 'checkpoint created but control.compliance_channel is not set; not posted');
        return cp;
      }
      await cfg.poster.post(channel, { text: checkpointText(cp) });
      markCheckpointPosted(this.#options.db, cp, `slack:${channel}`);
      return cp;
    } catch (err) {
      this.#options.alerts.alert({
        kind: 'upstream_failed',
        severity: 'warning',
        text: `Posting the audit checkpoint failed: ${describeError(err)}`,
      });
      return undefined;
    }
  }

  /** Reminds owners of reviews due within the lead time, and keeps reminding once overdue. */
  remindReviews(): number {
    const policy = this.#policy();
    const now = this.#clock.now();
    const lead = this.#options.reviewLeadDays ?? 7;
    let sent = 0;
    for (const agent of Object.values(policy.agents)) {
      if (!agent.reviewBy) continue;
      const days = daysUntilReview(agent.reviewBy, now);
      if (days === undefined || days > lead) continue;
      sent++;
      const owner = agent.owner ? `Owner ${agent.owner}` : 'Its owner';
      this.#options.alerts.alert({
        kind: 'review_due',
        severity: days < 0 ? 'warning' : 'info',
        agent: agent.name,
        text:
          days < 0
            ? `Access review for ${agent.name} is OVERDUE (was due ${agent.reviewBy}). ${owner}, please review its scopes and update review_by.`
            : `Access review for ${agent.name} is due ${agent.reviewBy} (${days === 0 ? 'today' : `in ${days} day${days === 1 ? '' : 's'}`}). ${owner}, please review its scopes.`,
        detail: { reviewBy: agent.reviewBy, days },
      });
    }
    return sent;
  }
}
