/**
 * Warden on PostgreSQL beside the same figures on SQLite, in the same run:
 * - audit appends per second (64 concurrent callers, group commit);
 * - governed throughput through one replica, and two replicas (two gateway
 *   processes on one database, one load generator each) sharing the work;
 * - cross-replica halt latency (halt in one process → refused by a gateway
 *   in another), p50/p99 over HALT_BENCH_ITERATIONS halts (default 40).
 * The PostgreSQL server is a throwaway one started here, durable (fsync on,
 * synchronous_commit on) so it compares with SQLite's synchronous=FULL.
 *   npm run bench -- postgres
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { ApprovalService } from '../src/approvals/service.ts';
import { AuditLog, verifyChain, type AuditEntry } from '../src/audit/index.ts';
import { LogAlertSink } from '../src/control/alerts.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, startGateway } from '../src/gateway/index.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/load.ts';
import { openDb } from '../src/store/db.ts';
import { spawnChildGateway } from '../test/support/control-child.ts';
import { startPgServer } from '../test/support/pg-server.ts';
import { haltLatency, haltLine } from './halt.ts';

const ROOT = join(import.meta.dirname, '..');
const EVERYTHING = [join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'stdio'];
const LEAN_LOAD = join(ROOT, 'bench/load/mcp-http-load.ts');

function out(label: string, text: string): void {
  process.stdout.write(`postgres ${label.padEnd(44)} ${text}\n`);
}

/** A fresh empty database on the bench server (a schema of its own, as the tests do). */
async function freshDb(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.searchParams.set('options', `-c search_path=${name}`);
  return url.toString();
}

function entry(i: number): AuditEntry {
  return {
    event: 'call.decided',
    callId: `call-${i}`,
    agent: 'support-triage',
    server: 'tickets',
    tool: 'read_ticket',
    args: { id: `T-${i}`, note: 'customer asked about invoice 42' },
    decision: 'allow',
    reason: 'tickets:read granted',
    durationMs: 3,
  };
}

async function auditAppends(location: string): Promise<number> {
  const callers = 64;
  const perCaller = 200;
  const db = openDb(location);
  try {
    const log = new AuditLog(db);
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: callers }, async (_, c) => {
        for (let i = 0; i < perCaller; i++) await log.append(entry(c * perCaller + i));
      }),
    );
    await log.flush();
    const ms = performance.now() - t0;
    await log.close();
    const report = verifyChain(db);
    if (!report.ok || report.count !== callers * perCaller) throw new Error(`audit chain not intact on ${location}`);
    return ((callers * perCaller) / ms) * 1000;
  } finally {
    db.close();
  }
}

const POLICY = `
servers:
  everything:
    command: ${JSON.stringify(process.execPath)}
    args: ${JSON.stringify(EVERYTHING)}
    tools:
      echo: { scope: read }
agents:
  - agent: bench-agent
    mcp_scopes: { everything: [read] }
`;

interface LoadResult {
  ok: number;
  ms: number;
  firstError?: string;
}

/** One lean load generator per URL, started together once all are warm; calls/s over the slowest. */
async function load(urls: string[], token: string, sessions: number, perSession: number): Promise<number> {
  const children = urls.map((url) =>
    spawn(
      process.execPath,
      ['--import', 'tsx', LEAN_LOAD, url, token, String(sessions), String(perSession), 'everything__echo'],
      { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
    ),
  );
  try {
    const readers = children.map((child) => createInterface({ input: child.stdout! })[Symbol.asyncIterator]());
    const next = async (k: number) => {
      const r = await readers[k]!.next();
      if (r.done) throw new Error('a load generator exited early');
      return JSON.parse(r.value) as LoadResult;
    };
    await Promise.all(children.map((_, k) => next(k)));
    const t0 = performance.now();
    for (const child of children) child.stdin!.write('go\n');
    const results = await Promise.all(children.map((_, k) => next(k)));
    const ms = performance.now() - t0;
    const ok = results.reduce((sum, r) => sum + r.ok, 0);
    const expected = urls.length * sessions * perSession;
    if (ok !== expected) throw new Error(`${expected - ok} of ${expected} calls failed (${results[0]?.firstError})`);
    return (ok / ms) * 1000;
  } finally {
    for (const child of children) child.kill();
  }
}

/** Governed calls/s through `replicas` gateway processes on the one store at `location`. */
async function throughput(location: string, replicas: 1 | 2): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-pg-'));
  const logger = silentLogger();
  const policy = parsePolicy(POLICY, 'bench-policy.yml', {});
  const policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, POLICY);
  const db = openDb(location);
  const audit = new AuditLog(db, { logger });
  const killSwitch = new KillSwitch({ db, audit, logger });
  killSwitch.start();
  const approvals = new ApprovalService({ db, audit, logger, policy, cacheHeldCalls: true });
  const gateway = await startGateway({
    policy,
    db,
    audit,
    approvals,
    halt: killSwitch,
    alerts: new LogAlertSink(logger),
    logger,
    port: 0,
    maxSessionsPerAgent: 64,
  });
  const second = replicas === 2 ? await spawnChildGateway({ dbPath: location, policyPath }) : undefined;
  try {
    const token = createAgentToken(db, 'bench-agent', { policy });
    const urls = second ? [gateway.url, second.url] : [gateway.url];
    return await load(urls, token, 16 / urls.length, 8_000 / 16);
  } finally {
    await second?.stop();
    await gateway.close();
    await approvals.close();
    killSwitch.stop();
    await audit.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const rate = (n: number) => `${Math.round(n).toLocaleString('en-US').padStart(7)}/s`;

export async function run(): Promise<void> {
  const server = await startPgServer({ durable: true });
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-sqlite-'));
  let n = 0;
  const sqlite = () => join(dir, `warden-${n++}.db`);
  const postgres = () => freshDb(server.url, `bench_${n++}`);
  try {
    out(
      'audit appends (64 callers)',
      `sqlite ${rate(await auditAppends(sqlite()))}  postgres ${rate(await auditAppends(await postgres()))}`,
    );
    out(
      'governed calls, one replica',
      `sqlite ${rate(await throughput(sqlite(), 1))}  postgres ${rate(await throughput(await postgres(), 1))}  (goal ≥ 1,000 on postgres)`,
    );
    out(
      'governed calls, two replicas on one store',
      `sqlite ${rate(await throughput(sqlite(), 2))}  postgres ${rate(await throughput(await postgres(), 2))}`,
    );
    const onPg = await haltLatency(await postgres());
    process.stdout.write(haltLine('postgres halt → refused, other replica', onPg.cross));
    process.stdout.write(haltLine('postgres halt → refused, same replica', onPg.same));
    const onSqlite = await haltLatency();
    process.stdout.write(haltLine('sqlite halt → refused, other process', onSqlite.cross));
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
