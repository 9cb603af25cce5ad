import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, ClientCapabilities } from '@modelcontextprotocol/sdk/types.js';
import { ApprovalService } from '../../src/approvals/service.ts';
import { AuditLog, type AuditLogOptions } from '../../src/audit/log.ts';
import type { AuditRow, AuditSink } from '../../src/audit/types.ts';
import { MemoryAlertSink } from '../../src/control/alerts.ts';
import { KillSwitch } from '../../src/control/kill-switch.ts';
import { createAgentToken } from '../../src/gateway/tokens.ts';
import { startGateway, type GatewayHandle, type StartGatewayOptions } from '../../src/gateway/gateway.ts';
import { silentLogger, createLogger } from '../../src/logger.ts';
import { parsePolicy } from '../../src/policy/load.ts';
import type { Policy } from '../../src/policy/types.ts';
import { openDb, type Db } from '../../src/store/db.ts';
import { storeLocation } from './store-under-test.ts';

/**
 * Real parts on loopback: a SQLite file in a temp dir, the real AuditLog,
 * KillSwitch and ApprovalService, upstreams as child processes, and agents as
 * the SDK's own Client over Streamable HTTP.
 */

// The YAML builders live in policies.ts (no Warden imports); re-exported for the gateway tests.
export { EVERYTHING, FIXTURES, ROOT, everythingServer, fixtureServer } from './policies.ts';

export interface Harness {
  dir: string;
  db: Db;
  policy: Policy;
  audit: AuditLog;
  alerts: MemoryAlertSink;
  killSwitch: KillSwitch;
  approvals: ApprovalService;
  gateway: GatewayHandle;
  token(agent: string): string;
  connect(
    agent: string,
    opts?: { token?: string; onList?: () => void; capabilities?: ClientCapabilities },
  ): Promise<Client>;
  rows(filter?: { event?: string; callId?: string; agent?: string }): AuditRow[];
  /** Commits every audit row the gateway has produced so far. */
  flush(): Promise<void>;
  /** Restarts the gateway (same DB) with another policy; existing clients are closed. */
  restart(policyYaml?: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * `wrapAudit` puts something between the gateway and the real audit log
 * (e.g. a disk fault on sync); everything else keeps using the log itself.
 */
export async function startHarness(
  policyYaml: string,
  overrides: Partial<StartGatewayOptions> = {},
  auditOptions: AuditLogOptions = {},
  wrapAudit?: (audit: AuditLog) => AuditSink,
): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-gw-'));
  const db = openDb(await storeLocation(dir));
  const logger = process.env.GATEWAY_TEST_LOG ? createLogger({ level: process.env.GATEWAY_TEST_LOG }) : silentLogger();
  let policy = parsePolicy(policyYaml, 'test-policy.yml', process.env);
  const audit = new AuditLog(db, { logger, ...auditOptions });
  const alerts = new MemoryAlertSink();
  const killSwitch = new KillSwitch({ db, audit, logger, pollMs: 20 });
  killSwitch.start();
  const approvals = new ApprovalService({ db, audit, logger, policy: () => policy, pollMs: 20, waitingNotifyMs: 100 });
  const clients: Client[] = [];
  const tokens = new Map<string, string>();

  const boot = () =>
    startGateway({
      policy: { current: () => policy },
      db,
      audit: wrapAudit ? wrapAudit(audit) : audit,
      approvals,
      halt: killSwitch,
      alerts,
      logger,
      port: 0,
      ...overrides,
    });
  let gateway = await boot();

  const h: Harness = {
    dir,
    db,
    get policy() {
      return policy;
    },
    audit,
    alerts,
    killSwitch,
    approvals,
    get gateway() {
      return gateway;
    },
    token(agent) {
      let t = tokens.get(agent);
      if (!t) {
        t = createAgentToken(db, agent, { policy });
        tokens.set(agent, t);
      }
      return t;
    },
    async connect(agent, opts = {}) {
      const client = new Client(
        { name: `test-${agent}`, version: '1.0.0' },
        opts.capabilities ? { capabilities: opts.capabilities } : undefined,
      );
      const transport = new StreamableHTTPClientTransport(new URL(gateway.url), {
        requestInit: { headers: { Authorization: `Bearer ${opts.token ?? h.token(agent)}` } },
      });
      await client.connect(transport);
      clients.push(client);
      return client;
    },
    rows(filter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.event) {
        where.push('event = ?');
        params.push(filter.event);
      }
      if (filter.callId) {
        where.push('call_id = ?');
        params.push(filter.callId);
      }
      if (filter.agent) {
        where.push('agent = ?');
        params.push(filter.agent);
      }
      return db
        .prepare(`SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq`)
        .all(...params) as AuditRow[];
    },
    async flush() {
      await audit.flush();
    },
    async restart(policyYaml2) {
      await Promise.allSettled(clients.splice(0).map((c) => c.close()));
      await gateway.close();
      if (policyYaml2) policy = parsePolicy(policyYaml2, 'test-policy.yml', process.env);
      gateway = await boot();
    },
    async close() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await gateway.close();
      await approvals.close();
      killSwitch.stop();
      await audit.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return h;
}

export function textOf(result: unknown): string {
  const r = result as CallToolResult;
  return (r.content ?? []).map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
}

/** Polls until `fn` returns a truthy value (real timers; used for cross-process effects). */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
