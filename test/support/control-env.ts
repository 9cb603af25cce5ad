/**
 * A real Warden for control tests: SQLite file in a temp dir, audit log, kill
 * switch, approval service and the MCP gateway on loopback, with the
 * slow-server fixture as upstream. Nothing here is mocked.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ApprovalService } from '../../src/approvals/index.ts';
import { AuditLog } from '../../src/audit/log.ts';
import type { Clock } from '../../src/clock.ts';
import { MemoryAlertSink } from '../../src/control/alerts.ts';
import { KillSwitch } from '../../src/control/kill-switch.ts';
import { startGateway, createAgentToken, type GatewayHandle } from '../../src/gateway/index.ts';
import { silentLogger } from '../../src/logger.ts';
import { parsePolicy } from '../../src/policy/index.ts';
import type { Policy } from '../../src/policy/types.ts';
import { openDb, type Db } from '../../src/store/db.ts';

export const SLOW_SERVER = fileURLToPath(new URL('../fixtures/slow-server.ts', import.meta.url));

/**
 * Canary and a worker agent on the slow fixture; `extra` is appended under
 * agents, `controlExtra` (YAML lines such as `auditors: [U0AUDITOR]`) under control.
 */
export function controlPolicyText(extra = '', controlExtra = ''): string {
  const more = controlExtra
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => `  ${l.trim()}`)
    .join('\n');
  return `
servers:
  slow:
    command: node
    args: ["--import", "tsx", ${JSON.stringify(SLOW_SERVER)}]
    tools:
      sleep: { scope: read }
      hang: { scope: read }
      cancellations: { scope: read }
agents:
  - agent: warden-canary
    owner: U0CANARY
    mcp_scopes: { slow: [read] }
  - agent: worker
    owner: U0OWNER
    channel: C0OWNER
    review_by: 2026-01-10
    mcp_scopes: { slow: [read] }
${extra}
control:
  halters: [U0ONCALL, U0LEAD]
  resumers: [U0LEAD]
${more}
  oncall_channel: C0ONCALL
  compliance_channel: C0COMPLY
  drill:
    schedule: "0 9 1 * *"
    canary_agent: warden-canary
    overdue_after_days: 35
`;
}

export interface WardenEnv {
  dir: string;
  dbPath: string;
  policyPath: string;
  db: Db;
  policy: Policy;
  audit: AuditLog;
  ks: KillSwitch;
  approvals: ApprovalService;
  alerts: MemoryAlertSink;
  gateway: GatewayHandle;
  close(): Promise<void>;
}

export async function startWardenEnv(
  opts: {
    policyText?: string;
    clock?: Clock;
    startKillSwitch?: boolean;
    /** A postgres:// URL to run on PostgreSQL (test/support/postgres.ts); default a SQLite file in the temp dir. */
    store?: string | undefined;
  } = {},
): Promise<WardenEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-control-'));
  const dbPath = opts.store ?? join(dir, 'warden.db');
  const policyPath = join(dir, 'policy.yml');
  const text = opts.policyText ?? controlPolicyText();
  writeFileSync(policyPath, text);
  const policy = parsePolicy(text, policyPath);
  const db = openDb(dbPath);
  const logger = silentLogger();
  const audit = new AuditLog(db, { clock: opts.clock });
  const ks = new KillSwitch({ db, audit, clock: opts.clock });
  if (opts.startKillSwitch !== false) ks.start();
  const approvals = new ApprovalService({ db, audit, policy, clock: opts.clock, logger });
  const alerts = new MemoryAlertSink();
  const gateway = await startGateway({
    policy,
    db,
    audit,
    approvals,
    halt: ks,
    alerts,
    logger,
    clock: opts.clock,
    host: '127.0.0.1',
    port: 0,
  });
  return {
    dir,
    dbPath,
    policyPath,
    db,
    policy,
    audit,
    ks,
    approvals,
    alerts,
    gateway,
    async close() {
      await gateway.close();
      ks.stop();
      await audit.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** An agent as a real MCP client over Streamable HTTP with a fresh token. */
export async function connectAgent(
  db: Db,
  url: string,
  agent: string,
): Promise<{
  client: Client;
  call(name: string, args?: Record<string, unknown>): Promise<{ isError: boolean; text: string }>;
  close(): Promise<void>;
}> {
  const token = createAgentToken(db, agent);
  const client = new Client({ name: `test-${agent}`, version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
  );
  return {
    client,
    async call(name, args = {}) {
      const res = await client.callTool({ name, arguments: args });
      const text = (res.content as { type: string; text?: string }[]).map((c) => c.text ?? '').join(' ');
      return { isError: res.isError === true, text };
    },
    close: () => client.close(),
  };
}

/** The slow fixture's own counters: proof of what reached (or was cancelled at) the upstream. */
export async function upstreamCounters(agent: {
  call(name: string): Promise<{ text: string }>;
}): Promise<{ cancelled: number; completed: number }> {
  const r = await agent.call('slow__cancellations');
  return JSON.parse(r.text) as { cancelled: number; completed: number };
}
