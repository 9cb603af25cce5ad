import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isWardenError, type WardenError } from '../src/errors.ts';
import { formatFieldPath, loadPolicyFile, parsePolicy, type PolicyProblem } from '../src/policy/index.ts';

const SEED = `agent: support-triage
sandbox: isolated, network egress = allowlist only
mcp_scopes:
  tickets:   [read]
  kb:        [read]
  crm:       [read]
approval_required:
  - send_customer_email
  - refund_request
audit: all_tool_calls
kill_switch: org-wide, tested monthly
`;

const dir = mkdtempSync(join(tmpdir(), 'warden-policy-load-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Loads a file that must fail and returns the error. */
function loadError(name: string, text: string, env: NodeJS.ProcessEnv = {}): WardenError {
  const path = write(name, text);
  try {
    loadPolicyFile(path, env);
  } catch (err) {
    if (isWardenError(err)) return err;
    throw err;
  }
  throw new Error(`${name} loaded but should not have`);
}

const problems = (err: WardenError) => err.details?.problems as PolicyProblem[];

describe('seed policy', () => {
  it('examples/seed-policy.yml is exactly the seed from the issue', () => {
    expect(readFileSync('examples/seed-policy.yml', 'utf8')).toBe(SEED);
  });

  it('loads as written into the normalised policy', () => {
    const p = loadPolicyFile('examples/seed-policy.yml', {});
    expect(p.source).toBe('examples/seed-policy.yml');
    expect(Object.keys(p.agents)).toEqual(['support-triage']);
    const a = p.agents['support-triage']!;
    expect(a.scopes).toEqual({ tickets: ['read'], kb: ['read'], crm: ['read'] });
    expect(a.approvalRequired).toEqual(['send_customer_email', 'refund_request']);
    expect(a.audit).toBe('all_tool_calls');
    // The seed's sandbox line is the strict default: no egress but Warden's own gateway.
    expect(a.sandbox).toEqual({
      mode: 'isolated',
      declared: 'seed',
      networkAllow: [],
      readDeny: [],
      write: [],
      env: [],
      stopGraceMs: 5_000,
    });
    expect(a.killSwitch).toBe('org-wide, tested monthly');
    expect(a.approvalTimeoutMs).toBe(15 * 60_000);
    expect(a.approvers).toEqual([]);
    // Servers named only in scopes exist, unreachable and unclassified.
    expect(Object.keys(p.servers).sort()).toEqual(['crm', 'kb', 'tickets']);
    expect(p.servers.tickets!.transport).toBeUndefined();
    expect(p.servers.tickets!.tools).toEqual({});
    expect(p.control.drill.canaryAgent).toBe('warden-canary');
  });
});

describe('full example', () => {
  it('loads examples/policy.yml with every catalogue tool classified', () => {
    const p = loadPolicyFile('examples/policy.yml', {});
    expect(Object.keys(p.agents).sort()).toEqual(['billing-bot', 'support-triage', 'warden-canary']);
    expect(p.servers.tickets!.transport).toEqual({
      type: 'stdio',
      command: 'node',
      args: ['--import', 'tsx', 'test/fixtures/helpdesk-server.ts', 'tickets'],
      env: {},
    });
    expect(p.servers.tickets!.tools).toEqual({
      list_tickets: { scope: 'read', consequence: 'reversible' },
      read_ticket: { scope: 'read', consequence: 'reversible' },
      close_ticket: { scope: 'write', consequence: 'reversible' },
      send_customer_email: { scope: 'write', consequence: 'customer-facing' },
    });
    expect(p.servers.kb!.tools).toEqual({ search_kb: { scope: 'read', consequence: 'reversible' } });
    expect(p.servers.crm!.tools).toEqual({
      lookup_customer: { scope: 'read', consequence: 'reversible' },
      refund_request: { scope: 'write', consequence: 'irreversible' },
    });
    // The drill canary's upstream is Warden's own `canary-server` command.
    expect(p.servers.canary!.transport).toMatchObject({
      type: 'stdio',
      args: ['--import', 'tsx', 'src/cli/index.ts', 'canary-server'],
    });
    expect(p.servers.canary!.tools).toEqual({ sleep: { scope: 'read', consequence: 'reversible' } });
    const st = p.agents['support-triage']!;
    expect(st).toMatchObject({
      owner: 'U0123ABCD',
      channel: 'C0123ABCD',
      approvers: ['U0456EFGH', 'U0789IJKL'],
      reviewBy: '2027-06-30',
      approvalTimeoutMs: 15 * 60_000,
      scopes: { tickets: ['read'], kb: ['read'], crm: ['read'] },
      limits: {
        callsPerMinute: 60,
        maxDenials: 5,
        denialWindowMs: 600_000,
        maxRejections: 3,
        maxCallDurationMs: 120_000,
        autoHalt: true,
      },
    });
    expect(p.agents['billing-bot']!.scopes.crm).toEqual(['read', 'write']);
    expect(p.agents['billing-bot']!.approvalTimeoutMs).toBe(30 * 60_000);
    expect(p.agents['warden-canary']!.scopes).toEqual({ canary: ['read'] });
    expect(p.control).toEqual({
      halters: [],
      resumers: ['U0123ABCD', 'U0999ONCL'],
      auditors: ['U0888CMPL'],
      oncallChannel: 'C0999OPS1',
      complianceChannel: 'C0888AUDT',
      drill: { schedule: '0 9 1 * *', canaryAgent: 'warden-canary', overdueAfterDays: 35 },
      checkpointSchedule: '0 0 * * *',
      checkpointEveryRows: 10_000,
      reviewReminderSchedule: '0 9 * * 1',
    });
  });

  it('accepts durations as strings or milliseconds, and applies defaults', () => {
    const p = parsePolicy(
      `agents:
  - agent: a
    mcp_scopes: { s: [read] }
    approval_timeout: 90000
    limits: { denial_window: 1h, max_call_duration: 500ms }
  - agent: b
    mcp_scopes: { s: [read] }
    approval_timeout: 7d
servers:
  s: { url: "http://127.0.0.1:9/mcp", tools: { t: { scope: write } } }
`,
      'inline.yml',
      {},
    );
    expect(p.agents.a!.approvalTimeoutMs).toBe(90_000);
    expect(p.agents.a!.limits).toEqual({
      callsPerMinute: undefined,
      maxDenials: undefined,
      denialWindowMs: 3_600_000,
      maxRejections: undefined,
      maxCallDurationMs: 500,
      autoHalt: false,
    });
    expect(p.agents.b!.approvalTimeoutMs).toBe(7 * 86_400_000);
    // A write tool with no stated consequence is taken at its worst.
    expect(p.servers.s!.tools.t).toEqual({ scope: 'write', consequence: 'irreversible' });
    expect(p.servers.s!).toMatchObject({
      timeoutMs: 30_000,
      maxResultBytes: 1_048_576,
      transport: { type: 'http', headers: {} },
    });
  });

  it('resolves ${VAR} in server env and headers from the env given to the loader', () => {
    const p = parsePolicy(
      `servers:
  helpdesk:
    command: node
    env: { HELPDESK_TOKEN: "\${HELPDESK_TOKEN}", MODE: plain }
  crm:
    url: https://crm.example.com/mcp
    headers: { Authorization: "Bearer \${CRM_TOKEN}" }
agents:
  - agent: a
    mcp_scopes: { helpdesk: [read], crm: [read] }
`,
      'env.yml',
      { HELPDESK_TOKEN: 'tok-123', CRM_TOKEN: 'crm-456' },
    );
    expect(p.servers.helpdesk!.transport).toMatchObject({
      type: 'stdio',
      env: { HELPDESK_TOKEN: 'tok-123', MODE: 'plain' },
    });
    expect(p.servers.crm!.transport).toMatchObject({ type: 'http', headers: { Authorization: 'Bearer crm-456' } });
  });
});

describe('invalid policies name file, line, column and field', () => {
  it('a typo key is caught and named, with a suggestion', () => {
    const err = loadError('typo.yml', SEED.replace('mcp_scopes:', 'mcp_scope:'));
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.message).toContain(`${join(dir, 'typo.yml')}:3:1: mcp_scope: unknown key (did you mean "mcp_scopes"?)`);
  });

  it('a typo inside an agents entry points at the key', () => {
    const err = loadError(
      'typo2.yml',
      `agents:
  - agent: a
    mcp_scopes: { kb: [read] }
    aproval_required: [x]
`,
    );
    expect(err.message).toBe(
      `${join(dir, 'typo2.yml')}:4:5: agents[0].aproval_required: unknown key (did you mean "approval_required"?)`,
    );
  });

  it('a bad scope names the list item and the allowed values', () => {
    const err = loadError(
      'bad.yml',
      `servers:
  tickets:
    command: node
agents:
  - agent: support-triage
    mcp_scopes:
      tickets: [admin]
`,
    );
    expect(err.message).toBe(
      `${join(dir, 'bad.yml')}:7:17: agents[0].mcp_scopes.tickets[0]: expected one of read|write, got "admin"`,
    );
  });

  it('a bad owner id and channel id are refused', () => {
    const err = loadError('owner.yml', `${SEED}owner: bob\nchannel: D0123\napprovers: [U0123ABCD, alice]\n`);
    const lines = err.message.split('\n');
    const f = join(dir, 'owner.yml');
    expect(lines).toEqual([
      `${f}:12:8: owner: expected a Slack user id like U0123ABCD, got "bob"`,
      `${f}:13:10: channel: expected a Slack channel id like C0123ABCD or G0123ABCD, got "D0123"`,
      `${f}:14:24: approvers[1]: expected a Slack user id like U0123ABCD, got "alice"`,
    ]);
    expect(problems(err).map((p) => p.field)).toEqual(['owner', 'channel', 'approvers[1]']);
  });

  it('control.auditors: defaults to empty, takes Slack user ids only, and a typo of the key is caught', () => {
    expect(parsePolicy(SEED, 'seed.yml', {}).control.auditors).toEqual([]);
    expect(parsePolicy(`${SEED}control:\n  auditors: [U0AUDIT1, W0AUDIT2]\n`, 'ok.yml', {}).control.auditors).toEqual([
      'U0AUDIT1',
      'W0AUDIT2',
    ]);
    const f = join(dir, 'auditors.yml');
    const bad = loadError('auditors.yml', `${SEED}control:\n  auditors: [U0AUDIT1, compliance-team]\n`);
    expect(bad.message).toBe(
      `${f}:13:24: control.auditors[1]: expected a Slack user id like U0123ABCD, got "compliance-team"`,
    );
    const notList = loadError('auditors2.yml', `${SEED}control:\n  auditors: U0AUDIT1\n`);
    expect(notList.message).toBe(
      `${join(dir, 'auditors2.yml')}:13:13: control.auditors: expected a list, got "U0AUDIT1"`,
    );
    const typo = loadError('auditors3.yml', `${SEED}control:\n  auditor: [U0AUDIT1]\n`);
    expect(typo.message).toBe(
      `${join(dir, 'auditors3.yml')}:13:3: control.auditor: unknown key (did you mean "auditors"?)`,
    );
  });

  it("a bad cron expression is refused with node-cron's reason", () => {
    const err = loadError('cron.yml', `${SEED}control:\n  drill:\n    schedule: '0 9 32 * *'\n`);
    expect(err.message).toMatch(
      new RegExp(
        `^${escapeRegExp(join(dir, 'cron.yml'))}:14:15: control\\.drill\\.schedule: expected a cron expression like "0 9 1 \\* \\*", got "0 9 32 \\* \\*"`,
      ),
    );
  });

  it('a missing env var names the field and variable, never another value', () => {
    const text = `servers:
  crm:
    url: https://crm.example.com/mcp
    headers:
      Authorization: "Bearer \${CRM_TOKEN}"
      X-Other: "\${OTHER_SECRET}"
agents:
  - agent: a
    mcp_scopes: { crm: [read] }
`;
    const err = loadError('env.yml', text, { OTHER_SECRET: 'sekrit-value' });
    expect(err.message).toBe(
      `${join(dir, 'env.yml')}:5:22: servers.crm.headers.Authorization: environment variable CRM_TOKEN is not set`,
    );
    expect(JSON.stringify(err.details)).not.toContain('sekrit-value');
  });

  it('a value of the wrong type under headers is reported without echoing it', () => {
    const err = loadError(
      'hdr.yml',
      `servers:
  crm:
    url: https://crm.example.com/mcp
    headers: { Authorization: 12345678 }
agents:
  - agent: a
    mcp_scopes: { crm: [read] }
`,
    );
    expect(err.message).toContain('servers.crm.headers.Authorization: expected a string');
    expect(err.message).not.toContain('12345678');
  });

  it('a YAML syntax error carries line and column', () => {
    const err = loadError('syntax.yml', 'agent: a\nmcp_scopes:\n  kb: [read\n  crm: : x\n');
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.message.split('\n')[0]).toMatch(
      new RegExp(`^${escapeRegExp(join(dir, 'syntax.yml'))}:\\d+:\\d+: YAML syntax error: `),
    );
    expect(problems(err)[0]!.line).toBeGreaterThanOrEqual(3);
  });

  it('duplicate keys are a syntax error, not a silent override', () => {
    const err = loadError('dup.yml', `${SEED}agent: someone-else\n`);
    expect(err.message).toBe(`${join(dir, 'dup.yml')}:12:1: YAML syntax error: Map keys must be unique`);
  });

  it('reads on_redacted and max_pending, and names the field when either is wrong', () => {
    const policy = loadPolicyFile(
      write('held.yml', 'agents:\n  - agent: a\n    mcp_scopes: {}\n    on_redacted: refuse\n    max_pending: 5\n'),
      {},
    );
    expect(policy.agents.a).toMatchObject({ onRedacted: 'refuse', maxPending: 5 });
    const err = loadError(
      'held-bad.yml',
      'agents:\n  - agent: a\n    mcp_scopes: {}\n    on_redacted: ignore\n    max_pending: 0\n',
    );
    const text = err.message;
    expect(text).toContain('agents[0].on_redacted');
    expect(text).toContain('agents[0].max_pending');
  });

  it('reports every problem, one a line, in file order', () => {
    const err = loadError(
      'many.yml',
      `agents:
  - agent: a
    mcp_scopes: { kb: [read, delete] }
    review_by: 2026-02-30
    approval_timeout: soon
    limits: { calls_per_minute: 0 }
  - mcp_scopes: {}
control:
  checkpoint_schedule: nightly
`,
    );
    const f = join(dir, 'many.yml');
    expect(err.message.split('\n')).toEqual([
      `${f}:3:30: agents[0].mcp_scopes.kb[1]: expected one of read|write, got "delete"`,
      `${f}:4:16: agents[0].review_by: expected a date as YYYY-MM-DD, got "2026-02-30"`,
      `${f}:5:23: agents[0].approval_timeout: expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds, got "soon"`,
      `${f}:6:33: agents[0].limits.calls_per_minute: expected a positive number, got 0`,
      `${f}:7:5: agents[1].agent: required (expected a string)`,
      `${f}:9:24: control.checkpoint_schedule: expected a cron expression like "0 9 1 * *", got "nightly" (expected 5 or 6 fields but got 1)`,
    ]);
  });

  it('cross-references: unknown server in scopes, duplicate agent, unknown canary, both forms at once', () => {
    const err = loadError(
      'xref.yml',
      `servers:
  tickets: { command: node }
agents:
  - agent: a
    mcp_scopes: { tickets: [read], github: [read] }
  - agent: a
    mcp_scopes: { tickets: [read] }
control:
  drill: { canary_agent: nobody }
`,
    );
    const f = join(dir, 'xref.yml');
    expect(err.message.split('\n')).toEqual([
      `${f}:5:36: agents[0].mcp_scopes.github: unknown server "github"; servers declares tickets`,
      `${f}:6:12: agents[1].agent: duplicate agent "a"`,
      `${f}:9:26: control.drill.canary_agent: canary agent "nobody" is not a declared agent`,
    ]);
    const mixed = loadError('mixed.yml', `${SEED}agents: []\n`);
    expect(mixed.message.split('\n')[0]).toBe(
      `${join(dir, 'mixed.yml')}:1:1: agent: agent fields belong inside an \`agents:\` entry when \`agents:\` is used`,
    );
  });

  it('servers: needs exactly one transport; names must survive <server>__<tool>', () => {
    const err = loadError(
      'srv.yml',
      `servers:
  a: { tools: {} }
  b: { command: node, url: "http://127.0.0.1/mcp" }
  c__d: { command: node }
agents:
  - agent: x
    mcp_scopes: { a: [read] }
`,
    );
    expect(problems(err).map((p) => `${p.line}:${p.field}`)).toEqual([
      '2:servers.a',
      '3:servers.b.url',
      '4:servers.c__d',
    ]);
  });

  it('audit cannot be switched off', () => {
    const err = loadError('audit.yml', SEED.replace('audit: all_tool_calls', 'audit: none'));
    expect(err.message).toBe(
      `${join(dir, 'audit.yml')}:10:8: audit: Warden always audits every tool call; expected all_tool_calls, got "none"`,
    );
  });

  it('an empty file and a missing file', () => {
    expect(loadError('empty.yml', '').message).toBe(`${join(dir, 'empty.yml')}:1:1: policy file is empty`);
    let caught: unknown;
    try {
      loadPolicyFile(join(dir, 'nope.yml'), {});
    } catch (err) {
      caught = err;
    }
    expect(isWardenError(caught, 'POLICY_NOT_FOUND')).toBe(true);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('every refusal names its field and says what is expected', () => {
  const AGENT = 'agents:\n  - agent: a\n    mcp_scopes: { s: [read] }\n';
  const SERVER = 'servers:\n  s: { command: node }\n';
  /** The problems of a policy that must be refused, one a line, as `line:col: field: message`. */
  const refusal = (yaml: string, env: NodeJS.ProcessEnv = {}): string[] => {
    try {
      parsePolicy(yaml, 'p.yml', env);
    } catch (err) {
      if (isWardenError(err, 'POLICY_INVALID')) return err.message.split('\n').map((l) => l.replace(/^p\.yml:/, ''));
      throw err;
    }
    throw new Error('expected the policy to be refused');
  };
  const agentWith = (lines: string) => refusal(`${SERVER}${AGENT}${lines}`);

  it('an unknown key is named, with a hint only when a known key is close', () => {
    expect(agentWith('    zzzzqqq: 1\n')).toEqual(['6:5: agents[0].zzzzqqq: unknown key']);
    expect(agentWith('    ownr: U0123ABCD\n')).toEqual(['6:5: agents[0].ownr: unknown key (did you mean "owner"?)']);
    expect(agentWith('    OWNER: U0123ABCD\n')).toEqual(['6:5: agents[0].OWNER: unknown key (did you mean "owner"?)']);
    expect(agentWith('    chanel: C0123ABCD\n')).toEqual([
      '6:5: agents[0].chanel: unknown key (did you mean "channel"?)',
    ]);
    // Two edits away in a five-letter key is too far to guess.
    expect(agentWith('    onwre: U0123ABCD\n')).toEqual(['6:5: agents[0].onwre: unknown key']);
    // One edit in a short key is close enough.
    expect(agentWith('    limits: { auto_hal: true }\n')).toEqual([
      '6:15: agents[0].limits.auto_hal: unknown key (did you mean "auto_halt"?)',
    ]);
  });

  it('values under env, headers, url and args are never echoed', () => {
    expect(refusal(`servers:\n  s: { command: node, env: { K: 123456 } }\n${AGENT}`)).toEqual([
      '2:33: servers.s.env.K: expected a string',
    ]);
    expect(refusal(`servers:\n  s: { url: 123456 }\n${AGENT}`)).toEqual(['2:13: servers.s.url: expected a string']);
    expect(refusal(`servers:\n  s: { url: "ftp://secret-host/x" }\n${AGENT}`)).toEqual([
      '2:13: servers.s.url: expected an http(s) URL',
    ]);
    expect(refusal(`servers:\n  s: { command: node, args: [123456] }\n${AGENT}`)).toEqual([
      '2:30: servers.s.args[0]: expected a string',
    ]);
    // Any other field says what it got.
    expect(refusal(`servers:\n  s: { command: 123456 }\n${AGENT}`)).toEqual([
      '2:17: servers.s.command: expected a string, got 123456',
    ]);
  });

  it('what it got is shown by kind, and cut short when long', () => {
    const got = (value: string) => refusal(`${SERVER}agents:\n  - agent: ${value}\n    mcp_scopes: {}\n`);
    expect(got('5')).toEqual(['4:12: agents[0].agent: expected a string, got 5']);
    expect(got('true')).toEqual(['4:12: agents[0].agent: expected a string, got true']);
    expect(got('{ x: 1 }')).toEqual(['4:12: agents[0].agent: expected a string, got a mapping']);
    expect(got('[1]')).toEqual(['4:12: agents[0].agent: expected a string, got a list']);
    expect(refusal(`${SERVER}agents:\n  - agent:\n    mcp_scopes: {}\n`)).toEqual([
      '4:11: agents[0].agent: expected a string, got null',
    ]);
    const long = 'a b'.repeat(30);
    expect(got(JSON.stringify(long))).toEqual([
      `4:12: agents[0].agent: expected an agent name of letters, digits, "_", "-" or ".", got ${JSON.stringify(long).slice(0, 57)}...`,
    ]);
    // Exactly 60 characters of quoted text are shown whole.
    const fits = 'x'.repeat(58);
    expect(agentWith(`    limits: { auto_halt: ${JSON.stringify(fits)} }\n`)).toEqual([
      `6:26: agents[0].limits.auto_halt: expected a boolean, got "${fits}"`,
    ]);
  });

  it('types, sizes and literals, in words', () => {
    expect(refusal(`${SERVER}agents:\n  - agent: a\n    mcp_scopes: [read]\n`)).toEqual([
      '5:17: agents[0].mcp_scopes: expected a mapping, got a list',
    ]);
    expect(refusal(`${SERVER}agents: { a: 1 }\n`)).toEqual(['3:9: agents: expected a list, got a mapping']);
    expect(refusal('just a string\n')).toEqual(['1:1: expected a mapping, got "just a string"']);
    expect(agentWith('    max_pending: 0\n')).toEqual(['6:18: agents[0].max_pending: expected a number >= 1, got 0']);
    expect(agentWith('    max_pending: 10001\n')).toEqual([
      '6:18: agents[0].max_pending: Too big: expected number to be <=10000, got 10001',
    ]);
    expect(agentWith('    max_pending: 1.5\n')).toEqual([
      '6:18: agents[0].max_pending: expected a whole number, got 1.5',
    ]);
    expect(agentWith('    limits: { calls_per_minute: -1 }\n')).toEqual([
      '6:33: agents[0].limits.calls_per_minute: expected a positive number, got -1',
    ]);
    expect(agentWith('    limits: { calls_per_minute: "5" }\n')).toEqual([
      '6:33: agents[0].limits.calls_per_minute: expected a number, got "5"',
    ]);
    expect(agentWith('    approval_required: [""]\n')).toEqual([
      '6:25: agents[0].approval_required[0]: expected a non-empty string, got ""',
    ]);
    expect(agentWith('    rules:\n      - tool: t\n        then: approve\n        grant: always\n')).toEqual([
      '9:16: agents[0].rules[0].grant: expected never, got "always"',
    ]);
  });

  it('the seed form and the full form: which one, and what each needs', () => {
    expect(refusal('agent: a\n')).toEqual(['1:1: mcp_scopes: required (expected a mapping of server → [read|write])']);
    expect(refusal('mcp_scopes: { s: [read] }\nowner: U0123ABCD\n')).toEqual([
      '1:1: mcp_scopes: the seed form needs `agent:` naming the agent',
    ]);
    expect(refusal(SERVER)).toEqual([
      '1:1: policy declares no agents: add `agent:` (seed form) or `agents:` (full form)',
    ]);
    expect(refusal(`${SERVER}owner: U0123ABCD\nagents: []\n`)).toEqual([
      '3:1: owner: agent fields belong inside an `agents:` entry when `agents:` is used',
    ]);
  });

  it('server names in scopes: reserved, malformed, undeclared, listed twice', () => {
    expect(refusal(`${SERVER}agents:\n  - agent: a\n    mcp_scopes: { warden: [read] }\n`)).toEqual([
      `5:19: agents[0].mcp_scopes.warden: "warden" is reserved for Warden's own tools, not an upstream server`,
    ]);
    expect(refusal('agents:\n  - agent: a\n    mcp_scopes: { "a__b": [read] }\n')).toEqual([
      '3:19: agents[0].mcp_scopes.a__b: server names are letters and digits joined by single "-" or "_"',
    ]);
    expect(refusal(`servers: {}\n${AGENT}`)).toEqual([
      '4:19: agents[0].mcp_scopes.s: unknown server "s"; servers declares none',
    ]);
    expect(refusal(`${SERVER}agents:\n  - agent: a\n    mcp_scopes: { s: [read, read] }\n`)).toEqual([
      '5:22: agents[0].mcp_scopes.s: a scope is listed twice',
    ]);
    expect(refusal(`servers:\n  warden: { command: node }\n  s: { command: node }\n${AGENT}`)).toEqual([
      `2:3: servers.warden: "warden" is reserved for Warden's own tools (warden__await_approval)`,
    ]);
  });

  it('tool names in approval_required, rules and servers', () => {
    expect(agentWith('    approval_required: ["bad name"]\n')).toEqual([
      '6:25: agents[0].approval_required[0]: "bad name" is not a tool name',
    ]);
    expect(agentWith('    rules:\n      - tool: "bad name"\n        then: deny\n')).toEqual([
      '7:15: agents[0].rules[0].tool: "bad name" is not a tool name',
    ]);
    expect(refusal(`servers:\n  s: { command: node, tools: { "bad name": { scope: read } } }\n${AGENT}`)).toEqual([
      '2:32: servers.s.tools["bad name"]: tool names are letters, digits, "_", "-" or "."',
    ]);
  });

  it('transport fields belong to their transport', () => {
    expect(refusal(`servers:\n  s: { command: node, headers: { a: b } }\n${AGENT}`)).toEqual([
      '2:23: servers.s.headers: `headers` is for HTTP servers (`url`); use `env` for a stdio server',
    ]);
    expect(refusal(`servers:\n  s: { url: "http://x/mcp", args: [a], env: { a: b }, cwd: /tmp }\n${AGENT}`)).toEqual([
      '2:29: servers.s.args: `args` is for stdio servers (`command`)',
      '2:40: servers.s.env: `env` is for stdio servers (`command`)',
      '2:55: servers.s.cwd: `cwd` is for stdio servers (`command`)',
    ]);
    expect(refusal(`servers:\n  s: { tools: {} }\n${AGENT}`)).toEqual([
      '2:6: servers.s: a server needs `command` (stdio child) or `url` (Streamable HTTP)',
    ]);
  });

  it('an empty environment variable is named like a missing one', () => {
    expect(refusal(`servers:\n  s: { command: node, env: { K: "\${E}" } }\n${AGENT}`, { E: '' })).toEqual([
      '2:33: servers.s.env.K: environment variable E is empty',
    ]);
  });

  it('a drill schedule needs its canary declared', () => {
    expect(agentWith('control:\n  drill: { schedule: "0 9 1 * *" }\n')).toEqual([
      '7:22: control.drill.schedule: drills need the canary agent "warden-canary" declared under agents (or set drill.canary_agent)',
    ]);
    expect(parsePolicy(`${SERVER}${AGENT}control:\n  drill: { canary_agent: a }\n`, 'p.yml', {}).control.drill).toEqual(
      {
        schedule: undefined,
        canaryAgent: 'a',
        overdueAfterDays: 35,
      },
    );
  });

  it('an alias bomb is a policy error, not a crash', () => {
    const bomb = `x: &a [1]\ny: [${Array(101).fill('*a').join(', ')}]\n`;
    expect(refusal(bomb)).toEqual(['1:1: YAML error: Excessive alias count indicates a resource exhaustion attack']);
    // A few aliases are fine as YAML (the keys are then refused as unknown).
    expect(refusal(`x: &a [1]\ny: [${Array(10).fill('*a').join(', ')}]\n`)).toEqual([
      '1:1: x: unknown key',
      '2:1: y: unknown key',
    ]);
  });

  it('YAML errors keep their first line; a tab is one too', () => {
    expect(refusal('agent: a\n\tmcp_scopes: {}\n')).toEqual([
      '2:1: YAML syntax error: Tabs are not allowed as indentation',
    ]);
  });
});

describe('defaults and normalisation', () => {
  const load = (yaml: string) => parsePolicy(yaml, 'p.yml', {});

  it('an agent with nothing but scopes gets the documented defaults', () => {
    const p = load('servers:\n  s: { command: node }\nagents:\n  - agent: a\n    mcp_scopes: { s: [write, read] }\n');
    expect(p.agents.a).toEqual({
      name: 'a',
      owner: undefined,
      channel: undefined,
      approvers: [],
      reviewBy: undefined,
      scopes: { s: ['write', 'read'] },
      approvalRequired: [],
      rules: [],
      grantMaxMs: undefined,
      approvalTimeoutMs: 15 * 60_000,
      answerWithinMs: 45_000,
      onRedacted: 'hold_and_warn',
      maxPending: 20,
      limits: {
        callsPerMinute: undefined,
        maxDenials: undefined,
        denialWindowMs: 600_000,
        maxRejections: undefined,
        maxCallDurationMs: undefined,
        autoHalt: false,
      },
      audit: 'all_tool_calls',
      sandbox: {
        mode: 'isolated',
        declared: 'default',
        networkAllow: [],
        readDeny: [],
        write: [],
        env: [],
        stopGraceMs: 5_000,
      },
      killSwitch: undefined,
    });
    expect(p.servers.s).toEqual({
      name: 's',
      transport: { type: 'stdio', command: 'node', args: [], env: {} },
      tools: {},
      timeoutMs: 30_000,
      maxResultBytes: 1_048_576,
    });
    expect(p.control).toEqual({
      halters: [],
      resumers: [],
      auditors: [],
      oncallChannel: undefined,
      complianceChannel: undefined,
      drill: { schedule: undefined, canaryAgent: 'warden-canary', overdueAfterDays: 35 },
      checkpointSchedule: undefined,
      checkpointEveryRows: undefined,
      reviewReminderSchedule: undefined,
    });
  });

  it('answer_within: never holds the request open; a duration is read as one', () => {
    const p = load(`servers:
  s: { command: node }
agents:
  - agent: a
    mcp_scopes: { s: [read] }
    answer_within: never
  - agent: b
    mcp_scopes: { s: [read] }
    answer_within: 10s
    grants: { max: 1h }
`);
    expect(p.agents.a!.answerWithinMs).toBeUndefined();
    expect(p.agents.a!.grantMaxMs).toBeUndefined();
    expect(p.agents.b!.answerWithinMs).toBe(10_000);
    expect(p.agents.b!.grantMaxMs).toBe(3_600_000);
  });

  it('the seed form creates the servers its scopes name, unclassified and unreachable', () => {
    const p = load('agent: a\nmcp_scopes: { tickets: [read], kb: [] }\n');
    expect(p.servers.tickets).toEqual({ name: 'tickets', tools: {}, timeoutMs: 30_000, maxResultBytes: 1_048_576 });
    expect(Object.keys(p.servers).sort()).toEqual(['kb', 'tickets']);
    expect(p.agents.a!.scopes).toEqual({ tickets: ['read'], kb: [] });
  });

  it('a server keeps its cwd, timeout and result limit; a read tool is reversible unless it says otherwise', () => {
    const p = load(`servers:
  s:
    command: node
    args: [x.js]
    cwd: /srv
    timeout_ms: 5000
    max_result_bytes: 10
    tools:
      r: { scope: read }
      ri: { scope: read, consequence: irreversible }
      w: { scope: write }
      wr: { scope: write, consequence: reversible }
agents:
  - agent: a
    mcp_scopes: { s: [read] }
`);
    expect(p.servers.s).toEqual({
      name: 's',
      transport: { type: 'stdio', command: 'node', args: ['x.js'], env: {}, cwd: '/srv' },
      tools: {
        r: { scope: 'read', consequence: 'reversible' },
        ri: { scope: 'read', consequence: 'irreversible' },
        w: { scope: 'write', consequence: 'irreversible' },
        wr: { scope: 'write', consequence: 'reversible' },
      },
      timeoutMs: 5000,
      maxResultBytes: 10,
    });
  });

  it('sandbox strings are trimmed; a block is deduplicated; a server sandbox of none is no sandbox', () => {
    const p = load(`servers:
  s: { command: node, sandbox: none }
  t: { command: node, sandbox: { filesystem: { write: [/tmp/x, /tmp/x] } } }
agents:
  - agent: a
    mcp_scopes: { s: [read], t: [read] }
    sandbox: "  none  "
  - agent: b
    mcp_scopes: { s: [read] }
    sandbox: " isolated, network egress = allowlist only "
  - agent: c
    mcp_scopes: { s: [read] }
    sandbox:
      network: { allow: [api.anthropic.com, api.anthropic.com] }
      filesystem: { read_deny: [~/x, ~/x], write: [/w, /w] }
      env: [A, A]
      stop_grace: 2s
`);
    expect(p.agents.a!.sandbox).toMatchObject({ mode: 'none', declared: 'none' });
    expect(p.agents.b!.sandbox).toMatchObject({ mode: 'isolated', declared: 'seed' });
    expect(p.agents.c!.sandbox).toEqual({
      mode: 'isolated',
      declared: 'block',
      networkAllow: ['api.anthropic.com'],
      readDeny: ['~/x'],
      write: ['/w'],
      env: ['A'],
      stopGraceMs: 2_000,
    });
    expect(p.servers.s!.sandbox).toBeUndefined();
    expect(p.servers.t!.sandbox).toMatchObject({ mode: 'isolated', declared: 'block', write: ['/tmp/x'] });
  });

  it('scope, agent and server maps have no prototype', () => {
    const p = load('agent: a\nmcp_scopes: { tickets: [read] }\n');
    expect(Object.getPrototypeOf(p.agents)).toBeNull();
    expect(Object.getPrototypeOf(p.servers)).toBeNull();
    expect(Object.getPrototypeOf(p.agents.a!.scopes)).toBeNull();
    expect(Object.getPrototypeOf(p.servers.tickets!.tools)).toBeNull();
  });
});

describe('formatFieldPath', () => {
  it('dots plain keys, brackets indexes, and quotes anything else', () => {
    expect(formatFieldPath([])).toBe('');
    expect(formatFieldPath(['agents', 0, 'mcp_scopes', 'tickets', 1])).toBe('agents[0].mcp_scopes.tickets[1]');
    expect(formatFieldPath([0, 'a'])).toBe('[0].a');
    expect(formatFieldPath(['servers', 'my-server', 'tools', 'a b'])).toBe('servers.my-server.tools["a b"]');
    expect(formatFieldPath(['1st', '_x', 'x.y'])).toBe('["1st"]._x["x.y"]');
  });
});
