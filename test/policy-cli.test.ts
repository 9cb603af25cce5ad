import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'warden-policy-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
      env: { PATH: process.env.PATH, LOG_LEVEL: 'silent', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('warden policy check', () => {
  it('summarises the full example and exits 0', async () => {
    const r = await runCli(['policy', 'check', 'examples/policy.yml']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('examples/policy.yml: ok');
    expect(r.stdout).toContain('agents (3):');
    expect(r.stdout).toContain('tools classified: 8');
    expect(r.stdout).toContain('refund_request: write (irreversible)');
    expect(r.stdout).toContain("drill '0 9 1 * *' (canary warden-canary)");
    expect(r.stdout).toContain('sandbox isolated: egress to Warden and api.anthropic.com; stop grace 5s');
  });

  it('prints warnings (past review date, approval tool no server offers) and still exits 0', async () => {
    const path = join(dir, 'warn.yml');
    writeFileSync(
      path,
      `servers:
  kb: { command: node, tools: { search_kb: { scope: read } } }
agents:
  - agent: old-bot
    mcp_scopes: { kb: [read] }
    owner: U0123ABCD
    channel: C0123ABCD
    review_by: 2020-01-31
    approval_required: [send_fax]
`,
    );
    const r = await runCli(['policy', 'check', path]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('warnings (3):');
    expect(r.stdout).toContain('agent old-bot: its sandbox allows no model API host');
    expect(r.stdout).toContain('agent old-bot: review_by 2020-01-31 has passed');
    expect(r.stdout).toContain('agent old-bot: approval_required send_fax is a tool no server in its scopes offers');
  });

  it('the seed loads (exit 0) and warns that nothing is classified', async () => {
    const r = await runCli(['policy', 'check', 'examples/seed-policy.yml']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('server tickets: no tools classified');
  });

  it('a bad policy prints every problem via printError and exits 2', async () => {
    const path = join(dir, 'bad.yml');
    writeFileSync(path, 'agent: support-triage\nmcp_scope:\n  tickets: [read]\nowner: bob\n');
    const r = await runCli(['policy', 'check', path]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      `warden: POLICY_INVALID: ${path}:2:1: mcp_scope: unknown key (did you mean "mcp_scopes"?)`,
      `${path}:4:8: owner: expected a Slack user id like U0123ABCD, got "bob"`,
    ]);
  });

  it('a missing env var and a missing file exit 2', async () => {
    const path = join(dir, 'env.yml');
    writeFileSync(
      path,
      'servers:\n  kb:\n    command: node\n    env: { T: "${KB_TOKEN}" }\nagents:\n  - agent: a\n    mcp_scopes: { kb: [read] }\n',
    );
    const missing = await runCli(['policy', 'check', path]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`${path}:4:15: servers.kb.env.T: environment variable KB_TOKEN is not set`);
    const ok = await runCli(['policy', 'check', path], { KB_TOKEN: 'x' });
    expect(ok.code).toBe(0);
    const gone = await runCli(['policy', 'check', join(dir, 'nope.yml')]);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('POLICY_NOT_FOUND');
  });
});
