import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { isWardenError } from '../src/errors.ts';
import { PolicyStore, type Policy } from '../src/policy/index.ts';

const dir = mkdtempSync(join(tmpdir(), 'warden-policy-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capturingLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return {
    logger: pino({ level: 'info' }, stream),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const policyText = (scopes: string) => `servers:
  crm:
    url: https://crm.example.com/mcp
    headers: { Authorization: "Bearer \${CRM_TOKEN}" }
    tools: { lookup_customer: { scope: read }, refund_request: { scope: write, consequence: irreversible } }
agents:
  - agent: billing-bot
    mcp_scopes: { crm: ${scopes} }
`;

describe('PolicyStore', () => {
  it('reloads a good change, and keeps the last good policy when a reload fails', () => {
    const path = join(dir, 'policy.yml');
    writeFileSync(path, policyText('[read]'));
    const { logger, lines } = capturingLogger();
    const env = { CRM_TOKEN: 'crm-secret-token-value' };
    const store = new PolicyStore(path, { logger, env });
    const seen: Policy[] = [];
    store.onChange((p) => seen.push(p));
    expect(store.current().agents['billing-bot']!.scopes.crm).toEqual(['read']);

    writeFileSync(path, policyText('[read, write]'));
    expect(store.reload()).toEqual({ ok: true });
    const good = store.current();
    expect(good.agents['billing-bot']!.scopes.crm).toEqual(['read', 'write']);
    expect(seen).toEqual([good]);

    // A typo: the reload fails, the error names the place, the old policy stays in force.
    writeFileSync(path, policyText('[read, wirte]'));
    const bad = store.reload();
    expect(bad.ok).toBe(false);
    if (bad.ok) throw new Error('unreachable');
    expect(bad.error.code).toBe('POLICY_INVALID');
    expect(bad.error.message).toBe(
      `${path}:8:31: agents[0].mcp_scopes.crm[1]: expected one of read|write, got "wirte"`,
    );
    expect(store.current()).toBe(good);
    expect(seen).toHaveLength(1);

    // A deleted file is also a failed reload, not an empty policy.
    rmSync(path);
    const gone = store.reload();
    expect(gone.ok === false && gone.error.code).toBe('POLICY_NOT_FOUND');
    expect(store.current()).toBe(good);

    const failures = lines().filter((l) => l.msg === 'policy reload failed; keeping the last good policy');
    expect(failures).toHaveLength(2);
    expect(failures[0]).toMatchObject({ level: 50, policy: path, code: 'POLICY_INVALID' });
    expect(JSON.stringify(lines())).not.toContain('crm-secret-token-value');
  });

  it('tells each listener the new and the replaced policy; a throwing listener is logged and the others still run', () => {
    const path = join(dir, 'listeners.yml');
    writeFileSync(path, policyText('[read]'));
    const { logger, lines } = capturingLogger();
    const store = new PolicyStore(path, { logger, env: { CRM_TOKEN: 't' } });
    const first = store.current();
    expect(lines()).toEqual([expect.objectContaining({ msg: 'policy loaded', policy: path, agents: 1, servers: 1 })]);
    const calls: string[] = [];
    store.onChange(() => {
      throw new Error('listener broke');
    });
    const off = store.onChange((next, previous) => {
      calls.push(`${previous.agents['billing-bot']!.scopes.crm} → ${next.agents['billing-bot']!.scopes.crm}`);
    });
    writeFileSync(path, policyText('[read, write]'));
    expect(store.reload()).toEqual({ ok: true });
    expect(calls).toEqual(['read → read,write']);
    expect(store.current()).not.toBe(first);
    expect(lines().map((l) => l.msg)).toEqual(['policy loaded', 'policy reloaded', 'policy change listener failed']);
    expect(lines()[1]).toMatchObject({ level: 30, policy: path, agents: 1, servers: 1 });
    expect(lines()[2]).toMatchObject({ level: 50, err: expect.stringContaining('listener broke') });

    // Unsubscribed: no longer told.
    off();
    writeFileSync(path, policyText('[read]'));
    expect(store.reload()).toEqual({ ok: true });
    expect(calls).toHaveLength(1);
  });

  it('a failed reload logs every problem line', () => {
    const path = join(dir, 'problems.yml');
    writeFileSync(path, policyText('[read]'));
    const { logger, lines } = capturingLogger();
    const store = new PolicyStore(path, { logger, env: { CRM_TOKEN: 't' } });
    writeFileSync(path, `${policyText('[read, wirte]')}    owner: bob\n`);
    const result = store.reload();
    expect(result.ok).toBe(false);
    const failed = lines().find((l) => l.msg === 'policy reload failed; keeping the last good policy');
    expect(failed?.problems).toEqual([
      `${path}:8:31: agents[0].mcp_scopes.crm[1]: expected one of read|write, got "wirte"`,
      `${path}:9:12: agents[0].owner: expected a Slack user id like U0123ABCD, got "bob"`,
    ]);
  });

  it('a bad file at start-up throws', () => {
    const path = join(dir, 'bad-start.yml');
    writeFileSync(path, 'agent: a\nmcp_scopes: { kb: [admin] }\n');
    let caught: unknown;
    try {
      new PolicyStore(path, { logger: pino({ level: 'silent' }) });
    } catch (err) {
      caught = err;
    }
    expect(isWardenError(caught, 'POLICY_INVALID')).toBe(true);
    expect((caught as Error).message).toBe(`${path}:2:20: mcp_scopes.kb[0]: expected one of read|write, got "admin"`);
  });
});
