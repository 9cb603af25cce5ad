import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `warden serve` as `npm start` runs it: the compiled CLI (bin/warden.js → dist/, built by the
// global setup), one process, JSON logs on stderr.
let dir: string;
let policyPath: string;
let child: ChildProcess;
const logs: Array<Record<string, unknown>> = [];

const seed = readFileSync('examples/seed-policy.yml', 'utf8');

function waitForLog(
  match: (l: Record<string, unknown>) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const hit = logs.find(match);
      if (hit) return resolve(hit);
      if (child.exitCode !== null) return reject(new Error(`warden serve exited (${child.exitCode}) before: ${what}`));
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for: ${what}`));
      setTimeout(poll, 25);
    };
    poll();
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-serve-'));
  policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, seed);
  child = spawn(
    process.execPath,
    ['bin/warden.js', 'serve', '--policy', policyPath, '--db', join(dir, 'w.db'), '--port', '0'],
    {
      env: { ...process.env, LOG_LEVEL: 'info', SLACK_BOT_TOKEN: '', SLACK_APP_TOKEN: '', SLACK_SIGNING_SECRET: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let buf = '';
  child.stderr!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  await waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('Warden is running'), 'start-up');
});

afterAll(() => {
  if (child.exitCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('warden serve', () => {
  it('starts on the given policy and database, and prints where the gateway listens', () => {
    const running = logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('Warden is running'))!;
    expect(running.gateway).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(running.agents).toEqual(['support-triage']);
    expect(running.slack).toBe('off');
  });

  it('reloads the policy when the file is saved, and keeps the last good one when the new file is bad', async () => {
    writeFileSync(policyPath, seed.replace('agent: support-triage', 'agent: support-triage-v2'));
    await waitForLog((l) => l.msg === 'policy reloaded', 'reload after saving the file');
    writeFileSync(policyPath, seed.replace('mcp_scopes:', 'mcp_scope:'));
    const failed = await waitForLog(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('policy reload failed'),
      'failed reload',
    );
    expect(JSON.stringify(failed.problems)).toMatch(/policy\.yml:\d+:\d+: .*mcp_scope/);
    expect(child.exitCode).toBeNull();
  });

  it('reloads on SIGHUP and shuts down cleanly on SIGTERM', async () => {
    writeFileSync(policyPath, seed);
    const before = logs.filter((l) => l.msg === 'policy reloaded').length;
    // Give the file watcher its turn first, so the SIGHUP reload is counted on its own.
    await waitForLog(
      () => logs.filter((l) => l.msg === 'policy reloaded').length > before,
      'reload of the restored file',
    );
    const afterSave = logs.filter((l) => l.msg === 'policy reloaded').length;
    child.kill('SIGHUP');
    await waitForLog(() => logs.filter((l) => l.msg === 'policy reloaded').length > afterSave, 'reload on SIGHUP');
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM')).toBe(true);
  });
});
