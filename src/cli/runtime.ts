import { ApprovalService } from '../approvals/index.ts';
import { AuditLog, AuditReader } from '../audit/index.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Config } from '../config/index.ts';
import { FanOutAlertSink, LogAlertSink } from '../control/alerts.ts';
import { reportPolicyChanges } from '../control/policy-changes.ts';
import { drillReportPoster } from '../control/drill.ts';
import { createControlPlane, type ControlPlane } from '../control/plane.ts';
import { recoverAbandonedCalls, recoverDeadReplicaCalls, recoveryGraceMs } from '../control/recovery.ts';
import { ReplicaRegistry, type ReplicaRecord } from '../control/replicas.ts';
import { RunStore } from '../control/runs.ts';
import type { AlertSink } from '../control/types.ts';
import { describeError } from '../errors.ts';
import { mcpCanaryConnector } from '../gateway/canary-client.ts';
import { createAgentToken, revokeAgentToken, startGateway, type GatewayHandle } from '../gateway/index.ts';
import type { Logger } from '../logger.ts';
import { PolicyStore } from '../policy/index.ts';
import { buildDrillReport } from '../slack/blocks/drill.ts';
import {
  createSlackApp,
  createSlackClient,
  SlackAlertSink,
  SlackChannelPoster,
  SlackNotifier,
  type SlackApp,
} from '../slack/index.ts';
import { createStdioSandboxer } from '../sandbox/upstream.ts';
import { openDb, type Db } from '../store/db.ts';

export interface Warden {
  db: Db;
  policy: PolicyStore;
  audit: AuditLog;
  approvals: ApprovalService;
  control: ControlPlane;
  gateway: GatewayHandle;
  slack?: SlackApp | undefined;
  /** Bound port of Bolt's HTTP receiver (HTTP mode only). */
  slackPort?: number | undefined;
  close(): Promise<void>;
}

export interface StartWardenOptions {
  logger: Logger;
  clock?: Clock | undefined;
  env?: NodeJS.ProcessEnv | undefined;
}

/**
 * The composition root: every service built once, wired through the
 * interfaces in each module's types.ts, and started in dependency order. Used by
 * `warden serve` (and so `npm start`) and by the end-to-end tests.
 */
