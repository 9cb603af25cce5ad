import { describe, expect, it } from 'vitest';
import { hostAllowed, MODEL_API_HOSTS, parsePolicy, policyWarnings, reachesModelApi } from '../src/policy/index.ts';
import type { SandboxPolicy } from '../src/policy/types.ts';

/** Every warning `warden policy check` prints (policy/warnings.ts), each shown firing and not firing. */

const NOW = Date.UTC(2026, 11, 3, 12);
const SANDBOX = 'sandbox: { network: { allow: [api.anthropic.com] } }';
const OK_AGENT = `owner: U0123ABCD\n    channel: C0123ABCD\n    ${SANDBOX}`;

const warnings = (yaml: string) => policyWarnings(parsePolicy(yaml, 'w.yml', {}), NOW);
/** Only the agents' warnings (a second server nobody reaches also warns, tested below). */
const aboutAgents = (list: string[]) => list.filter((w) => w.startsWith('agent '));

/** One classified server `s` with a read tool `r` and a write tool `w`, and one agent with `lines`. */
const oneAgent = (
  lines: string,
  servers = '  s: { command: node, tools: { r: { scope: read }, w: { scope: write } } }',
) => warnings(`servers:\n${servers}\nagents:\n  - agent: a\n    ${OK_AGENT}\n${lines}`);

describe('a well-formed policy has no warnings', () => {
  it('an owned, reviewed agent that can reach its model, on a classified server', () => {
    expect(oneAgent('    mcp_scopes: { s: [read] }\n    review_by: 2026-12-03\n')).toEqual([]);
  });
});

describe('agent warnings', () => {
  it('review_by in the past, not today', () => {
    expect(oneAgent('    mcp_scopes: { s: [read] }\n    review_by: 2026-12-02\n')).toEqual([
      'agent a: review_by 2026-12-02 has passed; review its access and set a new date',
    ]);
  });

  it('no owner, no channel, or neither', () => {
    const agent = (fields: string) =>
      warnings(
        `servers:\n  s: { command: node, tools: { r: { scope: read } } }\nagents:\n  - agent: a\n    ${SANDBOX}\n    mcp_scopes: { s: [read] }\n${fields}`,
      );
    expect(agent('    owner: U0123ABCD\n')).toEqual([
      'agent a: no channel, so approval cards and alerts for it have nowhere to go',
    ]);
    expect(agent('    channel: C0123ABCD\n')).toEqual([
      'agent a: no owner, so approval cards and alerts for it have nowhere to go',
    ]);
    expect(agent('')).toEqual([
      'agent a: no owner and channel, so approval cards and alerts for it have nowhere to go',
    ]);
  });

  it('sandbox none, and a sandbox with no model API (except for the drill canary)', () => {
    const agent = (name: string, sandbox: string) =>
      warnings(
        `servers:\n  s: { command: node, tools: { r: { scope: read } } }\nagents:\n  - agent: ${name}\n    owner: U0123ABCD\n    channel: C0123ABCD\n    mcp_scopes: { s: [read] }\n    sandbox: ${sandbox}\n`,
      );
    expect(agent('a', 'none')).toEqual([
      "agent a: sandbox: none, so `warden run` starts it with the host's files, credentials and network",
    ]);
    expect(agent('a', '{ network: { allow: [example.com] } }')).toEqual([
      'agent a: its sandbox allows no model API host (e.g. api.anthropic.com in sandbox.network.allow), so an agent started with `warden run` cannot reach its model',
    ]);
    expect(agent('warden-canary', '{ network: { allow: [example.com] } }')).toEqual([]);
  });

  it('approval_required entries that can never hold anything', () => {
    const servers =
      '  s: { command: node, tools: { r: { scope: read } } }\n  t: { command: node, tools: { x: { scope: read } } }';
    expect(
      aboutAgents(oneAgent('    mcp_scopes: { s: [read], t: [] }\n    approval_required: [t__x]\n', servers)),
    ).toEqual(['agent a: approval_required t__x names server t, where a has no scope, so it is always denied']);
    expect(aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    approval_required: [t__x]\n', servers))).toEqual([
      'agent a: approval_required t__x names server t, where a has no scope, so it is always denied',
    ]);
    expect(aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    approval_required: [s__nope]\n', servers))).toEqual(
      ['agent a: approval_required s__nope: server s classifies no tool nope'],
    );
    expect(aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    approval_required: [nope]\n', servers))).toEqual([
      'agent a: approval_required nope is a tool no server in its scopes offers',
    ]);
    // t offers x, but a has no scope on t: x is a tool no server in a's scopes offers.
    expect(
      aboutAgents(oneAgent('    mcp_scopes: { s: [read], t: [] }\n    approval_required: [x]\n', servers)),
    ).toEqual(['agent a: approval_required x is a tool no server in its scopes offers']);
    // Offered, bare and qualified: no warning.
    expect(aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    approval_required: [r, s__r]\n', servers))).toEqual(
      [],
    );
    // A qualified name whose prefix is no server is just a tool name with `__` in it.
    expect(aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    approval_required: [zz__r]\n', servers))).toEqual([
      'agent a: approval_required zz__r is a tool no server in its scopes offers',
    ]);
  });

  it('with an unclassified server in reach, a bare entry might be offered there: no warning', () => {
    const servers = '  s: { command: node, tools: { r: { scope: read } } }\n  u: { command: node }';
    expect(oneAgent('    mcp_scopes: { s: [read], u: [read] }\n    approval_required: [nope]\n', servers)).toEqual([
      'server u: no tools classified, so every tool on it counts as write (irreversible)',
    ]);
  });
});

