import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { commandGroup, formatColumns } from './shared.ts';
import { AuditLog } from '../../audit/log.ts';
import { AuditReader } from '../../audit/reader.ts';
import { ApprovalStore } from '../../approvals/store.ts';
import { loadConfig } from '../../config/index.ts';
import { actorLabel, canDrill, canHalt, canResume, type ControlActor } from '../../control/authorize.ts';
import { LogAlertSink } from '../../control/alerts.ts';
import {
  DEFAULT_MAX_TIME_TO_HALT_MS,
  DrillRunner,
  type DrillMode,
  type DrillResult,
  type DrillTokens,
} from '../../control/drill.ts';
import { KillSwitch } from '../../control/kill-switch.ts';
import { RunStore } from '../../control/runs.ts';
import { agentStatuses, type AgentStatus } from '../../control/status.ts';
import { WardenError } from '../../errors.ts';
import { mcpCanaryConnector } from '../../gateway/canary-client.ts';
import { createAgentToken, revokeAgentToken } from '../../gateway/tokens.ts';
import { createLogger } from '../../logger.ts';
import { loadPolicyFile } from '../../policy/index.ts';
import type { Policy } from '../../policy/types.ts';
import { canaryRunStarter } from '../../sandbox/index.ts';
import { openDb, type Db } from '../../store/db.ts';
import { systemClock } from '../../clock.ts';

/**
 * The `warden agents` group. Several modules hang verbs off it (this one:
 * halt/resume/status/drill; agents-token.ts: token), so whoever registers
 * first creates it and the rest find it.
 */
export function agentsCommand(program: Command): Command {
  return commandGroup(program, 'agents', 'Agents: kill switch, status, drills, tokens');
}

/** Tokens for a drill: minted through the gateway's token table, revoked by their own hash only. */
export function drillTokensFromDb(db: Db): DrillTokens {
  return {
    create: (agent) => createAgentToken(db, agent),
    revoke: (token) => {
      revokeAgentToken(db, token);
    },
  };
}

/** `all` (or nothing) means the whole org; anything else must be an agent the policy knows. */
export function parseTarget(
  policy: Policy,
  target: string | undefined,
): { scope: 'org' } | { scope: 'agent'; agent: string } {
  if (target === undefined || target === 'all') return { scope: 'org' };
  if (policy.agents[target]) return { scope: 'agent', agent: target };
  const known = Object.keys(policy.agents).sort().join(', ') || '(none)';
  throw new WardenError('NOT_FOUND', `unknown agent "${target}"; use "all" or one of: ${known}`);
}

interface Ctx {
  db: Db;
  audit: AuditLog;
  policy: Policy;
  ks: KillSwitch;
  actor: ControlActor;
  close(): Promise<void>;
}

function open(opts: { db?: string; policy?: string }): Ctx {
  const config = loadConfig(process.env);
  const policy = loadPolicyFile(opts.policy ?? config.policyPath);
  const db = openDb(opts.db ?? config.dbPath);
  const audit = new AuditLog(db);
  const ks = new KillSwitch({ db, audit });
  return {
    db,
    audit,
    policy,
    ks,
    // The OS user already holds the database file; recorded so the audit says who.
    actor: { kind: 'cli', user: userInfo().username },
    async close() {
      ks.stop();
      await audit.close();
      db.close();
    },
  };
}

/** Milliseconds, positive; a looser bound suits a loaded staging host, a tighter one a tuned deployment. */
export function parseMaxTimeToHalt(text: string): number {
  const ms = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : NaN;
  if (!(ms > 0))
    throw new WardenError(
      'INVALID_INPUT',
      `--max-time-to-halt must be a positive number of milliseconds, got "${text}"`,
    );
  return ms;
}

