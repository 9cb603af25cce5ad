import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ApprovalService } from '../src/approvals/service.ts';
import { AuditLog } from '../src/audit/log.ts';
import { LogAlertSink } from '../src/control/alerts.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { createAgentToken, startGateway } from '../src/gateway/index.ts';
import { upstreamFetch } from '../src/gateway/upstream.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/load.ts';
import { openDb } from '../src/store/db.ts';

/**
 * Governed vs direct, for one allowed tool call with full audit.
 *
 * Latency (sequential, one call in flight, so it measures the path):
 *   A. stdio upstream:  direct = SDK Client → stdio → server-everything
 *                       governed = SDK Client → Streamable HTTP → Warden → stdio → server-everything
 *   B. HTTP upstream:   direct = SDK Client → Streamable HTTP → echo-http fixture (child process)
 *                       governed = SDK Client → Streamable HTTP → Warden → Streamable HTTP → the same
 *   A includes the cost of HTTP itself (the agent-facing transport) against a
 *   pipe; B compares like with like, so it isolates what Warden adds.
 * Throughput: agents in a worker thread (agents are other processes in real
 * life), 16 sessions, calls/s with every call's two audit rows committed. The
 * gateway's own event-loop time per call is printed too, and the run is
 * repeated with `synchronous = NORMAL` as a diagnostic of how much of the cost
 * is the fsync per commit (Warden ships with FULL).
 */

const ROOT = join(import.meta.dirname, '..');
const EVERYTHING = [join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'stdio'];
const ECHO_HTTP = ['--import', 'tsx', join(ROOT, 'test/fixtures/echo-http-server.ts')];
const ARGS = { message: 'hello from the bench' };

// The SDK hands undici one long-lived AbortSignal for every request, and undici
// keeps a listener per request until GC (MaxListenersExceededWarning after
// 1,500 calls). The gateway's own fetch wrapper gives each request its own.
const clientFetch = upstreamFetch(Number.POSITIVE_INFINITY, () => {});

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function line(label: string, text: string): void {
  process.stdout.write(`gateway ${label.padEnd(40)} ${text}\n`);
}

async function latency(label: string, client: Client, name: string, n: number): Promise<{ p50: number; p99: number }> {
  for (let i = 0; i < 300; i++) await client.callTool({ name, arguments: ARGS });
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const res = await client.callTool({ name, arguments: ARGS });
    times.push(performance.now() - t0);
    if (res.isError) throw new Error(`${label}: call failed: ${JSON.stringify(res.content)}`);
  }
  times.sort((a, b) => a - b);
  const out = { p50: pct(times, 50), p99: pct(times, 99) };
  line(label, `p50 ${out.p50.toFixed(3).padStart(6)} ms   p99 ${out.p99.toFixed(3).padStart(6)} ms   (${n} sequential calls)`);
  return out;
}

function ratio(label: string, governed: { p50: number; p99: number }, direct: { p50: number; p99: number }): void {
  line(label, `p50 ${(governed.p50 / direct.p50).toFixed(2)}x   p99 ${(governed.p99 / direct.p99).toFixed(2)}x   (goal p50 ≤ 2.0x)`);
}

async function sameThreadThroughput(label: string, clients: Client[], name: string, perClient: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < perClient; i++) {
        const res = await c.callTool({ name, arguments: ARGS });
        if (res.isError) throw new Error(`${label}: call failed`);
      }
    }),
  );
  const ms = performance.now() - t0;
  const total = clients.length * perClient;
  const rate = (total / ms) * 1000;
  line(label, `${total} calls in ${ms.toFixed(0)} ms = ${Math.round(rate).toLocaleString('en-US')} calls/s`);
  return rate;
}

interface LoadJob {
  role: 'gateway-load';
  url: string;
  token: string;
  sessions: number;
  perSession: number;
}

async function workerThroughput(label: string, job: Omit<LoadJob, 'role'>): Promise<number> {
  // Workers do not inherit tsx's loader: register it, then load this file.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: { role: 'gateway-load', ...job } satisfies LoadJob });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  await next();
  const finished = next();
  const t0 = performance.now();
  const elu0 = performance.eventLoopUtilization();
  worker.postMessage('go');
  const ok = (await finished) as number;
  const ms = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  await worker.terminate();
  const expected = job.sessions * job.perSession;
  if (ok !== expected) throw new Error(`${label}: ${expected - ok} of ${expected} calls failed`);
  const rate = (ok / ms) * 1000;
  line(label, `${ok} calls in ${ms.toFixed(0)} ms = ${Math.round(rate).toLocaleString('en-US')} calls/s (${job.sessions} sessions)`);
  // What one core would sustain if the gateway had it alone (the machine's other core runs the agents and the upstream).
  const busyUs = (elu.active * 1000) / ok;
  line(`  gateway event loop per call`, `${busyUs.toFixed(0)} µs busy (loop ${(elu.utilization * 100).toFixed(0)}% busy) ⇒ ≈ ${Math.round(1e6 / busyUs).toLocaleString('en-US')} calls/s per core`);
  return rate;
}

