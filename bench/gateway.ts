import { spawn, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
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
 *   pipe; B compares like with like, so it isolates what Warden adds. The
 *   paths compared are warmed alike, then take turns of TURN calls each, 40
 *   turns a path, so drift (JIT, a warmer upstream, a quieter machine) falls
 *   on both alike. Why 50: in turns of 500 the very same path measured 2–7%
 *   faster in a later turn than in an earlier one, enough to move a ratio
 *   near 2 by 0.1; taking turns call by call removes that but makes each
 *   call run in caches the other path has just used, which slowed the direct
 *   path by about 8% and so flattered the ratio (1.8× against 2.0×).
 * Throughput: 16 agent sessions, calls/s with every call's call.decided row
 * committed before forwarding and on stable storage before the answer, and
 * its call.completed row committed before the answer (checked by counting
 * rows afterwards). The agents are a lean HTTP load generator in its own
 * process (bench/load/), because the SDK's client costs more CPU per call
 * than the gateway and both share the machine's 2 cores; the same run with
 * SDK-client agents is printed too. The gateway's event-loop time and CPU
 * per call are printed alongside.
 */

const ROOT = join(import.meta.dirname, '..');
const EVERYTHING = [join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js'), 'stdio'];
const ECHO_HTTP = ['--import', 'tsx', join(ROOT, 'test/fixtures/echo-http-server.ts')];
const ARGS = { message: 'hello from the bench' };

/**
 * The agents' fetch: the global one (undici), as an agent using the SDK has,
 * for the direct and the governed path alike. The SDK hands it one
 * long-lived AbortSignal, on which undici leaves a listener per request until
 * GC: harmless for a bench, but Node would warn after the tenth.
 */
const clientFetch = (url: string | URL, init?: RequestInit): Promise<Response> => {
  if (init?.signal) setMaxListeners(0, init.signal);
  return fetch(url, init);
};

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function line(label: string, text: string): void {
  process.stdout.write(`gateway ${label.padEnd(40)} ${text}\n`);
}

interface Path {
  label: string;
  client: Client;
  tool: string;
}

interface Latency {
  p50: number;
  p99: number;
}

const WARM_CALLS = 300;
const TURN = 50;

/** `n` sequential calls per path, the paths taking turns of TURN calls after warming every path alike. The first path is the baseline. */
async function latencies(paths: Path[], n: number): Promise<Latency[]> {
  const call = async (p: Path) => {
    const res = await p.client.callTool({ name: p.tool, arguments: ARGS });
    if (res.isError) throw new Error(`${p.label}: call failed: ${JSON.stringify(res.content)}`);
  };
  for (const p of paths) for (let i = 0; i < WARM_CALLS; i++) await call(p);
  const samples = paths.map(() => [] as number[]);
  for (let done = 0; done < n; done += TURN) {
    for (const [k, p] of paths.entries()) {
      for (let i = 0; i < TURN; i++) {
        const t0 = performance.now();
        await call(p);
        samples[k]!.push(performance.now() - t0);
      }
    }
  }
  return paths.map((p, k) => {
    const times = samples[k]!.sort((a, b) => a - b);
    const out = { p50: pct(times, 50), p99: pct(times, 99) };
    line(
      p.label,
      `p50 ${out.p50.toFixed(3).padStart(6)} ms   p99 ${out.p99.toFixed(3).padStart(6)} ms   (${times.length} sequential calls)`,
    );
    return out;
  });
}

function ratio(label: string, governed: Latency, direct: Latency): void {
  line(
    label,
    `p50 ${(governed.p50 / direct.p50).toFixed(2)}x   p99 ${(governed.p99 / direct.p99).toFixed(2)}x   (goal p50 ≤ 2.0x)`,
  );
}

async function sameThreadThroughput(
  label: string,
  clients: Client[],
  name: string,
  perClient: number,
): Promise<number> {
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
  line(
    label,
    `${ok} calls in ${ms.toFixed(0)} ms = ${Math.round(rate).toLocaleString('en-US')} calls/s (${job.sessions} sessions)`,
  );
  // What one core would sustain if the gateway had it alone (the machine's other core runs the agents and the upstream).
  const busyUs = (elu.active * 1000) / ok;
  line(
    `  gateway event loop per call`,
    `${busyUs.toFixed(0)} µs busy (loop ${(elu.utilization * 100).toFixed(0)}% busy) ⇒ ≈ ${Math.round(1e6 / busyUs).toLocaleString('en-US')} calls/s per core`,
  );
  return rate;
}

const LEAN_LOAD = join(ROOT, 'bench/load/mcp-http-load.ts');

/** The lean load generator (bench/load/) in its own process; see the header for why. */
async function processThroughput(
  label: string,
  job: Omit<LoadJob, 'role'>,
  tool: string,
  onWarm: () => void,
): Promise<number> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', LEAN_LOAD, job.url, job.token, String(job.sessions), String(job.perSession), tool],
    {
      cwd: ROOT,
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  try {
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const next = async () => {
      const r = await lines.next();
      if (r.done) throw new Error(`${label}: the load generator exited early`);
      return JSON.parse(r.value) as {
        ready?: true;
        ok: number;
        failed: number;
        ms: number;
        cpuUs: number;
        firstError?: string;
      };
    };
    await next();
    onWarm();
    const elu0 = performance.eventLoopUtilization();
    const cpu0 = process.cpuUsage();
    child.stdin!.write('go\n');
    const r = await next();
    const elu = performance.eventLoopUtilization(elu0);
    const cpu = process.cpuUsage(cpu0);
    const expected = job.sessions * job.perSession;
    if (r.ok !== expected)
      throw new Error(`${label}: ${expected - r.ok} of ${expected} calls failed (first: ${r.firstError})`);
    const rate = (r.ok / r.ms) * 1000;
    line(
      label,
      `${r.ok} calls in ${r.ms.toFixed(0)} ms = ${Math.round(rate).toLocaleString('en-US')} calls/s (${job.sessions} sessions)`,
    );
    // This process runs only the gateway here (with its stdio link to the upstream); the agents' CPU is the child's.
    line(
      '  gateway per call',
      `${((elu.active * 1000) / r.ok).toFixed(0)} µs event loop (${(elu.utilization * 100).toFixed(0)}% busy), ${((cpu.user + cpu.system) / r.ok).toFixed(0)} µs CPU; load generator ${(r.cpuUs / r.ok).toFixed(0)} µs CPU`,
    );
    return rate;
  } finally {
    child.kill();
  }
}

async function loadWorker(job: LoadJob): Promise<void> {
  const clients = await Promise.all(
    Array.from({ length: job.sessions }, async () => {
      const c = new Client({ name: 'bench-load', version: '1' });
      await c.connect(
        new StreamableHTTPClientTransport(new URL(job.url), {
          requestInit: { headers: { Authorization: `Bearer ${job.token}` } },
          fetch: clientFetch,
        }),
      );
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
  const token = createAgentToken(db, 'bench-agent', { policy });
  const clients: Client[] = [];
  const connect = async (url: string, headers: Record<string, string>) => {
    const c = new Client({ name: 'bench', version: '1' });
    await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers }, fetch: clientFetch }));
    clients.push(c);
    return c;
  };
  const governed = () => connect(gateway.url, { Authorization: `Bearer ${token}` });
  const countCompleted = () =>
    (db.prepare("SELECT count(*) AS n FROM audit WHERE event = 'call.completed'").get() as { n: number }).n;
  /** Every call of a run left its call.completed row. */
  const checkAudited = async (label: string, before: number, calls: number) => {
    await audit.flush();
    const audited = countCompleted() - before;
    if (audited !== calls) throw new Error(`${label}: expected ${calls} call.completed rows, found ${audited}`);
  };
  try {
    const directStdio = new Client({ name: 'bench-direct', version: '1' });
    await directStdio.connect(
      new StdioClientTransport({ command: process.execPath, args: EVERYTHING, stderr: 'ignore' }),
    );
    clients.push(directStdio);
    const directHttp = await connect(echo.url, {});
    const g = await governed();
    const n = 2_000;

    const [a1, a2] = await latencies(
      [
        { label: 'A direct  (stdio)', client: directStdio, tool: 'echo' },
        { label: 'A governed (HTTP → Warden → stdio)', client: g, tool: 'everything__echo' },
      ],
      n,
    );
    ratio('A ratio governed/direct', a2!, a1!);
    // Diagnostic: the same gateway with every audit row fsynced before the step after it (auditDurability 'strict').
    const strict = await startGateway({
      policy,
      db,
      audit,
      approvals,
      halt: killSwitch,
      alerts: new LogAlertSink(logger),
      logger,
      port: 0,
      auditDurability: 'strict',
    });
    try {
      const gs = await connect(strict.url, { Authorization: `Bearer ${token}` });
      const [b1, b2, b3] = await latencies(
        [
          { label: 'B direct  (HTTP)', client: directHttp, tool: 'echo' },
          { label: 'B governed (HTTP → Warden → HTTP)', client: g, tool: 'web__echo' },
          { label: 'B governed, strict durability', client: gs, tool: 'web__echo' },
        ],
        n,
      );
      ratio('B ratio governed/direct', b2!, b1!);
      ratio('B ratio (strict durability)', b3!, b1!);
      await gs.close();
    } finally {
      await strict.close();
    }

    await audit.flush();
    const job = { url: gateway.url, token, sessions: 16, perSession: 1_000 };
    let before = 0;
    // Counted once the generator has warmed up: its warm-up calls are audited too.
    const rate = await processThroughput(
      'governed throughput',
      job,
      'everything__echo',
      () => (before = countCompleted()),
    );
    await checkAudited('governed throughput', before, job.sessions * job.perSession);
    line(
      'audited calls/s',
      `${Math.round(rate).toLocaleString('en-US')} (goal ≥ 2,000; every call's call.decided committed before forwarding and on stable storage before the answer, call.completed committed before the answer)`,
    );

    before = countCompleted();
    await workerThroughput('same, SDK-client agents in a worker thread', { ...job, perSession: 500 });
    await checkAudited('SDK-client run', before, job.sessions * 500);

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

if (!isMainThread && (workerData as LoadJob | undefined)?.role === 'gateway-load')
  await loadWorker(workerData as LoadJob);
else if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