export function formatStatusTable(rows: AgentStatus[]): string {
  const head = ['AGENT', 'OWNER', 'STATE', 'CALLS/1h', 'DENIED/1h', 'PENDING', 'RUNS', 'SANDBOX', 'REVIEW BY'];
  const body = rows.map((r) => [
    r.agent,
    r.owner ?? '-',
    r.state === 'halted' ? `HALTED (${r.halt?.scope === 'org' ? 'org' : 'agent'})` : 'running',
    String(r.callsLastHour),
    String(r.denialsLastHour),
    String(r.pendingApprovals),
    r.runs.length === 0 ? '-' : r.runs.map((run) => `${run.id} pid ${run.pid ?? '?'}@${run.host}`).join(', '),
    r.unsandboxed ? 'NONE' : 'isolated',
    r.reviewBy ? `${r.reviewBy}${r.reviewOverdue ? ' OVERDUE' : ''}` : '-',
  ]);
  return formatColumns(head, body);
}

function describeCanaryRun(value: unknown): string {
  const run = value as { cause?: string; exitCode?: number; stoppedMs?: number };
  return `${run.cause === 'halted' ? 'yes' : `no (${run.cause})`}, exit ${run.exitCode}, ${run.stoppedMs} ms after the halt`;
}

export function formatDrillResult(r: DrillResult): string {
  const lines = [
    `drill ${r.id} (${r.mode}, canary ${r.agent}): ${r.ok ? 'PASSED' : 'FAILED'}`,
    `  time to first refused call: ${r.timeToHaltMs === undefined ? 'never' : `${r.timeToHaltMs.toFixed(1)} ms`}`,
    `  in-flight call cancelled:   ${r.inflightCancelled ? 'yes' : 'no'}`,
    `  restored after resume:      ${r.restored ? 'yes' : 'no'}`,
    ...(r.detail.canaryRun !== undefined
      ? [`  canary run stopped:         ${describeCanaryRun(r.detail.canaryRun)}`]
      : []),
    ...r.problems.map((p) => `  problem: ${p}`),
  ];
  return `${lines.join('\n')}\n`;
}

