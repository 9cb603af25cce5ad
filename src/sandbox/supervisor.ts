import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { constants as osConstants } from 'node:os';
import { systemClock, type Clock } from '../clock.ts';
import type { AuditSink } from '../audit/types.ts';
import type { KillSwitch } from '../control/kill-switch.ts';
import { RunStore, type RunCause } from '../control/runs.ts';
import type { HaltState } from '../control/types.ts';
import { describeError, WardenError } from '../errors.ts';
import { issueAgentToken, revokeAgentTokenById } from '../gateway/tokens.ts';
import type { Logger } from '../logger.ts';
import type { AgentPolicy, Policy } from '../policy/types.ts';
import type { Db } from '../store/db.ts';
import { EgressProxy, GatewayBridge } from './egress.ts';
import { checkSandboxTools, inspectPath, WARDEN_INSTALL_DIR } from './preflight.ts';
import {
  GATEWAY_SOCKET,
  MCP_CONFIG_FILE,
  PROXY_SOCKET,
  SANDBOX_HOME,
  SANDBOX_RUN_DIR,
  bwrapArgs,
  expandHome,
  expandRunArgs,
  mcpClientConfig,
  sandboxEnv,
} from './profile.ts';

export interface RunAgentOptions {
  agent: string;
  command: readonly string[];
  /** Default: the current directory. */
  workspace?: string | undefined;
  policy: Policy;
  db: Db;
  audit: AuditSink;
  /** Started by the run, so a halt from any process reaches it. */
  killSwitch: KillSwitch;
  /** Where Warden's gateway listens on the host. */
  gateway: { host: string; port: number };
  /** Warden's own files, hidden from the agent. */
  wardenFiles: readonly string[];
  /** The host environment the allowlist is taken from. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  clock?: Clock | undefined;
  /** How often refused destinations are written as one aggregated audit row. Default 5 s. */
  egressFlushMs?: number | undefined;
  /** Stop on these signals to `warden run` itself (Ctrl-C); runs inside another process (a drill) pass []. */
  signals?: readonly NodeJS.Signals[] | undefined;
  /** Stops the run (as interrupted), for a caller that started it in-process. */
  abort?: AbortSignal | undefined;
}

export interface RunOutcome {
  runId: string;
  exitCode: number;
  cause: RunCause;
}

/** Destinations listed by name in one `sandbox.egress_denied` row; the rest are counted as `(others)`. */
const MAX_DENIED_LISTED = 100;

function haltApplies(state: HaltState, agent: string): boolean {
  return state.scope === 'org' || state.agent === agent;
}

function describeHalt(state: HaltState): string {
  return `${state.scope === 'org' ? 'the org is halted' : `agent ${state.agent} is halted`}${state.reason ? ` (${state.reason})` : ''}`;
}

/** How often a stop that came before the agent's command was forked looks for it. */
const COMMAND_POLL_MS = 10;

/** Host pids of the sandbox init's children: the agent's command (bwrap's own init is pid 1 inside and ignores SIGTERM). */
function childrenOf(pid: number): number[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // The init is gone, or this kernel has no /proc/…/children (CONFIG_PROC_CHILDREN).
    return undefined;
  }
}

