import { describe, expect, it } from 'vitest';
import type { SandboxPolicy } from '../src/policy/types.ts';
import { egressAllowed, forbiddenAddress } from '../src/sandbox/egress.ts';
import {
  bwrapArgs,
  expandRunArgs,
  mcpClientConfig,
  sandboxEnv,
  type PathKind,
  type ProfileInput,
} from '../src/sandbox/profile.ts';

const strict: SandboxPolicy = {
  mode: 'isolated',
  declared: 'seed',
  networkAllow: [],
  readDeny: ['~/notes', '/srv/missing'],
  write: ['/var/cache/agent'],
  env: ['ANTHROPIC_API_KEY'],
  stopGraceMs: 5_000,
};

// A made-up host: what exists and what it is, so the builder is tested without touching the disk.
const HOST: Record<string, PathKind> = {
  '/root': 'dir',
  '/home': 'dir',
  '/run': 'dir',
  '/var/run': 'dir',
  '/root/notes': 'dir',
  '/srv/app': 'dir',
  '/srv/app/work': 'dir',
  '/srv/app/data': 'dir',
  '/srv/app/data/warden.db': 'file',
  '/srv/app/policy.yml': 'file',
  '/var/cache/agent': 'file',
};
const inspect = (path: string) => ({
  real: path === '/var/run' ? '/run' : path,
  kind: HOST[path] ?? ('missing' as PathKind),
});

function argsFor(workspace: string, over: Partial<ProfileInput> = {}) {
  return bwrapArgs(
    {
      sandbox: strict,
      workspace,
      runDir: '/tmp/warden-run-x/share',
      homeDir: '/tmp/warden-run-x/home',
      tmpDir: '/tmp/warden-run-x/tmp',
      hostHome: '/root',
      wardenFiles: ['/srv/app/data/warden.db', '/srv/app/policy.yml'],
      gatewayPort: 8787,
      proxyPort: 3128,
      inspect,
      socat: '/usr/bin/socat',
      ...over,
    },
    ['claude', '-p', 'hi'],
  );
}

/** Index of `flag value` (and optional second value) in the argument list. */
function indexOf(args: string[], ...seq: string[]): number {
  for (let i = 0; i < args.length; i++) if (seq.every((s, j) => args[i + j] === s)) return i;
  return -1;
}

describe('bwrapArgs', () => {
  it('hides homes and /run, binds the writable places, then hides Warden files and read_deny over them', () => {
    const args = argsFor('/srv/app/work');
    const at = (...seq: string[]) => {
      const i = indexOf(args, ...seq);
      expect(i, seq.join(' ')).toBeGreaterThanOrEqual(0);
      return i;
    };
    expect(at('--unshare-all')).toBeLessThan(at('--ro-bind', '/', '/'));
    at('--unshare-net');
    at('--cap-drop', 'ALL');
    at('--new-session');
    const workspaceBind = at('--bind', '/srv/app/work', '/srv/app/work');
    expect(at('--tmpfs', '/root')).toBeLessThan(workspaceBind);
    // /var/run is /run: hidden once.
    expect(args.filter((a) => a === '/run').length).toBe(2); // --tmpfs /run and --remount-ro /run
    at('--bind', '/tmp/warden-run-x/tmp', '/tmp');
    at('--bind', '/tmp/warden-run-x/home', '/home/agent');
    at('--ro-bind', '/tmp/warden-run-x/share', '/run/warden');
    at('--bind', '/var/cache/agent', '/var/cache/agent');
    // The database's directory does not hold the workspace: hidden whole. The policy's does: file by file.
    expect(at('--tmpfs', '/srv/app/data')).toBeGreaterThan(workspaceBind);
    expect(at('--ro-bind', '/dev/null', '/srv/app/policy.yml')).toBeGreaterThan(workspaceBind);
    expect(at('--tmpfs', '/root/notes')).toBeGreaterThan(workspaceBind);
    expect(indexOf(args, '/srv/missing')).toBe(-1);
    expect(at('--remount-ro', '/root')).toBeGreaterThan(at('--tmpfs', '/root/notes'));
    expect(args.slice(-4)).toEqual(['3128', 'claude', '-p', 'hi']);
  });

  it("keeps Warden's installation readable but hides a .env beside it", () => {
    const host: Record<string, PathKind> = { ...HOST, '/opt/warden': 'dir', '/opt/warden/.env': 'file' };
    const args = argsFor('/srv/app/work', {
      inspect: (path) => ({ real: path, kind: host[path] ?? 'missing' }),
      readable: ['/opt/warden'],
    });
    const readable = indexOf(args, '--ro-bind', '/opt/warden', '/opt/warden');
    const hidden = indexOf(args, '--ro-bind', '/dev/null', '/opt/warden/.env');
    expect(readable).toBeGreaterThanOrEqual(0);
    // After the installation's bind, or the bind would show it again.
    expect(hidden).toBeGreaterThan(readable);
  });

  it('a workspace inside the database directory keeps the workspace and hides the files', () => {
    const args = argsFor('/srv/app');
    expect(indexOf(args, '--tmpfs', '/srv/app')).toBe(-1);
    expect(indexOf(args, '--tmpfs', '/srv/app/data')).toBeGreaterThan(indexOf(args, '--bind', '/srv/app', '/srv/app'));
  });
});