export function registerAgentsControl(program: Command): void {
  const agents = agentsCommand(program);
  const common = (c: Command) =>
    c
      .option('--db <path>', 'database file (default: WARDEN_DB)')
      .option('--policy <path>', 'policy file (default: WARDEN_POLICY)');

  common(
    agents
      .command('halt')
      .argument('[target]', '"all" for the whole org, or an agent name', 'all')
      .argument('[reason...]', 'why, recorded in the audit trail'),
  )
    .description('Halt the org or one agent: new calls refused, in-flight calls cancelled, pending approvals cancelled')
    .action(async (target: string, reason: string[], opts: { db?: string; policy?: string }) => {
      const ctx = open(opts);
      try {
        const t = parseTarget(ctx.policy, target);
        const authz = canHalt(ctx.policy.control, ctx.actor);
        if (!authz.ok) throw new WardenError('FORBIDDEN', authz.reason);
        const state = await ctx.ks.halt({ ...t, reason: reason.join(' ') || undefined, actor: actorLabel(ctx.actor) });
        process.stdout.write(
          `HALTED ${state.scope === 'org' ? 'all agents (org-wide)' : state.agent} at ${new Date(state.at).toISOString()} by ${state.actor}: ${state.reason}\n` +
            `Running Warden processes refuse new calls within 250 ms and cancel in-flight ones. Resume with: warden agents resume ${target}\n`,
        );
      } finally {
        await ctx.close();
      }
    });

  common(
    agents
      .command('resume')
      .argument('[target]', '"all" for the org-wide halt, or an agent name', 'all')
      .argument('[reason...]', 'why'),
  )
    .description('Resume after a halt ("all" lifts the org-wide halt; agent halts stay until resumed by name)')
    .action(async (target: string, reason: string[], opts: { db?: string; policy?: string }) => {
      const ctx = open(opts);
      try {
        const t = parseTarget(ctx.policy, target);
        const authz = canResume(ctx.policy.control, ctx.actor);
        if (!authz.ok) throw new WardenError('FORBIDDEN', authz.reason);
        const r = await ctx.ks.resume({ ...t, actor: actorLabel(ctx.actor), reason: reason.join(' ') || undefined });
        const what = t.scope === 'org' ? 'org-wide halt' : t.agent;
        process.stdout.write(r.resumed ? `RESUMED ${what}\n` : `${what} was not halted; nothing to resume\n`);
        const still = ctx.ks.status();
        if (still.length > 0)
          process.stdout.write(`Still halted: ${still.map((s) => (s.scope === 'org' ? 'org' : s.agent)).join(', ')}\n`);
      } finally {
        await ctx.close();
      }
    });

  common(agents.command('status').argument('[agent]', 'only this agent'))
    .option('--json', 'print JSON')
    .description('Each agent: owner, state, calls and denials in the last hour, pending approvals, review date')
    .action(async (agent: string | undefined, opts: { db?: string; policy?: string; json?: boolean }) => {
      const ctx = open(opts);
      try {
        if (agent !== undefined) parseTarget(ctx.policy, agent);
        const rows = agentStatuses(
          { audit: new AuditReader(ctx.db), approvals: new ApprovalStore(ctx.db), runs: new RunStore(ctx.db) },
          ctx.policy,
          ctx.ks,
          systemClock.now(),
          agent,
        );
        const org = ctx.ks.orgHalt();
        if (opts.json) process.stdout.write(`${JSON.stringify({ orgHalt: org ?? null, agents: rows }, null, 2)}\n`);
        else {
          if (org)
            process.stdout.write(`ORG HALTED by ${org.actor} at ${new Date(org.at).toISOString()}: ${org.reason}\n`);
          process.stdout.write(formatStatusTable(rows));
        }
      } finally {
        await ctx.close();
      }
    });

  common(
    agents
      .command('drill')
      .argument('[mode]', 'canary (default) or org (halts every agent: maintenance windows only)', 'canary'),
  )
    .option('--gateway-url <url>', 'the running gateway (default: http://WARDEN_HOST:WARDEN_PORT/mcp)')
    .option(
      '--max-time-to-halt <ms>',
      `fail the drill when the first refused call comes later than this after the halt (default ${DEFAULT_MAX_TIME_TO_HALT_MS})`,
    )
    .option('--with-run', 'also start the canary under `warden run` (sandboxed sleep) and check the halt stops it')
    .description('Drill the kill switch through the running gateway and record the result')
    .action(
      async (
        mode: string,
        opts: { db?: string; policy?: string; gatewayUrl?: string; maxTimeToHalt?: string; withRun?: boolean },
      ) => {
        if (mode !== 'canary' && mode !== 'org')
          throw new WardenError('INVALID_INPUT', `drill mode must be "canary" or "org", got "${mode}"`);
        const maxTimeToHaltMs = opts.maxTimeToHalt === undefined ? undefined : parseMaxTimeToHalt(opts.maxTimeToHalt);
        const ctx = open(opts);
        try {
          const authz = canDrill(ctx.policy.control, ctx.actor);
          if (!authz.ok) throw new WardenError('FORBIDDEN', authz.reason);
          const config = loadConfig(process.env);
          const runner = new DrillRunner({
            db: ctx.db,
            audit: ctx.audit,
            auditReader: new AuditReader(ctx.db),
            killSwitch: ctx.ks,
            policy: ctx.policy,
            gatewayUrl: opts.gatewayUrl ?? `http://${config.host}:${config.port}/mcp`,
            tokens: drillTokensFromDb(ctx.db),
            connector: mcpCanaryConnector,
            alerts: new LogAlertSink(createLogger({ level: config.logLevel })),
            maxTimeToHaltMs,
            canaryRun: opts.withRun
              ? canaryRunStarter({
                  policy: ctx.policy,
                  db: ctx.db,
                  audit: ctx.audit,
                  killSwitch: ctx.ks,
                  gateway: { host: config.host, port: config.port },
                  wardenFiles: [config.dbPath, `${config.dbPath}-wal`, `${config.dbPath}-shm`, config.policyPath],
                  env: process.env,
                  logger: createLogger({ level: config.logLevel, name: 'warden-drill-run' }),
                })
              : undefined,
          });
          const result = await runner.run(mode as DrillMode, actorLabel(ctx.actor));
          process.stdout.write(formatDrillResult(result));
          if (!result.ok) process.exitCode = 1;
        } finally {
          await ctx.close();
        }
      },
    );
}