export async function startWarden(config: Config, options: StartWardenOptions): Promise<Warden> {
  const { logger } = options;
  const clock = options.clock ?? systemClock;
  // Load the policy before touching the database: a bad policy stops start-up with file:line.
  const policy = new PolicyStore(config.policyPath, { logger, env: options.env ?? process.env });
  const db = openDb(config.dbPath);
  const audit = new AuditLog(db, { clock, logger });
  const closers: Array<() => Promise<void> | void> = [];
  try {
    const slackClient = config.slack ? createSlackClient(config.slack, logger) : undefined;
    const poster = slackClient ? new SlackChannelPoster(slackClient, { clock, logger }) : undefined;
    const alerts: AlertSink = slackClient
      ? new FanOutAlertSink(
          [new LogAlertSink(logger), new SlackAlertSink({ client: slackClient, policy, clock, logger })],
          logger,
        )
      : new LogAlertSink(logger);

    // Registered before anything this process owns is written: its rows name it, and peers judge it by its lease.
    const replicas = new ReplicaRegistry(db, { clock, logger, ...config.replicas });
    replicas.register();
    // Pushed first, so it runs last: marked stopped only once everything it held was handed back.
    closers.push(() => replicas.stop());
    const approvals = new ApprovalService({
      db,
      audit,
      policy,
      clock,
      logger,
      processId: replicas.id,
      ownerAlive: (processId) => replicas.alive(processId),
      cacheHeldCalls: true,
      notifier: slackClient ? new SlackNotifier({ client: slackClient, clock, logger }) : undefined,
    });
    closers.push(() => approvals.close());
    const abandoned = await approvals.recover();
    if (abandoned > 0) logger.warn({ abandoned }, 'approvals left pending by a previous process were marked abandoned');
    // After approvals.recover(): a held call whose approval it just abandoned is no longer "still waiting".
    const startedAt = clock.now();
    const auditReader = new AuditReader(db);
    // A deferred held call approved while no Warden ran is not dead: the gateway takes it over and runs it.
    const stillToRun = (callId: string) => approvals.heldCalls.stillToRun(callId);
    const dangling = await recoverAbandonedCalls({
      auditReader,
      approvals,
      audit,
      policy,
      clock,
      logger,
      startedAt,
      stillToRun,
    });
    if (dangling.length > 0)
      logger.warn({ calls: dangling.length }, 'calls left running by a stopped process were recorded as abandoned');
    // Calls a crashed process started just before this one are still inside the
    // grace window now; look again once it has passed, so they are closed too.
    const graceMs = recoveryGraceMs(policy);
    const secondPass = clock.setTimeout(() => {
      // Cut-off = our own start: every call decided before it that is still open
      // a full grace window later belonged to a process that is gone.
      recoverAbandonedCalls({
        auditReader,
        approvals,
        audit,
        policy,
        clock,
        logger,
        startedAt: startedAt + graceMs,
        graceMs,
        stillToRun,
      })
        .then((late) => {
          if (late.length > 0)
            logger.warn({ calls: late.length }, 'calls left running by a stopped process were recorded as abandoned');
        })
        .catch((err: unknown) => logger.warn({ err: describeError(err) }, 'late call recovery failed'));
    }, graceMs + 1_000);
    secondPass.unref?.();
    closers.push(() => clock.clearTimeout(secondPass));

    let gateway: GatewayHandle | undefined;
    const control = createControlPlane({
      db,
      audit,
      policy,
      alerts,
      approvals,
      clock,
      logger,
      drill: {
        gatewayUrl: () => {
          if (!gateway) throw new Error('gateway is not listening yet');
          return gateway.url;
        },
        tokens: {
          create: (agent) => createAgentToken(db, agent, { clock, policy: policy.current() }),
          revoke: (token) => void revokeAgentToken(db, token, { clock }),
        },
        connector: mcpCanaryConnector,
        report: poster ? drillReportPoster(poster, policy, buildDrillReport) : undefined,
      },
      // Without Slack the witness file alone still takes checkpoints out of the database.
      checkpoints: config.checkpointKey
        ? { key: config.checkpointKey, poster, witness: config.checkpointWitness }
        : undefined,
    });
    control.start();
    closers.push(() => control.stop());
    // A reload that widens (or narrows) what agents may do is audited and posted on-call, never silent.
    closers.push(reportPolicyChanges({ policy, audit, alerts, logger }));
    // A reload that takes a tool (or an agent's grants:) away ends the grants that covered it.
    closers.push(
      policy.onChange((next) => {
        approvals.grants
          .policyChanged(next)
          .catch((err: unknown) => logger.error({ err: describeError(err) }, 'ending grants after a reload failed'));
      }),
    );

    gateway = await startGateway({
      policy,
      db,
      audit,
      approvals,
      halt: control.killSwitch,
      alerts,
      logger,
      clock,
      host: config.host,
      port: config.port,
      allowedHosts: config.allowedHosts,
      allowedOrigins: config.allowedOrigins,
      auditDurability: config.auditDurability,
      sandboxStdio: createStdioSandboxer({
        env: options.env ?? process.env,
        wardenFiles: [config.dbPath, `${config.dbPath}-wal`, `${config.dbPath}-shm`, config.policyPath],
      }),
      limits: config.gatewayLimits,
    });
    const gw = gateway;
    closers.push(() => gw.close());
    // Survivors close what a dead replica left: its pending approvals, its deferred held calls (taken over
    // here), and its calls in flight. One survivor claims each dead replica, so each is closed once.
    const closeDeadReplicas = async (dead: ReplicaRecord[]) => {
      const settled = await approvals.recover('the Warden holding it stopped (its replica lease expired)');
      const adopted = await gw.resumeHeldCalls();
      for (const replica of dead) {
        const calls = await recoverDeadReplicaCalls({
          auditReader,
          approvals,
          audit,
          replica,
          clock,
          logger,
          stillLive: (callId) => {
            if (approvals.heldCalls.stillToRun(callId)) return true;
            const runner = approvals.heldCalls.runnerOf(callId);
            return runner !== undefined && runner !== replica.id && replicas.alive(runner) !== false;
          },
        });
        logger.warn(
          { replica: replica.id, calls: calls.length, approvals: settled, heldCalls: adopted },
          'closed what a dead replica left',
        );
      }
    };
    replicas.start(closeDeadReplicas);

    let slack: SlackApp | undefined;
    let slackPort: number | undefined;
    if (config.slack) {
      slack = createSlackApp({
        config: config.slack,
        approvals,
        policy,
        audit,
        logger,
        clock,
        // For the replay guard's table only; listeners get the services below, never the handle.
        db,
        auditReader,
        control: { killSwitch: control.killSwitch, runs: new RunStore(db, { clock }), drill: control.drill },
      });
      slackPort = (await slack.start()).port;
      const app = slack;
      closers.push(() => app.stop());
    }

    return {
      db,
      policy,
      audit,
      approvals,
      control,
      gateway,
      slack,
      slackPort,
      async close() {
        // Reverse order: stop taking work at the edges before the services it needs.
        for (const close of closers.reverse()) {
          try {
            await close();
          } catch (err) {
            logger.warn({ err: describeError(err) }, 'error while shutting down');
          }
        }
        await audit.close();
        db.close();
      },
    };
  } catch (err) {
    for (const close of closers.reverse()) {
      try {
        await close();
      } catch {
        // Start-up already failed; report that error, not a cleanup one.
      }
    }
    await audit.close().catch(() => undefined);
    db.close();
    throw err;
  }
}
