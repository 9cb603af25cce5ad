import type { ApprovalGate } from '../approvals/types.ts';
import type { AuditSink } from '../audit/types.ts';
import { AuditReader } from '../audit/reader.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { AlertSink, HaltCheck } from '../control/types.ts';
import type { Logger } from '../logger.ts';
import { policyGetter } from '../policy/source.ts';
import type { Policy } from '../policy/types.ts';
import { pingDb, type Db } from '../store/db.ts';
import { healthReport } from './health.ts';
import { DEFAULT_ARGUMENT_LIMITS } from './arguments.ts';
import { DEFAULT_EDGE_LIMITS, HttpEdge, parseEdgeLimits, type EdgeLimits } from './http.ts';
import { PinStore, ToolPins } from './pins.ts';
import { GatewayPipeline, type AuditDurability } from './pipeline.ts';
import { TaskRegistry } from './tasks.ts';
import { TokenStore } from './tokens.ts';
import { UpstreamFailureAlerts } from './upstream-alerts.ts';
import { UpstreamManager, type StdioSandboxer } from './upstream.ts';

/** A PolicyStore, or anything else that hands out the policy in force. */
export interface PolicySourceLike {
  current(): Policy;
  onChange?(listener: (policy: Policy) => void): () => void;
}

export interface StartGatewayOptions {
  policy: PolicySourceLike | Policy;
  db: Db;
  audit: AuditSink;
  approvals: ApprovalGate;
  halt: HaltCheck;
  alerts: AlertSink;
  logger: Logger;
  clock?: Clock | undefined;
  /** Default 127.0.0.1: agents on this machine only. */
  host?: string | undefined;
  /** Default 0 (any free port); the CLI passes WARDEN_PORT. */
  port?: number | undefined;
  /** Extra Host header values accepted besides loopback (e.g. `warden.internal:8787`). */
  allowedHosts?: readonly string[] | undefined;
  /** Extra Origin values accepted besides loopback origins (exact match). */
  allowedOrigins?: readonly string[] | undefined;
  /** Start every upstream in the background at start-up (failures tolerated). Default true. */
  connectUpstreamsAtStart?: boolean | undefined;
  /** An idle session (no open request) is closed after this long. Default 30 min. */
  sessionIdleMs?: number | undefined;
  /** Default 32: opening more evicts the agent's longest-idle session. */
  maxSessionsPerAgent?: number | undefined;
  /** Largest accepted POST body. Default 4 MiB. */
  maxBodyBytes?: number | undefined;
  /** Connection caps and request timeouts at the HTTP edge; each unset field keeps DEFAULT_EDGE_LIMITS. */
  limits?: Partial<EdgeLimits> | undefined;
  /** How much of a call's record is on stable storage before each step (see PipelineOptions). Default 'fast'. */
  auditDurability?: AuditDurability | undefined;
  /**
   * Largest JSON text of one call's arguments, in bytes; larger calls are
   * refused. Default 64 KiB, the audit log's default cap on stored args, so
   * the trail always holds what was forwarded.
   */
  maxArgumentBytes?: number | undefined;
  /** The interval between polls suggested to clients of MCP tasks. Default 1 s. */
  taskPollMs?: number | undefined;
  /** How stdio servers with `sandbox:` are started (src/sandbox/); without it they are not started. */
  sandboxStdio?: StdioSandboxer | undefined;
}

export interface GatewayHandle {
  /** The MCP endpoint, e.g. http://127.0.0.1:8787/mcp */
  url: string;
  port: number;
  /**
   * Takes over the deferred held calls of Wardens found gone since start
   * (another replica whose lease expired), as start-up does. Returns how many.
   */
  resumeHeldCalls(): Promise<number>;
  close(): Promise<void>;
}

function isPolicySource(p: PolicySourceLike | Policy): p is PolicySourceLike {
  return typeof (p as PolicySourceLike).current === 'function';
}

/**
 * Starts the agent-facing MCP gateway (Streamable HTTP at /mcp). Resolves once
 * it listens; upstreams start in the background and a down one never stops it.
 */
