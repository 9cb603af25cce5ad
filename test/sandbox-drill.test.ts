import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drillTokensFromDb, formatDrillResult } from '../src/cli/commands/agents-control.ts';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { DrillRunner } from '../src/control/drill.ts';
import { RunStore } from '../src/control/runs.ts';
import { AuditReader } from '../src/audit/reader.ts';
import { mcpCanaryConnector } from '../src/gateway/canary-client.ts';
import { silentLogger } from '../src/logger.ts';
import { canaryRunStarter } from '../src/sandbox/index.ts';
import { runAgent } from '../src/sandbox/supervisor.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startWardenEnv, type WardenEnv } from './support/control-env.ts';

let env: WardenEnv;

beforeAll(async () => {
  env = await startWardenEnv();
}, 60_000);
afterAll(async () => {
  await env?.close();
});

/** What a run needs of the Warden around it. */
function runDeps() {
  return {
    policy: env.policy,
    db: env.db,
    audit: env.audit,
    killSwitch: env.ks,
    gateway: { host: '127.0.0.1', port: env.gateway.port },
    wardenFiles: [env.policyPath],
    env: process.env,
    logger: silentLogger(),
  };
}

describe('a drill with a canary run', () => {
  it('starts the canary under warden run before the halt, and the halt stops it', async () => {
    const runner = new DrillRunner({
      db: env.db,
      audit: env.audit,
      auditReader: new AuditReader(env.db),
      killSwitch: env.ks,
      policy: env.policy,
      gatewayUrl: env.gateway.url,
      tokens: drillTokensFromDb(env.db),
      connector: mcpCanaryConnector,
      alerts: new MemoryAlertSink(),
      // Timing is bench/ business (bench/run-halt.ts); here: what happens.
      maxTimeToHaltMs: Infinity,
      canaryRun: canaryRunStarter(runDeps()),
    });
    const result = await runner.run('canary', 'cli:test');
    expect(result.problems).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.detail.canaryRun).toMatchObject({ cause: 'halted', exitCode: 143 });
    expect(formatDrillResult(result)).toContain('canary run stopped:         yes, exit 143');
    const runs = new RunStore(env.db);
    expect(runs.open()).toEqual([]);
    const stopped = env.db
      .prepare("SELECT decision FROM audit WHERE event = 'run.stopped' AND agent = 'warden-canary'")
      .all() as Array<{ decision: string }>;
    expect(stopped).toEqual([{ decision: 'halted' }]);
  }, 60_000);
});

describe('a stop that comes before the command is running', () => {
  it('still gives the command SIGTERM and its grace, not an immediate SIGKILL', async () => {
    // Aborted before the run starts: the stop lands right after bwrap is spawned,
    // before bwrap has reported its pid or forked the command.
    const abort = new AbortController();
    abort.abort();
    const workspace = mkdtempSync(join(tmpdir(), 'warden-early-stop-'));
    try {
      const outcome = await runAgent({
        ...runDeps(),
        agent: 'warden-canary',
        command: ['sleep', '3600'],
        workspace,
        signals: [],
        abort: abort.signal,
      });
      // 143 = 128 + SIGTERM; 137 would be the SIGKILL a stop before the fork used to send.
      expect(outcome).toMatchObject({ cause: 'interrupted', exitCode: 143 });
    } finally {
      rmSync(workspace, { recursive: true, force: true });
    }
  }, 30_000);
});
