import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'warden-policy-rules-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
      env: { PATH: process.env.PATH, LOG_LEVEL: 'silent' },
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

const EXAMPLE = 'examples/policy.yml';
const test = (tool: string, args: string, ...extra: string[]) =>
  runCli(['policy', 'test', EXAMPLE, '--agent', 'support-triage', '--tool', tool, '--args', args, ...extra]);

describe('warden policy test', () => {
  it('prints the decision first, then the reason and the rule, for each outcome of the example', async () => {
    const small = await test('crm__refund_request', '{"customer_id":"C-1","amount":20}');
    expect(small.code).toBe(0);
    expect(small.stdout.split('\n')).toEqual([
      'allow',
      'reason: support-triage may call refund_request on crm without approval: rules[1] (when args.amount <= 50): small refunds are routine',
      'rule: rules[1] when args.amount <= 50 then allow',
      '',
    ]);
    const fractional = await test('crm__refund_request', '{"amount":10.5}');
    expect(fractional.stdout.split('\n')[0]).toBe('allow');
    const mid = await test('crm__refund_request', '{"amount":500}');
    expect(mid.stdout).toMatch(/^approve\nreason: .*approval_required.*\nrule: approval_required\n$/);
    const big = await test('crm__refund_request', '{"amount":20000}');
    expect(big.code).toBe(0);
    expect(big.stdout).toMatch(
      /^deny\nreason: .*refunds over 5,000 go through finance\nrule: rules\[0\] when args.amount > 5000 then deny\n$/,
    );
    const read = await test('kb__search_kb', '{"query":"refund"}');
    expect(read.stdout).toMatch(/^allow\n.*\nrule: scopes\n$/);
  });

  it('exits 2 naming the field on bad input', async () => {
    const badJson = await test('crm__refund_request', '{amount: 1}');
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain('INVALID_INPUT: --args: not valid JSON');
    const notObject = await test('crm__refund_request', '[1]');
    expect(notObject.code).toBe(2);
    expect(notObject.stderr).toContain('--args: expected a JSON object');
    const badTool = await test('refund_request', '{}');
    expect(badTool.code).toBe(2);
    expect(badTool.stderr).toContain('--tool: expected SERVER__TOOL');
    const badAgent = await runCli(['policy', 'test', EXAMPLE, '--agent', 'nobody', '--tool', 'crm__refund_request']);
    expect(badAgent.code).toBe(2);
    expect(badAgent.stderr).toContain('--agent: examples/policy.yml has no agent "nobody"');
    const badFile = join(dir, 'bad.yml');
    writeFileSync(
      badFile,
      'agent: a\nmcp_scopes: { kb: [read] }\nrules:\n  - tool: x\n    when: "args.n >"\n    then: deny\n',
    );
    const invalid = await runCli(['policy', 'test', badFile, '--agent', 'a', '--tool', 'kb__x']);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain(`${badFile}:5:11: rules[0].when: invalid condition:`);
  });

  it('--now sets the time that conditions read', async () => {
    const file = join(dir, 'now.yml');
    writeFileSync(
      file,
      `${readFileSync(EXAMPLE, 'utf8').replace(
        '    rules:\n',
        `    rules:\n      - tool: kb__search_kb\n        when: "now >= timestamp('2030-01-01T00:00:00Z')"\n        then: deny\n        reason: the knowledge base is retired\n`,
      )}`,
    );
    const before = await runCli([
      'policy',
      'test',
      file,
      '--agent',
      'support-triage',
      '--tool',
      'kb__search_kb',
      '--now',
      '2029-12-31T23:59:00Z',
    ]);
    expect(before.stdout.split('\n')[0]).toBe('allow');
    const after = await runCli([
      'policy',
      'test',
      file,
      '--agent',
      'support-triage',
      '--tool',
      'kb__search_kb',
      '--now',
      '2030-01-01T00:00:00Z',
    ]);
    expect(after.stdout.split('\n')[0]).toBe('deny');
    const bad = await runCli([
      'policy',
      'test',
      file,
      '--agent',
      'support-triage',
      '--tool',
      'kb__search_kb',
      '--now',
      'soon',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--now: expected an ISO time');
  });
});

describe('warden policy diff', () => {
  it('exits 0 and says so when nothing changes', async () => {
    const r = await runCli(['policy', 'diff', EXAMPLE, EXAMPLE]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('no changes\n');
  });

  it('lists changed outcomes, rules, owners, approvers and limits, and exits 1', async () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    const before = join(dir, 'before.yml');
    const after = join(dir, 'after.yml');
    // Before: the example without its rules. After: also a new owner, approver list, limit and a widened scope.
    writeFileSync(before, text.replace(/\n {4}rules:\n(?: {6}.*\n| *#.*\n)*/, '\n'));
    writeFileSync(
      after,
      text
        .replace(
          '    owner: U0123ABCD                 # Slack user',
          '    owner: U0999ONCL                 # Slack user',
        )
        .replace('approvers: [U0456EFGH, U0789IJKL]', 'approvers: [U0456EFGH]')
        .replace('calls_per_minute: 60', 'calls_per_minute: 120')
        .replace('      crm:     [read]\n    approval_required', '      crm:     [read, write]\n    approval_required'),
    );
    const r = await runCli(['policy', 'diff', before, after]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toContain(
      'support-triage  crm__refund_request  approve → deny when args.amount > 5000; allow when args.amount <= 50; otherwise approve',
    );
    expect(lines).toContain(
      "support-triage  tickets__send_customer_email  approve → approve when !args.to.endsWith('@example.com'); allow when args.to.endsWith('@example.com'); otherwise approve",
    );
    // crm write scope: tools nobody classified are now held instead of refused.
    expect(lines).toContain('support-triage  crm__*  deny → approve');
    expect(lines).toContain(
      'support-triage  rule added: crm__refund_request when args.amount > 5000 then deny (refunds over 5,000 go through finance)',
    );
    expect(lines).toContain('support-triage  owner U0123ABCD → U0999ONCL');
    expect(lines).toContain('support-triage  approvers U0456EFGH, U0789IJKL → U0456EFGH');
    expect(lines).toContain('support-triage  limits.calls_per_minute 60 → 120');
    expect(lines).toContain(
      'support-triage  scopes tickets:read, kb:read, crm:read → tickets:read, kb:read, crm:read+write',
    );
    // The other agents did not change.
    expect(lines.filter((l) => l.startsWith('billing-bot') || l.startsWith('warden-canary'))).toEqual([]);

    const back = await runCli(['policy', 'diff', after, before]);
    expect(back.code).toBe(1);
    expect(back.stdout).toContain(
      'support-triage  rule removed: crm__refund_request when args.amount > 5000 then deny (refunds over 5,000 go through finance)',
    );
  });

  it('exits 2 when a file is invalid', async () => {
    const bad = join(dir, 'invalid.yml');
    writeFileSync(bad, 'agent: a\nmcp_scope: {}\n');
    const r = await runCli(['policy', 'diff', EXAMPLE, bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('mcp_scope: unknown key');
  });
});