describe('sandboxEnv', () => {
  it('is an allowlist, whatever the host has', () => {
    const env = sandboxEnv({
      sandbox: strict,
      host: {
        PATH: '/usr/bin',
        LANG: 'C.UTF-8',
        AWS_SECRET_ACCESS_KEY: 'x',
        ANTHROPIC_API_KEY: 'k',
        SSH_AUTH_SOCK: '/s',
      },
      wardenUrl: 'http://127.0.0.1:8787/mcp',
      token: 'wdn_t',
      mcpConfigPath: '/run/warden/mcp.json',
      proxyPort: 3128,
      tmp: '/tmp',
      home: '/home/agent',
    });
    expect(env.AWS_SECRET_ACCESS_KEY).toBeUndefined();
    expect(env.SSH_AUTH_SOCK).toBeUndefined();
    expect(env).toMatchObject({
      PATH: '/usr/bin',
      LANG: 'C.UTF-8',
      ANTHROPIC_API_KEY: 'k',
      HOME: '/home/agent',
      TMPDIR: '/tmp',
      HTTPS_PROXY: 'http://127.0.0.1:3128',
      WARDEN_URL: 'http://127.0.0.1:8787/mcp',
      WARDEN_AGENT_TOKEN: 'wdn_t',
      WARDEN_MCP_CONFIG: '/run/warden/mcp.json',
    });
  });

  it('the MCP config names Warden as the only server', () => {
    expect(JSON.parse(mcpClientConfig('http://127.0.0.1:8787/mcp', 'wdn_t'))).toEqual({
      mcpServers: {
        warden: { type: 'http', url: 'http://127.0.0.1:8787/mcp', headers: { Authorization: 'Bearer wdn_t' } },
      },
    });
  });

  it('expands $WARDEN_MCP_CONFIG and $WARDEN_URL in arguments, never the token', () => {
    expect(
      expandRunArgs(
        ['--mcp-config', '$WARDEN_MCP_CONFIG', 'url=${WARDEN_URL}', '$WARDEN_AGENT_TOKEN', '$WARDEN_URLX'],
        {
          mcpConfig: '/run/warden/mcp.json',
          url: 'http://127.0.0.1:8787/mcp',
        },
      ),
    ).toEqual([
      '--mcp-config',
      '/run/warden/mcp.json',
      'url=http://127.0.0.1:8787/mcp',
      '$WARDEN_AGENT_TOKEN',
      '$WARDEN_URLX',
    ]);
  });
});

describe('egress rules', () => {
  it('matches hosts, wildcard subdomains and ports', () => {
    const allow = ['api.anthropic.com', '*.github.com', 'registry.example.com:8443'];
    expect(egressAllowed(allow, 'api.anthropic.com', 443)).toBe(true);
    expect(egressAllowed(allow, 'API.anthropic.com', 443)).toBe(true);
    expect(egressAllowed(allow, 'api.anthropic.com', 22)).toBe(false);
    expect(egressAllowed(allow, 'evil-api.anthropic.com', 443)).toBe(false);
    expect(egressAllowed(allow, 'api.github.com', 443)).toBe(true);
    expect(egressAllowed(allow, 'github.com', 443)).toBe(false);
    expect(egressAllowed(allow, 'evilgithub.com', 443)).toBe(false);
    expect(egressAllowed(allow, 'registry.example.com', 8443)).toBe(true);
    expect(egressAllowed(allow, 'registry.example.com', 443)).toBe(false);
    expect(egressAllowed([], 'api.anthropic.com', 443)).toBe(false);
  });

  it('never lets a name lead to loopback, link-local or the unspecified address', () => {
    for (const address of [
      '127.0.0.1',
      '127.8.9.10',
      '::1',
      '::ffff:127.0.0.1',
      '169.254.169.254',
      '0.0.0.0',
      '::',
      'fe80::1',
    ])
      expect(forbiddenAddress(address), address).toBe(true);
    for (const address of ['192.0.2.2', '10.1.2.3', '2606:4700::1'])
      expect(forbiddenAddress(address), address).toBe(false);
  });
});
