import type { Clock } from '../clock.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { Db } from '../store/db.ts';
import { AuditReader } from '../audit/reader.ts';
import type { AuditSink } from '../audit/types.ts';
import type { AlertSink } from './types.ts';
import { AnomalyDetector } from './anomaly.ts';
import { DrillRunner, type CanaryConnector, type DrillResult, type DrillTokens } from './drill.ts';
import { wireHaltEffects, type PendingApprovalCanceller } from './halt-effects.ts';
import { KillSwitch } from './kill-switch.ts';
import type { PolicySource } from '../policy/source.ts';
import { ControlScheduler, type CheckpointTargets } from './scheduler.ts';

export interface ControlPlaneOptions {
  db: Db;
  audit: AuditSink;
  policy: PolicySource;
  /** Usually a FanOutAlertSink: the log always, and Slack when it is configured. */
  alerts: AlertSink;
  /** ApprovalService: pending approvals are cancelled on halt. */
  approvals?: PendingApprovalCanceller | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /** Act on halts made by other processes (CLI): set in the one long-running process that owns Slack. Default true. */
  actOnRemote?: boolean | undefined;
  /** Drills need the gateway URL, a way to mint canary tokens and an MCP client. */
  drill?:
    | {
        gatewayUrl: string | (() => string);
        tokens: DrillTokens;
        connector: CanaryConnector;
        report?: ((r: DrillResult) => Promise<void>) | undefined;
      }
    | undefined;
  checkpoints?: CheckpointTargets | undefined;
  /** Tail the audit table for anomalies. Default true. */
  anomalies?: boolean | undefined;
  timezone?: string | undefined;
}

export interface ControlPlane {
  killSwitch: KillSwitch;
  drill?: DrillRunner | undefined;
  anomaly: AnomalyDetector;
  scheduler: ControlScheduler;
  start(): void;
  stop(): Promise<void>;
}

/**
 * The control plane as `warden serve` runs it: kill switch (polling),
 * halt effects, anomaly detection on the audit tail (so calls from every
 * gateway process count), drills and the cron jobs.
 */
export function createControlPlane(o: ControlPlaneOptions): ControlPlane {
  const logger = o.logger ?? silentLogger();
  const killSwitch = new KillSwitch({ db: o.db, audit: o.audit, clock: o.clock, logger });
  const auditReader = new AuditReader(o.db);
  const anomaly = new AnomalyDetector({
    policy: o.policy,
    alerts: o.alerts,
    killSwitch,
    audit: o.audit,
    clock: o.clock,
    logger,
  });
  const drill = o.drill
    ? new DrillRunner({
        db: o.db,
        audit: o.audit,
        auditReader,
        killSwitch,
        policy: o.policy,
        gatewayUrl: o.drill.gatewayUrl,
        tokens: o.drill.tokens,
        connector: o.drill.connector,
        alerts: o.alerts,
        report: o.drill.report,
        clock: o.clock,
        logger,
      })
    : undefined;
  const scheduler = new ControlScheduler({
    db: o.db,
    policy: o.policy,
    alerts: o.alerts,
    drill,
    checkpoints: o.checkpoints,
    clock: o.clock,
    logger,
    timezone: o.timezone,
  });
  let offEffects: (() => void) | undefined;
  let offReload: (() => void) | undefined;
  // A PolicyStore tells of reloads: cron schedules are read when jobs start, so start them again.
  const reloads = o.policy as { onChange?: (listener: () => void) => () => void };
  return {
    killSwitch,
    drill,
    anomaly,
    scheduler,
    start() {
      killSwitch.start();
      offEffects ??= wireHaltEffects({
        killSwitch,
        approvals: o.approvals,
        alerts: o.alerts,
        logger,
        actOnRemote: o.actOnRemote ?? true,
      });
      if (o.anomalies !== false) {
        anomaly.watchAudit(auditReader);
        anomaly.start();
      }
      scheduler.start();
      if (typeof reloads.onChange === 'function') {
        offReload ??= reloads.onChange(() => {
          scheduler
            .restart()
            .catch((err: unknown) =>
              logger.error({ err: describeError(err) }, 'restarting cron jobs after a policy reload failed'),
            );
        });
      }
      // A Warden that starts with an overdue drill says so at once, not at the next hourly check.
      scheduler.checkDrillOverdue();
    },
    async stop() {
      offReload?.();
      offReload = undefined;
      await scheduler.stop();
      anomaly.stop();
      offEffects?.();
      offEffects = undefined;
      killSwitch.stop();
    },
  };
}
