import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isWardenError, type WardenError } from '../src/errors.ts';
import { loadPolicyFile, policyWarnings } from '../src/policy/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'warden-sandbox-policy-'));

function policyWith(name: string, sandboxYaml: string): string {
  const path = join(dir, name);
  writeFileSync(path, `agent: support-triage\n${sandboxYaml}\nmcp_scopes:\n  tickets: [read]\n`);
  return path;
}

function loadError(path: string): WardenError {
  try {
    loadPolicyFile(path, {});
  } catch (err) {
    if (isWardenError(err, 'POLICY_INVALID')) return err;
    throw err;
  }
  throw new Error(`${path} loaded, but should not have`);
}

describe('policy sandbox:', () => {
  it('the seed string is the strict default, and the seed policy still loads as written', () => {
    const seed = loadPolicyFile('examples/seed-policy.yml', {}).agents['support-triage']!.sandbox;
    expect(seed).toMatchObject({ mode: 'isolated', declared: 'seed', networkAllow: [], stopGraceMs: 5_000 });
    const absent = loadPolicyFile(policyWith('absent.yml', ''), {}).agents['support-triage']!.sandbox;
    expect(absent).toMatchObject({ mode: 'isolated', declared: 'default', networkAllow: [], env: [] });
  });

  it('reads the structured form', () => {
    const path = policyWith(
      'block.yml',
      `sandbox:
  network: { allow: [api.anthropic.com, "*.github.com", "registry.npmjs.org:443"] }
  filesystem: { read_deny: [/srv/secrets, ~/notes], write: [/var/tmp/agent-cache] }
  env: [ANTHROPIC_API_KEY]
  stop_grace: 2s`,
    );
    expect(loadPolicyFile(path, {}).agents['support-triage']!.sandbox).toEqual({
      mode: 'isolated',
      declared: 'block',
      networkAllow: ['api.anthropic.com', '*.github.com', 'registry.npmjs.org:443'],
      readDeny: ['/srv/secrets', '~/notes'],
      write: ['/var/tmp/agent-cache'],
      env: ['ANTHROPIC_API_KEY'],
      stopGraceMs: 2_000,
    });
  });

  it('`none` must be written out, and policy check flags it', () => {
    const policy = loadPolicyFile(policyWith('none.yml', 'sandbox: none'), {});
    expect(policy.agents['support-triage']!.sandbox.mode).toBe('none');
    expect(policyWarnings(policy, Date.UTC(2026, 0, 1))).toContain(
      "agent support-triage: sandbox: none, so `warden run` starts it with the host's files, credentials and network",
    );
  });

  it('warns when the sandbox reaches no model API, and not when it does', () => {
    const strict = loadPolicyFile('examples/seed-policy.yml', {});
    expect(policyWarnings(strict, 0).some((w) => w.includes('allows no model API host'))).toBe(true);
    const open = loadPolicyFile(policyWith('model.yml', 'sandbox: { network: { allow: ["*.anthropic.com"] } }'), {});
    expect(policyWarnings(open, 0).some((w) => w.includes('model API'))).toBe(false);
  });

  it('any other string is a load error naming the field', () => {
    const err = loadError(policyWith('typo.yml', 'sandbox: isolated, network egress = open'));
    expect(err.message).toBe(
      `${join(dir, 'typo.yml')}:2:10: sandbox: expected "isolated, network egress = allowlist only", "none" or a mapping with network, filesystem, env, stop_grace`,
    );
  });

  it('bad entries in the block name their field', () => {
    const err = loadError(
      policyWith(
        'bad.yml',
        `sandbox:
  network: { allow: ["https://api.anthropic.com/v1"] }
  filesystem: { write: [relative/dir], read_dney: [] }
  env: ["NOT-A-NAME"]
  stop_grace: soon`,
      ),
    );
    expect(err.message).toContain('sandbox.network.allow[0]: expected a host such as api.anthropic.com');
    expect(err.message).toContain('sandbox.filesystem.write[0]: expected an absolute path or one under ~/');
    expect(err.message).toContain('sandbox.filesystem.read_dney: unknown key');
    expect(err.message).toContain('sandbox.env[0]: expected an environment variable name');
    expect(err.message).toContain('sandbox.stop_grace: expected a duration');
  });

  it('a number is refused with what is accepted', () => {
    const err = loadError(policyWith('num.yml', 'sandbox: 5'));
    expect(err.message).toContain('sandbox: expected "isolated, network egress = allowlist only", "none" or a mapping');
  });
});
