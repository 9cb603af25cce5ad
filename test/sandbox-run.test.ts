import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { homedir, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/control/runs.ts';
import { AuditReader } from '../src/audit/reader.ts';
import { ApprovalStore } from '../src/approvals/store.ts';
import type { Db } from '../src/store/db.ts';

/** What agent status reads, each table through its owner. */
const statusSources = (db: Db) => ({
  audit: new AuditReader(db),
  approvals: new ApprovalStore(db),
  runs: new RunStore(db),
});
import { agentStatuses } from '../src/control/status.ts';
import { agentStatusLine } from '../src/slack/blocks/agents.ts';
import { TokenStore } from '../src/gateway/tokens.ts';
import { findExecutable } from '../src/sandbox/preflight.ts';
import { startHarness, type Harness } from './support/gateway-harness.ts';
import { FIXTURES, ROOT, helpdeskServersYaml } from './support/policies.ts';
import { onSqlite } from './support/store-under-test.ts';

// `warden run` as a person runs it: a CLI child process, real bubblewrap, the
// gateway of the harness (real SQLite, a real stdio upstream) on loopback.

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let harness: Harness;
let dir: string;
let workspace: string;
let policyPath: string;
let plantedFile: string;
let allowedServer: HttpServer;
let allowedPort: number;
let otherLoopback: NetServer;
let otherLoopbackPort: number;
const otherLoopbackConnections: number[] = [];
// A non-loopback address of this machine: an "allowed destination" that needs no internet.
const hostAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && !i.internal && i.family === 'IPv4')?.address;

function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const port = new URL(harness.gateway.url).port;
  return {
    ...process.env,
    WARDEN_DB: harness.dbPath,
    WARDEN_POLICY: policyPath,
    WARDEN_HOST: '127.0.0.1',
    WARDEN_PORT: port,
    LOG_LEVEL: 'warn',
    PLANTED_SECRET: 'planted-secret-value',
    ...extra,
  };
}

function startCli(args: string[], extra: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
    cwd: ROOT,
    env: cliEnv(extra),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const done = new Promise<CliResult>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => startCli(args, extra).done;
const run = (agent: string, command: string[], extra: NodeJS.ProcessEnv = {}) =>
  cli(['run', '--agent', agent, '--workspace', workspace, '--', ...command], extra);
const sh = (script: string, ...args: string[]) => ['sh', '-c', script, 'sh', ...args];

function rows(event: string, agent = 'support-triage'): Array<{ decision: string; reason: string; detail: string }> {
  return harness.db
    .prepare('SELECT decision, reason, detail FROM audit WHERE event = ? AND agent = ? ORDER BY seq')
    .all(event, agent) as Array<{ decision: string; reason: string; detail: string }>;
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-sandbox-run-'));
  workspace = join(dir, 'workspace');
  mkdirSync(workspace);
  // A planted file under the real HOME of whoever runs the tests (a credential file would live there).
  plantedFile = join(homedir(), `.warden-sandbox-test-${randomBytes(4).toString('hex')}`);
  writeFileSync(plantedFile, 'planted-home-secret\n');

  allowedServer = createHttpServer((_req, res) => res.end('hello from an allowed host\n'));
  await new Promise<void>((r) => allowedServer.listen(0, '0.0.0.0', r));
  allowedPort = (allowedServer.address() as { port: number }).port;
  otherLoopback = createNetServer((socket) => {
    otherLoopbackConnections.push(Date.now());
    socket.end('loopback service\n');
  });
  await new Promise<void>((r) => otherLoopback.listen(0, '127.0.0.1', r));
  otherLoopbackPort = (otherLoopback.address() as { port: number }).port;

  const yaml = `${helpdeskServersYaml(['tickets'])}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
    sandbox:
      network: { allow: ["${hostAddress}:${allowedPort}", api.anthropic.com] }
      stop_grace: 3s
  - agent: stubborn
    mcp_scopes: { tickets: [read] }
    sandbox: { stop_grace: 1s }
  - agent: open-bot
    mcp_scopes: { tickets: [read] }
    sandbox: none
`;
  policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, yaml);
  harness = await startHarness(yaml);
}, 60_000);

