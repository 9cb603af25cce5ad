import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { homedir, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWardenError } from '../src/errors.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { createStdioSandboxer } from '../src/sandbox/upstream.ts';
import { startHarness, type Harness } from './support/gateway-harness.ts';
import { FIXTURES, ROOT } from './support/policies.ts';

// A third-party stdio server under the gateway, once sandboxed and once not
// (so the probe is shown able to do what the sandbox stops).
let harness: Harness;
let agent: Client;
let dir: string;
let planted: string;
let listener: Server;
let port: number;
const hostAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && !i.internal && i.family === 'IPv4')?.address;

const server = (name: string, root: string, sandbox: string) => `  ${name}:
    command: ${JSON.stringify(process.execPath)}
    args: [${JSON.stringify(join(FIXTURES, 'probe-server.mjs'))}]
    cwd: ${JSON.stringify(root)}
    ${sandbox}
    tools: { probe: { scope: read } }`;

async function probe(name: string, outside: string): Promise<Record<string, string>> {
  const result = await agent.callTool({
    name: `${name}__probe`,
    arguments: { outside, read: planted, port, host: hostAddress },
  });
  expect(result.isError, JSON.stringify(result)).toBeFalsy();
  return JSON.parse((result.content as Array<{ text: string }>)[0]!.text) as Record<string, string>;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-sandbox-upstream-'));
  for (const root of ['boxed', 'open']) mkdirSync(join(dir, root));
  planted = join(homedir(), `.warden-upstream-test-${randomBytes(4).toString('hex')}`);
  writeFileSync(planted, 'secret\n');
  listener = createServer((socket) => socket.end());
  await new Promise<void>((r) => listener.listen(0, '0.0.0.0', r));
  port = (listener.address() as { port: number }).port;
  const yaml = `servers:
${server('boxed', join(dir, 'boxed'), 'sandbox: isolated, network egress = allowlist only')}
${server('open', join(dir, 'open'), 'sandbox: none')}
agents:
  - agent: support-triage
    mcp_scopes: { boxed: [read], open: [read] }
`;
  harness = await startHarness(yaml, {
    sandboxStdio: createStdioSandboxer({ env: process.env, wardenFiles: [] }),
  });
  agent = await harness.connect('support-triage');
}, 60_000);

afterAll(async () => {
  await harness?.close();
  listener?.close();
  rmSync(planted, { force: true });
  rmSync(dir, { recursive: true, force: true });
});

describe('a stdio upstream with sandbox:', () => {
  it('unsandboxed, the probe can write anywhere, read the home and connect out (the control)', async () => {
    const outside = join(dir, 'open-outside.txt');
    expect(await probe('open', outside)).toEqual({
      writeRoot: 'ok',
      writeOutside: 'ok',
      read: 'ok',
      tcp: 'ok',
      tcpOut: 'ok',
    });
    expect(existsSync(outside)).toBe(true);
  });

  it('sandboxed, it writes only under its root, cannot read the home and has no network', async () => {
    const outside = join(ROOT, `.sandbox-upstream-outside-${randomBytes(4).toString('hex')}`);
    const seen = await probe('boxed', outside);
    expect(seen.writeRoot).toBe('ok');
    expect(existsSync(join(dir, 'boxed', 'probe.txt'))).toBe(true);
    expect(seen.writeOutside).toBe('EROFS');
    expect(existsSync(outside)).toBe(false);
    expect(seen.read).toBe('ENOENT');
    expect(seen.tcp).toBe('ECONNREFUSED');
    expect(seen.tcpOut).toBe('ENETUNREACH');
  });
});

describe('policy: sandbox on servers', () => {
  const load = (yaml: string) => {
    try {
      parsePolicy(yaml, 'p.yml', {});
    } catch (err) {
      if (isWardenError(err, 'POLICY_INVALID')) return err.message;
      throw err;
    }
    return 'loaded';
  };
  it('is for stdio servers, and gets no network', () => {
    expect(
      load(`servers:
  web: { url: "http://127.0.0.1:1/mcp", sandbox: none }
agent: a
mcp_scopes: { web: [read] }`),
    ).toContain('servers.web.sandbox: `sandbox` is for stdio servers');
    expect(
      load(`servers:
  fs: { command: node, sandbox: { network: { allow: [api.example.com] } } }
agent: a
mcp_scopes: { fs: [read] }`),
    ).toContain('servers.fs.sandbox.network.allow: a sandboxed upstream gets no network');
  });
});
