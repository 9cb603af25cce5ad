import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServeChild, type ServeChild } from './support/serve-child.ts';

// `warden serve` as `npm start` runs it: the compiled CLI (bin/warden.js → dist/, built by the
// global setup), one process, JSON logs on stderr.
let dir: string;
let policyPath: string;
let serve: ServeChild;

const seed = readFileSync('examples/seed-policy.yml', 'utf8');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-serve-'));
  policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, seed);
  serve = await startServeChild({ dbPath: join(dir, 'w.db'), policyPath, entry: 'compiled', timeoutMs: 20_000 });
});

afterAll(() => {
  if (serve?.proc.exitCode === null) serve.proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('warden serve', () => {
  it('starts on the given policy and database, and prints where the gateway listens', () => {
    const running = serve.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('Warden is running'))!;
    expect(running.gateway).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(running.agents).toEqual(['support-triage']);
    expect(running.slack).toBe('off');
  });

  it('reloads the policy when the file is saved, and keeps the last good one when the new file is bad', async () => {
    writeFileSync(policyPath, seed.replace('agent: support-triage', 'agent: support-triage-v2'));
    await serve.waitForLog((l) => l.msg === 'policy reloaded', 'reload after saving the file');
    // The change is summarised as `policy diff` would, and alerted (here to the log: no Slack).
    const changed = await serve.waitForLog(
      (l) => (l.alert as { kind?: string } | undefined)?.kind === 'policy_changed',
      'the policy_changed alert',
    );
    expect(String(changed.msg)).toContain('support-triage-v2  agent added');
    expect(String(changed.msg)).toContain('support-triage  agent removed');
    writeFileSync(policyPath, seed.replace('mcp_scopes:', 'mcp_scope:'));
    const failed = await serve.waitForLog(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('policy reload failed'),
      'failed reload',
    );
    expect(JSON.stringify(failed.problems)).toMatch(/policy\.yml:\d+:\d+: .*mcp_scope/);
    expect(serve.proc.exitCode).toBeNull();
    // The policy in force is still the last good one: the next change is summarised against it.
    writeFileSync(policyPath, seed.replace('agent: support-triage', 'agent: support-triage-v3'));
    const next = await serve.waitForLog(
      (l) =>
        (l.alert as { kind?: string } | undefined)?.kind === 'policy_changed' &&
        String(l.msg).includes('support-triage-v3'),
      'the policy_changed alert after the bad file',
    );
    expect(String(next.msg)).toContain('support-triage-v3  agent added');
    expect(String(next.msg)).toContain('support-triage-v2  agent removed');
  });

  it('reloads on SIGHUP and shuts down cleanly on SIGTERM', async () => {
    writeFileSync(policyPath, seed);
    const before = serve.logs.filter((l) => l.msg === 'policy reloaded').length;
    // Give the file watcher its turn first, so the SIGHUP reload is counted on its own.
    await serve.waitForLog(
      () => serve.logs.filter((l) => l.msg === 'policy reloaded').length > before,
      'reload of the restored file',
    );
    const afterSave = serve.logs.filter((l) => l.msg === 'policy reloaded').length;
    serve.proc.kill('SIGHUP');
    await serve.waitForLog(
      () => serve.logs.filter((l) => l.msg === 'policy reloaded').length > afterSave,
      'reload on SIGHUP',
    );
    const exited = new Promise<number | null>((resolve) => serve.proc.once('exit', (code) => resolve(code)));
    serve.proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(serve.logs.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM')).toBe(true);
  });
});