export async function startGateway(options: StartGatewayOptions): Promise<GatewayHandle> {
  // Before anything starts, so a bad limit leaves nothing running.
  const limits = parseEdgeLimits({ ...DEFAULT_EDGE_LIMITS, ...options.limits });
  const source = options.policy;
  const policy = policyGetter(source);
  const clock = options.clock ?? systemClock;
  const logger = options.logger;
  // Built in dependency order: pins and failure alerts need nothing from the pipeline, the upstreams report to them.
  const pins = new ToolPins({
    store: new PinStore(options.db, { clock }),
    audit: options.audit,
    alerts: options.alerts,
    logger,
  });
  const failureAlerts = new UpstreamFailureAlerts(options.alerts, clock, logger);
  const upstreams = new UpstreamManager({
    policy,
    logger,
    clock,
    onCatalogue: (server, catalogue) => pins.handleCatalogue(server, catalogue),
    onFailure: (server, message) => failureAlerts.handle(server, message),
    sandboxStdio: options.sandboxStdio,
  });
  const trail = new AuditReader(options.db);
  const pipeline = new GatewayPipeline({
    policy,
    audit: options.audit,
    haltedSince: (agent, since) => trail.haltedSince(agent, since),
    approvals: options.approvals,
    halt: options.halt,
    alerts: options.alerts,
    upstreams,
    pins,
    logger,
    clock,
    auditDurability: options.auditDurability,
    argumentLimits: {
      ...DEFAULT_ARGUMENT_LIMITS,
      ...(options.maxArgumentBytes !== undefined ? { maxBytes: options.maxArgumentBytes } : {}),
    },
  });
  const offPolicy =
    isPolicySource(source) && source.onChange ? source.onChange(() => pipeline.notifyToolsChanged()) : undefined;
  const tasks = new TaskRegistry({ clock, pollIntervalMs: options.taskPollMs });
  const offHaltTasks = options.halt.onHalt((state) => tasks.discardFor(state));
  // One reader of agent_tokens: the edge authenticates with it, held calls taken over after a restart re-check with it.
  const tokens = new TokenStore(options.db, { cache: true, clock: options.clock });
  const edge = new HttpEdge({
    pipeline,
    tasks,
    tokens,
    audit: options.audit,
    alerts: options.alerts,
    logger,
    clock,
    host: options.host ?? '127.0.0.1',
    port: options.port ?? 0,
    allowedHosts: options.allowedHosts ?? [],
    allowedOrigins: options.allowedOrigins ?? [],
    sessionIdleMs: options.sessionIdleMs ?? 30 * 60_000,
    maxSessionsPerAgent: options.maxSessionsPerAgent ?? 32,
    maxBodyBytes: options.maxBodyBytes ?? 4 * 1024 * 1024,
    limits,
    health: () => healthReport(pingDb(options.db), upstreams.readiness()),
  });
  let listening: { url: string; port: number };
  try {
    // Before agents can connect: a held call a stopped Warden deferred is this one's to run, and to hand out.
    await pipeline.resumeHeldCalls((tokenId) => tokens.isLive(tokenId), tasks);
    listening = await edge.listen();
  } catch (err) {
    offHaltTasks();
    tokens.close();
    await pipeline.close();
    await upstreams.close();
    throw err;
  }
  if (options.connectUpstreamsAtStart !== false) upstreams.warm();
  logger.info({ url: listening.url }, 'gateway listening');
  let closing: Promise<void> | undefined;
  return {
    url: listening.url,
    port: listening.port,
    resumeHeldCalls: () =>
      closing ? Promise.resolve(0) : pipeline.resumeHeldCalls((tokenId) => tokens.isLive(tokenId), tasks),
    close: () =>
      (closing ??= (async () => {
        offPolicy?.();
        // Order matters: the pipeline answers the calls still running (the
        // refusal that says Warden is shutting down, bounded at 5 s) while
        // their connections are still open; only then does the edge close.
        edge.stopAccepting();
        await pipeline.close();
        await edge.close();
        offHaltTasks();
        tasks.close();
        tokens.close();
        await upstreams.close();
      })()),
  };
}