afterAll(async () => {
  await harness?.close();
  rmSync(plantedFile, { force: true });
  allowedServer?.close();
  otherLoopback?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('warden run: the sandbox', () => {
  it('bubblewrap and socat are installed here (CI installs them; a missing one fails, never skips)', () => {
    expect(findExecutable('bwrap', process.env.PATH)).toBeDefined();
    expect(findExecutable('socat', process.env.PATH)).toBeDefined();
    expect(hostAddress).toBeDefined();
  });

  it("passes the command's stdout, stderr and exit code through", async () => {
    const r = await run('support-triage', sh('echo to-stdout; echo to-stderr >&2; exit 7'));
    expect(r.stdout).toBe('to-stdout\n');
    expect(r.stderr).toContain('to-stderr\n');
    expect(r.code).toBe(7);
  });

  it('replaces $WARDEN_MCP_CONFIG in the arguments (the command runs without a shell)', async () => {
    const r = await run('support-triage', ['cat', '$WARDEN_MCP_CONFIG']);
    expect(r.code).toBe(0);
    expect(Object.keys((JSON.parse(r.stdout) as { mcpServers: object }).mcpServers)).toEqual(['warden']);
  });

  it("hides the host's environment, home and Warden's own files", async () => {
    const script = `
      echo "secret=\${PLANTED_SECRET:-unset}"
      echo "home=$HOME tmp=$TMPDIR"
      cat "$1" 2>/dev/null && echo "home file READ" || echo "home file unreadable"
      cat "$2" 2>/dev/null | grep -q SQLite && echo "database READ" || echo "database unreadable"
      cat "$3" 2>/dev/null | grep -q agents && echo "policy READ" || echo "policy unreadable"
      env | cut -d= -f1 | sort | tr '\\n' ' '`;
    // On PostgreSQL there is no database file; its URL is kept out of the environment (the names below).
    const r = await run('support-triage', sh(script, plantedFile, harness.dbPath, policyPath));
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('secret=unset');
    expect(r.stdout).toContain('home=/home/agent tmp=/tmp');
    expect(r.stdout).toContain('home file unreadable');
    if (onSqlite()) expect(r.stdout).toContain('database unreadable');
    expect(r.stdout).toContain('policy unreadable');
    const names = r.stdout.trim().split('\n').at(-1)!.trim().split(' ');
    expect(names.filter((n) => !/^(HOME|TMPDIR|PATH|LANG|TERM|PWD|SHLVL|OLDPWD|_)$/.test(n)).sort()).toEqual([
      'ALL_PROXY',
      'HTTPS_PROXY',
      'HTTP_PROXY',
      'NO_PROXY',
      'WARDEN_AGENT_TOKEN',
      'WARDEN_MCP_CONFIG',
      'WARDEN_URL',
      'all_proxy',
      'http_proxy',
      'https_proxy',
      'no_proxy',
    ]);
  });

  it('writes land only in the workspace and the private temp', async () => {
    const outside = join(ROOT, `.sandbox-outside-${randomBytes(4).toString('hex')}`);
    // The host's /tmp is not the run's /tmp: a write there stays in the run's private temp.
    const hostTmp = join(dir, 'host-tmp.txt');
    const script = `
      echo ws > "$1/inside.txt" && echo "workspace ok"
      echo tmp > "$4" && echo "tmp ok"
      echo x > "$2" 2>/dev/null && echo "outside WROTE" || echo "outside refused"
      echo x > /etc/warden-sandbox-test 2>/dev/null && echo "etc WROTE" || echo "etc refused"
      echo x > "$3.new" 2>/dev/null && echo "home WROTE" || echo "home refused"`;
    const r = await run('support-triage', sh(script, workspace, outside, plantedFile, hostTmp));
    expect(existsSync(hostTmp)).toBe(false);
    expect(r.stdout).toContain('workspace ok');
    expect(r.stdout).toContain('tmp ok');
    expect(r.stdout).toContain('outside refused');
    expect(r.stdout).toContain('etc refused');
    expect(r.stdout).toContain('home refused');
    expect(readFileSync(join(workspace, 'inside.txt'), 'utf8')).toBe('ws\n');
    expect(existsSync(outside)).toBe(false);
    expect(existsSync('/etc/warden-sandbox-test')).toBe(false);
    expect(existsSync(`${plantedFile}.new`)).toBe(false);
  });

  it('refuses other loopback ports and domains not on the list, and audits each refused destination', async () => {
    const before = rows('sandbox.egress_denied').length;
    const script = `
      curl -sS -m 5 "http://127.0.0.1:$1/" >/dev/null 2>&1 && echo "loopback REACHED" || echo "loopback refused"
      curl -sS -m 5 -x http://127.0.0.1:3128 --noproxy '' "http://127.0.0.1:$1/" 2>/dev/null | grep -q loopback && echo "loopback via proxy REACHED" || echo "loopback via proxy refused"
      curl -sS -m 5 https://example.org/ >/dev/null 2>&1 && echo "domain REACHED" || echo "domain refused"
      curl -sS -m 5 https://example.org/ >/dev/null 2>&1 || true`;
    const r = await run('support-triage', sh(script, String(otherLoopbackPort)));
    expect(r.stdout).toContain('loopback refused');
    expect(r.stdout).toContain('loopback via proxy refused');
    expect(r.stdout).toContain('domain refused');
    expect(otherLoopbackConnections).toEqual([]);
    const denied = rows('sandbox.egress_denied').slice(before);
    expect(denied.length).toBeGreaterThan(0);
    expect(denied.every((row) => row.decision === 'deny')).toBe(true);
    const destinations: Record<string, number> = {};
    for (const row of denied) {
      const detail = JSON.parse(row.detail) as { destinations: Record<string, number> };
      for (const [dest, n] of Object.entries(detail.destinations)) destinations[dest] = (destinations[dest] ?? 0) + n;
    }
    // Aggregated: both refusals of example.org in one count.
    expect(destinations).toEqual({ [`127.0.0.1:${otherLoopbackPort}`]: 1, 'example.org:443': 2 });
  });

  it('reaches an allowed destination, plain and through CONNECT', async () => {
    const url = `http://${hostAddress}:${allowedPort}/`;
    const r = await run('support-triage', sh('curl -sS -m 5 "$1"; curl -sS -m 5 -p "$1"', url));
    expect(r.stderr).not.toContain('curl:');
    expect(r.stdout).toBe('hello from an allowed host\n'.repeat(2));
  });

  it("a tool call from inside reaches the upstream through Warden's gateway, with Node's fetch (no proxy)", async () => {
    const r = await run('support-triage', [
      process.execPath,
      join(FIXTURES, 'sandbox-agent.mjs'),
      'tickets__list_tickets',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { content: Array<{ text: string }>; isError?: boolean };
    expect(result.isError).toBeFalsy();
    expect(result.content[0]!.text).toContain('subject');
    const decided = harness.db
      .prepare("SELECT decision FROM audit WHERE event = 'call.decided' AND agent = 'support-triage' AND tool = ?")
      .all('list_tickets') as Array<{ decision: string }>;
    expect(decided.map((d) => d.decision)).toContain('allow');
  });

  it('issues a token for the run and revokes it when the run ends; the run is a row', async () => {
    const r = await run('support-triage', sh('printf %s "$WARDEN_AGENT_TOKEN" > "$1/token"', workspace));
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('wdn_');
    const token = readFileSync(join(workspace, 'token'), 'utf8');
    expect(token).toMatch(/^wdn_/);
    expect(new TokenStore(harness.db).authenticate(token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(new RunStore(harness.db).open('support-triage')).toEqual([]);
    const stopped = rows('run.stopped').at(-1)!;
    expect(stopped.decision).toBe('exited');
  });

  it('sandbox: none runs with the host environment, and says so', async () => {
    const r = await run('open-bot', sh('echo "secret=${PLANTED_SECRET:-unset}"'));
    expect(r.stdout).toBe('secret=planted-secret-value\n');
    expect(r.stderr).toContain('sandbox: none');
    const slack = agentStatusLine(
      agentStatuses(statusSources(harness.db), harness.policy, harness.killSwitch, Date.now(), 'open-bot')[0]!,
    );
    expect(slack).toContain('*sandbox: none*');
  });
});

describe('warden run: the kill switch', () => {
  it('a halt from another process stops a sleep run with SIGTERM within the grace', async () => {
    const { done } = startCli(['run', '--agent', 'support-triage', '--workspace', workspace, '--', 'sleep', '60']);
    const runs = new RunStore(harness.db);
    const open = await until('the run to start', () => runs.open('support-triage').find((r) => r.pid !== null));
    expect(open.command).toEqual(['sleep', '60']);
    const status = await cli(['agents', 'status']);
    expect(status.stdout).toMatch(new RegExp(`support-triage .*${open.id} pid ${open.pid}@`));
    expect(status.stdout).toMatch(/open-bot .* NONE/);
    const slack = agentStatusLine(
      agentStatuses(statusSources(harness.db), harness.policy, harness.killSwitch, Date.now(), 'support-triage')[0]!,
    );
    expect(slack).toContain(`\`${open.id}\` pid ${open.pid}`);
    const halt = await cli(['agents', 'halt', 'support-triage', 'sandbox test']);
    expect(halt.code).toBe(0);
    const r = await done;
    // 143 = 128 + SIGTERM: the process ended on the polite signal, so inside the grace (SIGKILL would be 137).
    expect(r.code).toBe(143);
    const ended = runs.get(open.id)!;
    expect(ended).toMatchObject({ cause: 'halted', exitCode: 143 });
    expect(rows('run.stopped').at(-1)).toMatchObject({ decision: 'halted' });

    // While halted, no run starts, and nothing is written for the attempt.
    const runsBefore = (harness.db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n;
    const refused = await run('support-triage', ['true']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('agent support-triage is halted');
    expect((harness.db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n).toBe(runsBefore);
    expect((await cli(['agents', 'resume', 'support-triage'])).code).toBe(0);
  }, 60_000);

  it('a command that ignores SIGTERM is killed once the grace has passed', async () => {
    const { done } = startCli([
      'run',
      '--agent',
      'stubborn',
      '--workspace',
      workspace,
      '--',
      ...sh('trap "" TERM; echo ready; while :; do sleep 1; done'),
    ]);
    const runs = new RunStore(harness.db);
    const open = await until('the run to start', () => runs.open('stubborn').find((r) => r.pid !== null));
    expect((await cli(['agents', 'halt', 'stubborn'])).code).toBe(0);
    const r = await done;
    // 137 = 128 + SIGKILL: killed, since it ignored the SIGTERM.
    expect(r.code).toBe(137);
    const ended = runs.get(open.id)!;
    expect(ended).toMatchObject({ cause: 'halted', exitCode: 137, signal: 'SIGKILL' });
    // Not before its stop_grace (1s) had passed since the halt (less a little for timer rounding).
    const haltedAt = Number(
      harness.db.prepare("SELECT at FROM control_state WHERE scope = 'agent:stubborn'").pluck().get(),
    );
    expect(ended.endedAt! - haltedAt).toBeGreaterThanOrEqual(900);
    expect((await cli(['agents', 'resume', 'stubborn'])).code).toBe(0);
  }, 60_000);
});

describe('warden run: stopping', () => {
  it('Ctrl-C (SIGINT to warden run) stops the command cleanly and records the run as interrupted', async () => {
    const ready = join(workspace, 'ctrl-c-ready');
    const { child, done } = startCli([
      'run',
      '--agent',
      'support-triage',
      '--workspace',
      workspace,
      '--',
      ...sh('touch "$1"; exec sleep 60', ready),
    ]);
    const runs = new RunStore(harness.db);
    const open = await until('the run to start', () => runs.open('support-triage').find((r) => r.pid !== null));
    // The command itself is running (not the sandbox's network bridge still starting).
    await until('the command to run', () => (existsSync(ready) ? true : undefined));
    child.kill('SIGINT');
    const r = await done;
    expect(r.code).toBe(130); // 128 + SIGINT: the command got the interrupt itself
    expect(runs.get(open.id)).toMatchObject({ cause: 'interrupted', exitCode: 130 });
    expect(new TokenStore(harness.db).isLive(open.tokenId)).toBe(false);
  }, 60_000);

  it('a run whose warden run was killed outright is closed, and its token revoked, by the next run', async () => {
    const { child, done } = startCli([
      'run',
      '--agent',
      'support-triage',
      '--workspace',
      workspace,
      '--',
      'sleep',
      '60',
    ]);
    const runs = new RunStore(harness.db);
    const open = await until('the run to start', () => runs.open('support-triage').find((r) => r.pid !== null));
    child.kill('SIGKILL');
    // Its sandbox goes with it (the lifeline in profile.ts), so nothing holds its output pipes either.
    await done;
    await until('the sandbox to go', () => {
      try {
        process.kill(open.pid!, 0);
        return undefined;
      } catch {
        return true;
      }
    });
    expect(runs.get(open.id)!.endedAt).toBeNull();
    expect(new TokenStore(harness.db).isLive(open.tokenId)).toBe(true);
    expect((await run('support-triage', ['true'])).code).toBe(0);
    expect(runs.get(open.id)).toMatchObject({ cause: 'failed' });
    expect(new TokenStore(harness.db).isLive(open.tokenId)).toBe(false);
  }, 60_000);
});

describe('warden run: fail closed', () => {
  it('refuses without bubblewrap, naming the Debian package, and writes nothing', async () => {
    const auditBefore = (harness.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
    const runsBefore = (harness.db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n;
    const tokensBefore = (harness.db.prepare('SELECT count(*) AS n FROM agent_tokens').get() as { n: number }).n;
    const r = await run('support-triage', ['true'], { WARDEN_BWRAP: join(dir, 'no-such-bwrap') });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('SANDBOX_UNAVAILABLE');
    expect(r.stderr).toContain('apt-get install -y bubblewrap');
    expect((harness.db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n).toBe(auditBefore);
    expect((harness.db.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n).toBe(runsBefore);
    expect((harness.db.prepare('SELECT count(*) AS n FROM agent_tokens').get() as { n: number }).n).toBe(tokensBefore);
  });

  it('an unknown agent and a missing workspace are refused naming the option', async () => {
    const unknown = await cli(['run', '--agent', 'nobody', '--', 'true']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--agent: "nobody" is not defined');
    const missing = await cli(['run', '--agent', 'support-triage', '--workspace', join(dir, 'nope'), '--', 'true']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--workspace:');
    const root = await cli(['run', '--agent', 'support-triage', '--workspace', '/', '--', 'true']);
    expect(root.code).toBe(2);
    expect(root.stderr).toContain('--workspace: / would make the whole host writable');
  });
});
