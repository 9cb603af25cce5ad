import cron, { type ScheduledTask } from 'node-cron';
import type { KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { Db } from '../store/db.ts';
import { checkpointLag, createCheckpoint, markCheckpointPosted, type Checkpoint } from '../audit/checkpoint.ts';
import { appendWitness } from '../audit/witness.ts';
import { checkpointText } from '../audit/checkpoint-text.ts';
import type { AlertSink } from './types.ts';
import type { ChannelPoster } from './alerts.ts';
import { drillOverdue, type DrillRunner } from './drill.ts';
import { daysUntilReview } from './status.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';

export interface CheckpointTargets {
  key: string | KeyObject;
  poster?: ChannelPoster | undefined;
  /** WARDEN_CHECKPOINT_WITNESS: a file each checkpoint is appended to (audit/witness.ts). */
  witness?: string | undefined;
}

export interface ControlSchedulerOptions {
  db: Db;
  policy: PolicySource;
  alerts: AlertSink;
  /** Runs on `control.drill.schedule`; without it, only the overdue check runs. */
  drill?: DrillRunner | undefined;
  /**
   * Signing key, and where each checkpoint goes besides the database: the
   * compliance channel (poster) and/or a local witness file. Without it,
   * `control.checkpoint_schedule` and `checkpoint_every_rows` are ignored (logged once).
   */
  checkpoints?: CheckpointTargets | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  timezone?: string | undefined;
  /** When to look for an overdue drill. Default hourly. */
  overdueCheckSchedule?: string | undefined;
  /** How often to look at the chain's length for `control.checkpoint_every_rows`. Default 1 s. */
  rowCheckMs?: number | undefined;
  /** Remind this many days before a review date (and every run after it). Default 7. */
  reviewLeadDays?: number | undefined;
}

// Formatted where it is parsed back (audit verify --from-slack); re-exported for existing importers.
export { checkpointText };

/** Slack is retried and may be slow: a checkpoint this much later than planned is late, not missing. */
export const CHECKPOINT_GRACE_MS = 15 * 60_000;

/**
 * The longest `schedule` leaves between two checkpoints, over its next `runs`
 * fire times (a monthly schedule varies by month): a newest checkpoint older
 * than this plus CHECKPOINT_GRACE_MS means the schedule stopped running, or
 * newer checkpoints were removed.
 */
export function checkpointMaxGapMs(schedule: string, timezone?: string, runs = 32): number {
  const task = cron.createTask(schedule, () => undefined, { timezone });
  try {
    const times = task.getNextRuns(runs).map((d) => d.getTime());
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
    return gap;
  } finally {
    void task.destroy();
  }
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
  #rowTimer: NodeJS.Timeout | undefined;
  #inFlight: Promise<Checkpoint | undefined> | undefined;
  #lastOverdueAlert: number | undefined;
  // start() runs again on every policy reload; a configuration warning is worth saying once.
  #warnedNoKey = false;
  #warnedDbOnly = false;

  constructor(options: ControlSchedulerOptions) {
    this.#options = options;
    this.#policy = policyGetter(options.policy);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger();
  }

  /** Names of the scheduled jobs, for status output and tests. */
  get jobs(): string[] {
    const names = this.#tasks.map((t) => t.name ?? t.id);
    return this.#rowTimer ? [...names, 'checkpoint-rows'] : names;
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
    if (
      (control.checkpointSchedule || control.checkpointEveryRows) &&
      !this.#options.checkpoints &&
      !this.#warnedNoKey
    ) {
      this.#warnedNoKey = true;
      this.#logger.warn(
        'control.checkpoint_schedule or checkpoint_every_rows is set but no checkpoint key is configured (WARDEN_CHECKPOINT_KEY); no checkpoints are taken',
      );
    }
    const targets = this.#options.checkpoints;
    if (targets && !targets.poster && !targets.witness && !this.#warnedDbOnly) {
      this.#warnedDbOnly = true;
      this.#logger.warn(
        'checkpoints are kept only in the database, where whoever cuts the trail can delete them too; configure Slack (control.compliance_channel) or WARDEN_CHECKPOINT_WITNESS',
      );
    }
    if (targets) {
      add('checkpoint', control.checkpointSchedule, () => this.postCheckpoint().then(() => undefined));
      if (control.checkpointEveryRows) {
        this.#rowTimer = this.#clock.setInterval(() => this.checkRows(), this.#options.rowCheckMs ?? 1000);
        this.#rowTimer.unref?.();
      }
    }
    add('review-reminders', control.reviewReminderSchedule, async () => {
      this.remindReviews();
    });
  }

  async stop(): Promise<void> {
    const tasks = this.#tasks;
    this.#tasks = [];
    if (this.#rowTimer) this.#clock.clearInterval(this.#rowTimer);
    this.#rowTimer = undefined;
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

  /**
   * `control.checkpoint_every_rows`: a checkpoint once the chain has grown that
   * much past the newest one, so a busy trail is not left unanchored until the
   * next scheduled time. Public so tests can drive it.
   */
  checkRows(): void {
    const every = this.#policy().control.checkpointEveryRows;
    if (!every || !this.#options.checkpoints || this.#inFlight) return;
    try {
      const lag = checkpointLag(this.#options.db);
      if (lag.headSeq - (lag.checkpointSeq ?? 0) < every) return;
    } catch (err) {
      this.#logger.error({ err: describeError(err) }, 'reading the audit head for checkpoint_every_rows failed');
      return;
    }
    void this.postCheckpoint();
  }

  /**
   * Signs the head, appends it to the witness file, posts it to the compliance
   * channel and records where it went. One at a time: the schedule and the row
   * count may both ask at once.
   */
  postCheckpoint(): Promise<Checkpoint | undefined> {
    this.#inFlight ??= this.#takeCheckpoint().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  async #takeCheckpoint(): Promise<Checkpoint | undefined> {
    const targets = this.#options.checkpoints;
    const channel = this.#policy().control.complianceChannel;
    if (!targets) return undefined;
    let cp: Checkpoint;
    try {
      cp = createCheckpoint(this.#options.db, targets.key, this.#clock);
    } catch (err) {
      this.#options.alerts.alert({
        kind: 'upstream_failed',
        severity: 'warning',
        text: `Taking the audit checkpoint failed: ${describeError(err)}`,
      });
      return undefined;
    }
    // Each target on its own: a full disk must not keep the checkpoint out of Slack, nor Slack out of the witness.
    if (targets.witness) {
      try {
        appendWitness(targets.witness, cp);
      } catch (err) {
        this.#options.alerts.alert({
          kind: 'upstream_failed',
          severity: 'warning',
          text: `Writing the audit checkpoint to the witness file failed: ${describeError(err)}`,
        });
      }
    }
    if (!targets.poster) return cp;
    if (!channel) {
      this.#logger.warn({ seq: cp.seq }, 'checkpoint created but control.compliance_channel is not set; not posted');
      return cp;
    }
    try {
      await targets.poster.post(channel, { text: checkpointText(cp) });
      markCheckpointPosted(this.#options.db, cp, `slack:${channel}`);
    } catch (err) {
      this.#options.alerts.alert({
        kind: 'upstream_failed',
        severity: 'warning',
        text: `Posting the audit checkpoint failed: ${describeError(err)}`,
      });
    }
    return cp;
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