describe('server and canary warnings', () => {
  it('a server nobody may use, one Warden cannot reach, one with nothing classified', () => {
    expect(
      warnings(`agent: a\n${OK_AGENT.replace(/\n {4}/g, '\n')}\nmcp_scopes: { tickets: [read], kb: [] }\n`),
    ).toEqual([
      'server tickets: no command or url, so the gateway cannot reach it (add it under servers:)',
      'server tickets: no tools classified, so every tool on it counts as write (irreversible)',
      'server kb: no agent has a scope on it',
      'server kb: no command or url, so the gateway cannot reach it (add it under servers:)',
      'server kb: no tools classified, so every tool on it counts as write (irreversible)',
    ]);
  });

  it('a drill canary with a write scope', () => {
    const canary = (scopes: string) =>
      warnings(
        `servers:\n  c: { command: node, tools: { sleep: { scope: read } } }\nagents:\n  - agent: warden-canary\n    owner: U0123ABCD\n    channel: C0123ABCD\n    mcp_scopes: { c: ${scopes} }\n`,
      );
    expect(canary('[read]')).toEqual([]);
    expect(canary('[read, write]')).toEqual([
      'agent warden-canary: the drill canary has a write scope; a canary should only read',
    ]);
  });
});

describe('rule warnings', () => {
  it('a rule on a server the agent has no scope on names that server', () => {
    const servers =
      '  s: { command: node, tools: { r: { scope: read } } }\n  t: { command: node, tools: { x: { scope: read } } }';
    expect(
      aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    rules: [{ tool: x, then: deny }]\n', servers)),
    ).toEqual(['agent a: rules[0] (x, then: deny) can never apply: a has no scope on t']);
  });

  it('a deny rule in reach, an approve rule on a read tool and an allow on a held tool change something', () => {
    expect(
      oneAgent(
        '    mcp_scopes: { s: [read, write] }\n    rules: [{ tool: r, then: deny }, { tool: r, then: approve }, { tool: w, then: allow }]\n',
      ),
    ).toEqual([]);
  });

  it('an approve rule for a tool the scopes refuse can never apply', () => {
    expect(oneAgent('    mcp_scopes: { s: [read] }\n    rules: [{ tool: w, then: approve }]\n')).toEqual([
      'agent a: rules[0] (w, then: approve) can never apply: a cannot reach w through its scopes or approval_required, and a rule never widens scope',
    ]);
  });

  it('an allow rule for a tool allowed on one server and held on another changes something', () => {
    const servers =
      '  s: { command: node, tools: { r: { scope: read } } }\n  t: { command: node, tools: { r: { scope: write } } }';
    expect(
      oneAgent('    mcp_scopes: { s: [read], t: [read, write] }\n    rules: [{ tool: r, then: allow }]\n', servers),
    ).toEqual([]);
    expect(
      aboutAgents(oneAgent('    mcp_scopes: { s: [read] }\n    rules: [{ tool: r, then: allow }]\n', servers)),
    ).toEqual(['agent a: rules[0] (r, then: allow) changes nothing: the tool is already allowed without approval']);
  });

  it('with an unclassified server in reach, no rule is judged', () => {
    const servers = '  s: { command: node, tools: { r: { scope: read } } }\n  u: { command: node }';
    expect(
      oneAgent('    mcp_scopes: { s: [read], u: [read] }\n    rules: [{ tool: nosuch, then: deny }]\n', servers),
    ).toEqual(['server u: no tools classified, so every tool on it counts as write (irreversible)']);
  });
});

describe('hostAllowed and reachesModelApi', () => {
  it('a host matches itself, any case, with or without a port', () => {
    expect(hostAllowed('api.anthropic.com', 'api.anthropic.com')).toBe(true);
    expect(hostAllowed('API.Anthropic.com:443', 'api.ANTHROPIC.com')).toBe(true);
    expect(hostAllowed('api.anthropic.com', 'x.api.anthropic.com')).toBe(false);
    expect(hostAllowed('api.anthropic.com', 'api.anthropic.co')).toBe(false);
  });

  it('*.domain matches subdomains only, and not a longer domain name', () => {
    expect(hostAllowed('*.github.com', 'api.github.com')).toBe(true);
    expect(hostAllowed('*.GitHub.com:443', 'a.b.github.com')).toBe(true);
    expect(hostAllowed('*.github.com', 'github.com')).toBe(false);
    expect(hostAllowed('*.github.com', 'evilgithub.com')).toBe(false);
  });

  const box = (networkAllow: string[]): SandboxPolicy => ({
    mode: 'isolated',
    declared: 'block',
    networkAllow,
    readDeny: [],
    write: [],
    env: [],
    stopGraceMs: 5_000,
  });

  it.each([
    ...MODEL_API_HOSTS,
    '*.anthropic.com',
    'api.openai.com:443',
    'my.openai.azure.com',
    'openai.azure.com:443',
    'bedrock-runtime.eu-west-1.amazonaws.com',
  ])('%s reaches a model API', (entry) => {
    expect(reachesModelApi(box(['example.com', entry]))).toBe(true);
  });

  it.each(['example.com', 'anthropic.com', 'myopenai.azure.com', 'openai.azure.com.evil.io', 'x.bedrock-runtime.io'])(
    '%s does not',
    (entry) => {
      expect(reachesModelApi(box([entry]))).toBe(false);
    },
  );

  it('an empty allow list reaches nothing', () => {
    expect(reachesModelApi(box([]))).toBe(false);
  });
});
