/**
 * The gateway's edge under a sustained flood of sockets that hold partial
 * headers (reopened as soon as they are closed), from another address and
 * from the legitimate agent's own address, with the default limits: how a
 * legitimate agent's `initialize` and calls fare, against the same without
 * the flood, and what the trail counted. The flood runs in a child process
 * so the gateway's event loop is its own.
 *   npx tsx bench/index.ts edge-flood
 *   EDGE_FLOOD_SOCKETS=5000 EDGE_FLOOD_MS=8000 npx tsx bench/index.ts edge-flood
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { performance } from 'node:perf_hooks';
import { DEFAULT_EDGE_LIMITS } from '../src/gateway/http.ts';
import { connectAgent, startWardenEnv } from '../test/support/control-env.ts';

const SOCKETS = Number(process.env.EDGE_FLOOD_SOCKETS ?? 3000);
const DURATION_MS = Number(process.env.EDGE_FLOOD_MS ?? 5000);

/** The flood: keeps `count` sockets from `address` open with partial headers, reopening each as it closes. */
const FLOOD = `
import { connect } from 'node:net';
const [port, address, count, ms] = process.argv.slice(1).map((v, i) => (i === 1 ? v : Number(v)));
const statuses = {};
let opened = 0;
let stopping = false;
function open() {
  if (stopping) return;
  opened++;
  const s = connect({ host: '127.0.0.1', port, localAddress: address });
  let first = '';
  s.on('connect', () => s.write('POST /mcp HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n'));
  s.on('data', (d) => { if (!first) first = d.toString('utf8').split('\\r\\n', 1)[0]; });
  s.on('error', () => {});
  s.on('close', () => {
    const k = first || 'closed without an answer';
    statuses[k] = (statuses[k] ?? 0) + 1;
    setImmediate(open);
  });
}
for (let i = 0; i < count; i++) open();
setTimeout(() => {
  stopping = true;
  process.stdout.write(JSON.stringify({ opened, statuses }) + '\\n');
  process.exit(0);
}, ms);
`;

function flood(
  port: number,
  address: string,
  count: number,
): Promise<{ opened: number; statuses: Record<string, number> }> {
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', FLOOD, String(port), address, String(count), String(DURATION_MS)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => code !== 0 && reject(new Error(`flood exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve(JSON.parse(line)));
  });
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** A legitimate agent, over and over for `ms`: connect (initialize) and one call. */
async function agentLoop(db: Parameters<typeof connectAgent>[0], url: string, ms: number) {
  const samples: number[] = [];
  const failures: string[] = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const t0 = performance.now();
    try {
      const agent = await connectAgent(db, url, 'worker');
      const r = await agent.call('slow__sleep', { ms: 0 });
      if (r.isError) throw new Error(r.text);
      await agent.close();
      samples.push(performance.now() - t0);
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err));
    }
  }
  samples.sort((a, b) => a - b);
  return { samples, failures };
}

export async function run(): Promise<void> {
  const env = await startWardenEnv();
  try {
    const port = Number(new URL(env.gateway.url).port);
    const line = (name: string, r: { samples: number[]; failures: string[] }) =>
      `${name.padEnd(46)} ok=${r.samples.length} failed=${r.failures.length}  p50=${pct(r.samples, 50).toFixed(1)} ms  p99=${pct(r.samples, 99).toFixed(1)} ms${r.failures[0] ? `  (first failure: ${r.failures[0]})` : ''}\n`;
    const quiet = await agentLoop(env.db, env.gateway.url, Math.min(DURATION_MS, 3000));
    process.stdout.write(line('initialize + call, no flood', quiet));

    const since = (env.db.prepare('SELECT coalesce(max(seq), 0) AS s FROM audit').get() as { s: number }).s;
    const floods = Promise.all([flood(port, '127.0.0.2', SOCKETS), flood(port, '127.0.0.1', Math.floor(SOCKETS / 4))]);
    // Let the flood fill the gateway's caps first.
    await new Promise((r) => setTimeout(r, 500));
    const loud = await agentLoop(env.db, env.gateway.url, DURATION_MS - 1000);
    const [other, same] = await floods;
    process.stdout.write(line('initialize + call, under the flood', loud));
    process.stdout.write(
      `flood from 127.0.0.2: ${SOCKETS} sockets held, ${other.opened} opened in ${DURATION_MS} ms: ${JSON.stringify(other.statuses)}\n`,
    );
    process.stdout.write(
      `flood from 127.0.0.1 (the agent's address): ${Math.floor(SOCKETS / 4)} held, ${same.opened} opened: ${JSON.stringify(same.statuses)}\n`,
    );
    // The last windows close within a second.
    await new Promise((r) => setTimeout(r, 1500));
    await env.audit.flush();
    const rows = env.db
      .prepare("SELECT detail FROM audit WHERE seq > ? AND event = 'request.refused'")
      .all(since) as Array<{ detail: string }>;
    const counted = rows.reduce((n, r) => n + (JSON.parse(r.detail) as { count: number }).count, 0);
    process.stdout.write(
      `trail: ${rows.length} request.refused rows counting ${counted} refusals (limits: ${DEFAULT_EDGE_LIMITS.maxConnections} in all, ${DEFAULT_EDGE_LIMITS.maxConnectionsPerAddress} per address, headers ${DEFAULT_EDGE_LIMITS.headersTimeoutMs} ms)\n`,
    );
  } finally {
    await env.close();
  }
}