function signalNumber(signal: NodeJS.Signals): number {
  return osConstants.signals[signal] ?? 1;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs on this host whose process is gone but whose row is open: their
 * `warden run` was killed before it could close them. Closed as failed, and
 * their tokens revoked, so a crashed supervisor leaves no live credential.
 */
async function closeStaleRuns(runs: RunStore, options: RunAgentOptions, clock: Clock): Promise<void> {
  const host = hostname();
  for (const stale of runs.open()) {
    if (stale.host !== host || stale.pid === null || processAlive(stale.pid)) continue;
    if (!runs.finish(stale.id, { exitCode: null, signal: null, cause: 'failed' })) continue;
    revokeAgentTokenById(options.db, stale.tokenId, { clock });
    await options.audit.append({
      event: 'run.stopped',
      agent: stale.agent,
      decision: 'failed',
      reason: 'its warden run stopped without closing it (process gone); its token is revoked',
      detail: { run: stale.id, pid: stale.pid },
    });
    options.logger.warn({ run: stale.id, agent: stale.agent }, 'closed a run whose process is gone');
  }
}

/** Checks that need no side effect, in the order a person would fix them. */
function prepare(options: RunAgentOptions): { agent: AgentPolicy; workspace: string } {
  const agent = options.policy.agents[options.agent];
  if (!agent) {
    const known = Object.keys(options.policy.agents).sort().join(', ') || '(none)';
    throw new WardenError(
      'NOT_FOUND',
      `--agent: "${options.agent}" is not defined in the policy; known agents: ${known}`,
    );
  }
  if (options.command.length === 0)
    throw new WardenError(
      'INVALID_INPUT',
      'command: give the agent command after --, e.g. warden run --agent NAME -- CMD',
    );
  const workspace = resolve(options.workspace ?? process.cwd());
  const seen = inspectPath(workspace);
  if (seen.kind !== 'dir') throw new WardenError('INVALID_INPUT', `--workspace: ${workspace} is not a directory`);
  if (seen.real === '/')
    throw new WardenError(
      'INVALID_INPUT',
      '--workspace: / would make the whole host writable; give the agent a directory of its own',
    );
  const home = options.env.HOME ?? '/root';
  for (const [i, path] of agent.sandbox.write.entries()) {
    if (inspectPath(expandHome(path, home)).kind === 'missing')
      throw new WardenError(
        'INVALID_INPUT',
        `sandbox.filesystem.write[${i}]: ${path} does not exist (create it, or remove it from the policy)`,
      );
  }
  return { agent, workspace };
}

/**
 * `warden run`: starts the agent's command as that agent, sandboxed as its
 * policy says, and supervises it until it ends. Resolves with the command's
 * exit code; refuses (throws) before writing anything when the sandbox cannot
 * be built or the agent is halted.
 */
export async function runAgent(options: RunAgentOptions): Promise<RunOutcome> {
  const clock = options.clock ?? systemClock;
  const { logger } = options;
  const { agent, workspace } = prepare(options);
  const sandboxed = agent.sandbox.mode === 'isolated';
  const tools = sandboxed ? checkSandboxTools(options.env) : undefined;
  const halted = options.killSwitch.check(agent.name);
  if (halted)
    throw new WardenError('HALTED', `${describeHalt(halted)}: a run cannot start until it is resumed`, {
      details: { agent: agent.name },
    });

  const runDir = mkdtempSync(join(tmpdir(), 'warden-run-'));
  chmodSync(runDir, 0o700);
  const shareDir = join(runDir, 'share');
  const homeDir = join(runDir, 'home');
  const tmpDir = join(runDir, 'tmp');
  for (const dir of [shareDir, homeDir, tmpDir]) mkdirSync(dir, { mode: 0o700 });

  const cleanups: Array<() => Promise<void> | void> = [];
  // Refused destinations, written as one row per flush so a retry loop cannot flood the trail.
  const denied = new Map<string, { count: number; why: string }>();
  const gatewayHost =
    options.gateway.host === '0.0.0.0' || options.gateway.host === '::' ? '127.0.0.1' : options.gateway.host;
  const proxyPort = options.gateway.port === 3128 ? 3129 : 3128;
  // The sandbox's doors first: if they cannot open, the run is refused with nothing written.
  if (tools) {
    try {
      const proxy = new EgressProxy({
        allow: agent.sandbox.networkAllow,
        logger,
        onDenied: (destination, why) => {
          // The agent picks the names: past a hundred per flush they are counted, not listed.
          const key = denied.has(destination) || denied.size < MAX_DENIED_LISTED ? destination : '(others)';
          const seen = denied.get(key);
          denied.set(key, { count: (seen?.count ?? 0) + 1, why: key === destination ? why : 'not listed' });
          logger.warn({ agent: agent.name, destination, why }, 'sandbox refused egress');
        },
      });
      await proxy.listen(join(shareDir, PROXY_SOCKET));
      cleanups.push(() => proxy.close());
      const bridge = new GatewayBridge({ host: gatewayHost, port: options.gateway.port });
      await bridge.listen(join(shareDir, GATEWAY_SOCKET));
      cleanups.push(() => bridge.close());
    } catch (err) {
      for (const cleanup of cleanups.reverse()) await cleanup();
      rmSync(runDir, { recursive: true, force: true });
      throw new WardenError(
        'SANDBOX_UNAVAILABLE',
        `the sandbox's egress proxy could not start: ${describeError(err)}`,
        {
          cause: err,
        },
      );
    }
  }

  const runs = new RunStore(options.db, { clock });
  await closeStaleRuns(runs, options, clock);
  const { token, id: tokenId } = issueAgentToken(options.db, agent.name, { clock, policy: options.policy });
  const run = runs.start({
    agent: agent.name,
    host: hostname(),
    command: options.command,
    workspace,
    sandboxed,
    tokenId,
  });
  const startedAt = clock.now();
  let cause: RunCause = 'exited';

  const flushDenied = async (): Promise<void> => {
    if (denied.size === 0) return;
    const destinations = Object.fromEntries([...denied].map(([dest, d]) => [dest, d.count]));
    const count = [...denied.values()].reduce((sum, d) => sum + d.count, 0);
    const reason = [...denied].map(([dest, d]) => `${dest} ×${d.count} (${d.why})`).join(', ');
    denied.clear();
    await options.audit.append({
      event: 'sandbox.egress_denied',
      agent: agent.name,
      decision: 'deny',
      reason: `sandbox refused egress: ${reason}`,
      detail: { run: run.id, destinations, count },
    });
  };

  try {
    await options.audit.append({
      event: 'run.started',
      agent: agent.name,
      decision: 'started',
      reason: sandboxed ? 'sandboxed' : 'unsandboxed (sandbox: none)',
      detail: { run: run.id, command: options.command, workspace, host: run.host, sandboxed },
    });

    const innerUrl = sandboxed
      ? `http://127.0.0.1:${options.gateway.port}/mcp`
      : `http://${gatewayHost.includes(':') ? `[${gatewayHost}]` : gatewayHost}:${options.gateway.port}/mcp`;
    const mcpConfigHost = join(shareDir, MCP_CONFIG_FILE);
    writeFileSync(mcpConfigHost, mcpClientConfig(innerUrl, token), { mode: 0o600 });

    let child: ChildProcess;
    if (tools) {
      const flushTimer = clock.setInterval(() => {
        flushDenied().catch((err: unknown) =>
          logger.error({ err: describeError(err) }, 'could not audit refused egress'),
        );
      }, options.egressFlushMs ?? 5_000);
      cleanups.push(() => clock.clearInterval(flushTimer));

      const args = bwrapArgs(
        {
          sandbox: agent.sandbox,
          workspace,
          runDir: shareDir,
          homeDir,
          tmpDir,
          hostHome: options.env.HOME ?? '/root',
          wardenFiles: options.wardenFiles,
          gatewayPort: options.gateway.port,
          proxyPort,
          inspect: inspectPath,
          socat: tools.socat,
          readable: [WARDEN_INSTALL_DIR],
        },
        expandRunArgs(options.command, { mcpConfig: `${SANDBOX_RUN_DIR}/${MCP_CONFIG_FILE}`, url: innerUrl }),
      );
      const env = sandboxEnv({
        sandbox: agent.sandbox,
        host: options.env,
        wardenUrl: innerUrl,
        token,
        mcpConfigPath: `${SANDBOX_RUN_DIR}/${MCP_CONFIG_FILE}`,
        proxyPort,
        tmp: '/tmp',
        home: SANDBOX_HOME,
      });
      // Its own process group: Ctrl-C reaches `warden run`, which stops the agent with the grace.
      // setpriv: bwrap's --die-with-parent ties the sandbox to bwrap, and this ties bwrap to us,
      // so even a SIGKILLed `warden run` takes its sandbox with it.
      child = spawn(tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.bwrap, ...args], {
        env,
        // fd 3: bwrap's info (the sandbox's pid); fd 4: the sandbox's lifeline (see profile.ts).
        stdio: ['inherit', 'inherit', 'inherit', 'pipe', 'pipe'],
        detached: true,
      });
    } else {
      logger.warn(
        { agent: agent.name },
        'sandbox: none: the agent runs with the host’s files, credentials and network',
      );
      const argv = expandRunArgs(options.command, { mcpConfig: mcpConfigHost, url: innerUrl });
      child = spawn(argv[0]!, argv.slice(1), {
        cwd: workspace,
        env: {
          ...options.env,
          WARDEN_URL: innerUrl,
          WARDEN_AGENT_TOKEN: token,
          WARDEN_MCP_CONFIG: mcpConfigHost,
        },
        stdio: 'inherit',
        detached: true,
      });
    }

    // Only once the child is gone: closing the lifeline earlier would kill the sandbox.
    cleanups.push(() => {
      child.stdio[3]?.destroy();
      child.stdio[4]?.destroy();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done, fail) => {
      child.once('error', fail);
      child.once('exit', (code, signal) => done({ code, signal }));
    });

    // The sandbox's init, from bwrap's --info-fd; the agent's command is its child.
    let sandboxInit: number | undefined;
    const info = child.stdio[3];
    if (info) {
      let text = '';
      info.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        const m = /"child-pid"\s*:\s*(\d+)/.exec(text);
        if (m && sandboxInit === undefined) {
          sandboxInit = Number(m[1]);
          runs.setPid(run.id, sandboxInit);
        }
      });
      info.on('error', () => undefined);
    } else if (child.pid !== undefined) {
      runs.setPid(run.id, child.pid);
    }

    let stopping = false;
    let killTimer: NodeJS.Timeout | undefined;
    let termTimer: NodeJS.Timeout | undefined;
    const kill = (): void => {
      if (sandboxInit !== undefined) {
        try {
          process.kill(sandboxInit, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const stop = (why: RunCause, signal: NodeJS.Signals = 'SIGTERM'): void => {
      if (stopping) return;
      stopping = true;
      cause = why;
      logger.info({ agent: agent.name, run: run.id, cause: why, signal }, 'stopping the run');
      killTimer = clock.setTimeout(kill, agent.sandbox.stopGraceMs);
      if (!sandboxed) {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, signal);
        } catch {
          // It ended on its own meanwhile.
        }
        return;
      }
      // bwrap reports its pid before the agent's command is forked inside: a stop
      // in that window waits for the command and signals it, so the agent gets its
      // grace whenever the stop came (the kill timer above still bounds the wait).
      const signalCommand = (): void => {
        const targets = sandboxInit !== undefined ? childrenOf(sandboxInit) : [];
        if (targets === undefined) {
          // No way to reach the command (or nothing left to reach): the sandbox goes at once.
          termTimer = undefined;
          kill();
          return;
        }
        if (targets.length === 0) {
          termTimer = clock.setTimeout(signalCommand, COMMAND_POLL_MS);
          return;
        }
        termTimer = undefined;
        for (const pid of targets) {
          try {
            process.kill(pid, signal);
          } catch {
            // It ended on its own meanwhile.
          }
        }
      };
      signalCommand();
    };
    cleanups.push(() => {
      if (killTimer) clock.clearTimeout(killTimer);
      if (termTimer) clock.clearTimeout(termTimer);
    });

    const unsubscribe = options.killSwitch.onHalt((state) => {
      if (haltApplies(state, agent.name)) stop('halted');
    });
    cleanups.push(unsubscribe);
    options.killSwitch.start();
    // A halt between the check above and the subscription must still stop the run.
    if (options.killSwitch.check(agent.name)) stop('halted');

    const onAbort = (): void => stop('interrupted');
    if (options.abort?.aborted) onAbort();
    options.abort?.addEventListener('abort', onAbort);
    cleanups.push(() => options.abort?.removeEventListener('abort', onAbort));

    for (const signal of options.signals ?? (['SIGINT', 'SIGTERM', 'SIGHUP'] as const)) {
      const onSignal = (): void => stop('interrupted', signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
      process.on(signal, onSignal);
      cleanups.push(() => {
        process.off(signal, onSignal);
      });
    }

    const end = await exited;
    const exitCode = end.code ?? 128 + signalNumber(end.signal ?? 'SIGKILL');
    runs.finish(run.id, { exitCode, signal: end.signal, cause });
    revokeAgentTokenById(options.db, tokenId, { clock });
    await flushDenied();
    await options.audit.append({
      event: 'run.stopped',
      agent: agent.name,
      decision: cause,
      reason: `${cause === 'exited' ? 'the command exited' : cause === 'halted' ? 'stopped by the kill switch' : 'interrupted'} with ${exitCode}`,
      durationMs: clock.now() - startedAt,
      detail: { run: run.id, exit_code: exitCode, signal: end.signal },
    });
    return { runId: run.id, exitCode, cause };
  } catch (err) {
    cause = 'failed';
    runs.finish(run.id, { exitCode: null, signal: null, cause });
    revokeAgentTokenById(options.db, tokenId, { clock });
    await options.audit
      .append({
        event: 'run.stopped',
        agent: agent.name,
        decision: 'failed',
        reason: `warden run failed: ${describeError(err)}`,
        detail: { run: run.id },
      })
      .catch(() => undefined);
    throw err;
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        logger.warn({ err: describeError(err) }, 'run cleanup failed');
      }
    }
    rmSync(runDir, { recursive: true, force: true });
  }
}