async function loadWorker(job: LoadJob): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: job.sessions }, async () => {
      const c = new Client({ name: 'bench-load', version: '1' });
      await c.connect(new StreamableHTTPClientTransport(new URL(job.url), { requestInit: { headers: { Authorization: `Bearer ${job.token}` } }, fetch: clientFetch }));
      return c;
    }),
  );
  parentPort!.postMessage('ready');
  await new Promise((resolve) => parentPort!.once('message', resolve));
  let ok = 0;
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < job.perSession; i++) {
        const res = await c.callTool({ name: 'everything__echo', arguments: ARGS });
        if (!res.isError) ok++;
      }
    }),
  );
  parentPort!.postMessage(ok);
  await Promise.allSettled(clients.map((c) => c.close()));
}

async function startEchoHttp(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ECHO_HTTP, { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`echo-http fixture exited with ${code}`)));
  });
  return { url: (JSON.parse(first) as { url: string }).url, child };
}

export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-bench-gw-'));
  const db = openDb(join(dir, 'warden.db'));
  const logger = silentLogger();
  const echo = await startEchoHttp();
  const policy = parsePolicy(
    `
servers:
  everything:
    command: ${JSON.stringify(process.execPath)}
    args: ${JSON.stringify(EVERYTHING)}
    tools:
      echo: { scope: read }
  web:
    url: ${echo.url}
    tools:
      echo: { scope: read }
agents:
  - agent: bench-agent
    mcp_scopes: { everything: [read], web: [read] }
`,
    'bench-policy.yml',
    {},
  );
  const audit = new AuditLog(db, { logger });
  const killSwitch = new KillSwitch({ db, audit, logger });
  killSwitch.start();
  const approvals = new ApprovalService({ db, audit, logger, policy });
  const gateway = await startGateway({ policy, db, audit, approvals, halt: killSwitch, alerts: new LogAlertSink(logger), logger, port: 0, maxSessionsPerAgent: 64 });
  const token = createAgentToken(db, 'bench-agent', { policy });
  const clients: Client[] = [];
  const connect = async (url: string, headers: Record<string, string>) => {
    const c = new Client({ name: 'bench', version: '1' });
    await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers }, fetch: clientFetch }));
    clients.push(c);
    return c;
  };
  const governed = () => connect(gateway.url, { Authorization: `Bearer ${token}` });
  const countCompleted = () => (db.prepare("SELECT count(*) AS n FROM audit WHERE event = 'call.completed'").get() as { n: number }).n;
  const settle = async () => {
    await gateway.flushAudit();
    await audit.flush();
  };
  try {
    const directStdio = new Client({ name: 'bench-direct', version: '1' });
    await directStdio.connect(new StdioClientTransport({ command: process.execPath, args: EVERYTHING, stderr: 'ignore' }));
    clients.push(directStdio);
    const directHttp = await connect(echo.url, {});
    const g = await governed();
    const n = 2_000;

    const a1 = await latency('A direct  (stdio)', directStdio, 'echo', n);
    const a2 = await latency('A governed (HTTP → Warden → stdio)', g, 'everything__echo', n);
    ratio('A ratio governed/direct', a2, a1);
    // Diagnostic: the same path when call.completed shares the next commit instead of being awaited.
    const lingering = await startGateway({ policy, db, audit, approvals, halt: killSwitch, alerts: new LogAlertSink(logger), logger, port: 0, awaitCompletedAudit: false });
    try {
      const gl = await connect(lingering.url, { Authorization: `Bearer ${token}` });
      const a3 = await latency('A governed, completion lingering', gl, 'everything__echo', n);
      ratio('A ratio (completion lingering)', a3, a1);
      await gl.close();
    } finally {
      await lingering.close();
    }
    const b1 = await latency('B direct  (HTTP)', directHttp, 'echo', n);
    const b2 = await latency('B governed (HTTP → Warden → HTTP)', g, 'web__echo', n);
    ratio('B ratio governed/direct', b2, b1);

    await settle();
    const before = countCompleted();
    const job = { url: gateway.url, token, sessions: 16, perSession: 500 };
    const rate = await workerThroughput('governed throughput (synchronous=FULL)', job);
    await settle();
    const audited = countCompleted() - before;
    if (audited !== job.sessions * job.perSession) throw new Error(`expected ${job.sessions * job.perSession} call.completed rows, found ${audited}`);
    line('audited calls/s', `${Math.round(rate).toLocaleString('en-US')} (goal ≥ 2,000; each call's call.decided and call.completed rows committed)`);

    db.pragma('synchronous = NORMAL');
    await workerThroughput('diagnostic: same with synchronous=NORMAL', job);
    db.pragma('synchronous = FULL');

    await sameThreadThroughput('direct throughput (stdio, 1 client)', [directStdio], 'echo', 4_000);
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    await gateway.close();
    await approvals.close();
    killSwitch.stop();
    await audit.close();
    db.close();
    echo.child.stdin?.end();
    echo.child.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (!isMainThread && (workerData as LoadJob | undefined)?.role === 'gateway-load') await loadWorker(workerData as LoadJob);
else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
