import { describe, expect, it } from 'vitest';
import { isWardenError } from '../src/errors.ts';
import { parsePolicy } from '../src/policy/index.ts';

/**
 * The policy file's shape (policy/schema.ts), at the edges of each format:
 * Slack ids, names, dates, durations, cron, sandbox paths and hosts, URLs.
 * Every refusal names the field; every accepted edge loads.
 */

const AGENT = 'agents:\n  - agent: a\n    mcp_scopes: { s: [read] }\n';
const SERVER = 'servers:\n  s: { command: node }\n';
const withAgent = (lines: string) => `${SERVER}${AGENT}${lines}`;

/** The problems of a refused policy, each as `field: message` (positions are load.ts's, tested there). */
function refusal(yaml: string): string[] {
  try {
    parsePolicy(yaml, 'p.yml', {});
  } catch (err) {
    if (isWardenError(err, 'POLICY_INVALID'))
      return err.message.split('\n').map((l) => l.replace(/^p\.yml:\d+:\d+: /, ''));
    throw err;
  }
  throw new Error('expected the policy to be refused');
}
const loads = (yaml: string) => parsePolicy(yaml, 'p.yml', {});

describe('Slack ids', () => {
  it.each(['U0123ABCD', 'W0123ABCD', 'U01'])('user %s is accepted', (id) => {
    expect(loads(withAgent(`    owner: ${id}\n`)).agents.a!.owner).toBe(id);
  });
  it.each(['U0', 'U0123abcd', 'xU0123ABCD', 'C0123ABCD', 'U0123ABCD '])('user %j is refused', (id) => {
    expect(refusal(withAgent(`    owner: ${JSON.stringify(id)}\n`))).toEqual([
      `agents[0].owner: expected a Slack user id like U0123ABCD, got ${JSON.stringify(id)}`,
    ]);
  });
  it.each(['C0123ABCD', 'G0123ABCD', 'C01'])('channel %s is accepted', (id) => {
    expect(loads(withAgent(`    channel: ${id}\n`)).agents.a!.channel).toBe(id);
  });
  it.each(['C0', 'C0123abcd', 'xC0123', 'D0123ABCD', 'U0123ABCD'])('channel %j is refused', (id) => {
    expect(refusal(withAgent(`    channel: ${id}\n`))).toEqual([
      `agents[0].channel: expected a Slack channel id like C0123ABCD or G0123ABCD, got "${id}"`,
    ]);
  });
  it('approvers, halters, resumers and the control channels take the same ids', () => {
    expect(
      refusal(
        withAgent(
          '    approvers: [bob]\ncontrol:\n  halters: [bob]\n  resumers: [bob]\n  oncall_channel: ops\n  compliance_channel: audit\n',
        ),
      ),
    ).toEqual([
      'agents[0].approvers[0]: expected a Slack user id like U0123ABCD, got "bob"',
      'control.halters[0]: expected a Slack user id like U0123ABCD, got "bob"',
      'control.resumers[0]: expected a Slack user id like U0123ABCD, got "bob"',
      'control.oncall_channel: expected a Slack channel id like C0123ABCD or G0123ABCD, got "ops"',
      'control.compliance_channel: expected a Slack channel id like C0123ABCD or G0123ABCD, got "audit"',
    ]);
  });
});

describe('names', () => {
  const agentNamed = (name: string) => `agents:\n  - agent: ${JSON.stringify(name)}\n    mcp_scopes: {}\n`;
  it.each(['a', 'a.b-c_D9', '9lives', 'a'.repeat(64)])('agent name %s is accepted', (name) => {
    expect(Object.keys(loads(agentNamed(name)).agents)).toEqual([name]);
  });
  it.each(['.a', '-a', '_a', 'a b', 'a/b', 'a'.repeat(65)])('agent name %s is refused', (name) => {
    expect(refusal(agentNamed(name))[0]).toMatch(
      /^agents\[0\]\.agent: expected an agent name of letters, digits, "_", "-" or "\.", got /,
    );
  });

  const serverNamed = (name: string) =>
    `servers:\n  ${JSON.stringify(name)}: { command: node }\nagents:\n  - agent: a\n    mcp_scopes: {}\n`;
  it.each(['a', 'a-b_c', 'A1-2'])('server name %s is accepted', (name) => {
    expect(Object.keys(loads(serverNamed(name)).servers)).toEqual([name]);
  });
  it.each(['-a', 'a_', 'a-', 'a__b', 'a--b', 'a.b', 'a b'])('server name %s is refused', (name) => {
    expect(refusal(serverNamed(name))[0]).toMatch(/: server names are letters and digits joined by single "-" or "_"/);
  });

  const toolNamed = (name: string) =>
    `servers:\n  s: { command: node, tools: { ${JSON.stringify(name)}: { scope: read } } }\n${AGENT}`;
  it.each(['t', 'a.b-c_d', 'x'.repeat(128)])('tool name %s is accepted', (name) => {
    expect(Object.keys(loads(toolNamed(name)).servers.s!.tools)).toEqual([name]);
  });
  it.each(['a b', 'a/b', 'é', 'x'.repeat(129)])('tool name %s is refused', (name) => {
    expect(refusal(toolNamed(name))[0]).toMatch(/: tool names are letters, digits, "_", "-" or "\."$/);
  });
});

describe('dates, durations and schedules', () => {
  it.each(['2027-06-30', '2028-02-29'])('review_by %s is a date', (date) => {
    expect(loads(withAgent(`    review_by: ${date}\n`)).agents.a!.reviewBy).toBe(date);
  });
  it.each(['2027-02-29', '2027-13-01', '2027-00-10', '2027-2-1', 'x2027-02-01', '2027-02-01x', 'tomorrow'])(
    'review_by %s is refused',
    (date) => {
      expect(refusal(withAgent(`    review_by: ${date}\n`))).toEqual([
        `agents[0].review_by: expected a date as YYYY-MM-DD, got "${date}"`,
      ]);
    },
  );

  it.each([
    ['90000', 90_000],
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['2h', 7_200_000],
    ['7d', 604_800_000],
    ['"5 m"', 300_000],
    ['" 5m "', 300_000],
  ])('duration %s is %d ms', (text, ms) => {
    expect(loads(withAgent(`    approval_timeout: ${text}\n`)).agents.a!.approvalTimeoutMs).toBe(ms);
  });
  it.each(['0', '-5', '1.5', '0s', '5w', 'm', '99999999999999999999d', 'true', '[1]'])(
    'duration %s is refused',
    (text) => {
      expect(refusal(withAgent(`    approval_timeout: ${text}\n`))[0]).toMatch(
        /^agents\[0\]\.approval_timeout: expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds, got /,
      );
    },
  );
  it('answer_within takes never or a duration, and says so', () => {
    expect(loads(withAgent('    answer_within: 5s\n')).agents.a!.answerWithinMs).toBe(5_000);
    expect(refusal(withAgent('    answer_within: sometimes\n'))).toEqual([
      'agents[0].answer_within: expected never or a duration like 30s, 15m, 1h, 7d or a number of milliseconds',
    ]);
  });

  it('cron: five or six fields; a bad one is named with the reason', () => {
    expect(loads(withAgent('control:\n  checkpoint_schedule: "0 0 0 * * *"\n')).control.checkpointSchedule).toBe(
      '0 0 0 * * *',
    );
    expect(refusal(withAgent('control:\n  review_reminder_schedule: "99 * * * *"\n'))).toEqual([
      'control.review_reminder_schedule: expected a cron expression like "0 9 1 * *", got "99 * * * *" (99 is a invalid expression for minute)',
    ]);
  });
});

describe('rules, limits and the rest of an agent', () => {
  it('rule fields may not be empty; a reason is at most 500 characters', () => {
    const rule = (fields: string) => withAgent(`    rules:\n      - ${fields}\n`);
    expect(refusal(rule('{ tool: "", then: deny }'))).toEqual([
      'agents[0].rules[0].tool: expected a non-empty string, got ""',
    ]);
    expect(refusal(rule('{ tool: t, when: "", then: deny }'))).toEqual([
      'agents[0].rules[0].when: expected a non-empty string, got ""',
    ]);
    expect(refusal(rule('{ tool: t, reason: "", then: deny }'))).toEqual([
      'agents[0].rules[0].reason: expected a non-empty string, got ""',
    ]);
    expect(loads(rule(`{ tool: t, reason: ${'x'.repeat(500)}, then: deny }`)).agents.a!.rules[0]!.reason).toHaveLength(
      500,
    );
    expect(refusal(rule(`{ tool: t, reason: ${'x'.repeat(501)}, then: deny }`))[0]).toMatch(
      /^agents\[0\]\.rules\[0\]\.reason: Too big: expected string to have <=500 characters/,
    );
  });

  it('on_redacted, max_pending and audit take only what Warden does', () => {
    expect(refusal(withAgent('    on_redacted: warn\n'))).toEqual([
      'agents[0].on_redacted: expected one of hold_and_warn|refuse, got "warn"',
    ]);
    expect(loads(withAgent('    max_pending: 10000\n')).agents.a!.maxPending).toBe(10_000);
    expect(loads(withAgent('    max_pending: 1\n')).agents.a!.maxPending).toBe(1);
    expect(refusal(withAgent('    audit: some\n'))).toEqual([
      'agents[0].audit: Warden always audits every tool call; expected all_tool_calls, got "some"',
    ]);
  });

  it('limits are positive whole numbers, durations and a boolean', () => {
    expect(
      refusal(
        withAgent(
          '    limits: { calls_per_minute: 0, max_denials: 1.5, max_rejections: -1, denial_window: soon, max_call_duration: 0, auto_halt: 1 }\n',
        ),
      ),
    ).toEqual([
      'agents[0].limits.calls_per_minute: expected a positive number, got 0',
      'agents[0].limits.max_denials: expected a whole number, got 1.5',
      'agents[0].limits.max_rejections: expected a positive number, got -1',
      'agents[0].limits.denial_window: expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds, got "soon"',
      'agents[0].limits.max_call_duration: expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds, got 0',
      'agents[0].limits.auto_halt: expected a boolean, got 1',
    ]);
  });

  it('a tool needs a scope; its consequence is one of three', () => {
    const tool = (fields: string) => `servers:\n  s: { command: node, tools: { t: ${fields} } }\n${AGENT}`;
    expect(refusal(tool('{ consequence: reversible }'))).toEqual([
      'servers.s.tools.t.scope: required (expected one of read|write)',
    ]);
    expect(refusal(tool('{ scope: write, consequence: permanent }'))).toEqual([
      'servers.s.tools.t.consequence: expected one of reversible|irreversible|customer-facing, got "permanent"',
    ]);
  });
});

describe('servers', () => {
  const serverWith = (fields: string) => `servers:\n  s: { ${fields} }\n${AGENT}`;
  it.each(['http://127.0.0.1:9/mcp', 'https://crm.example.com/mcp'])('url %s is accepted', (url) => {
    expect(loads(serverWith(`url: "${url}"`)).servers.s!.transport).toEqual({ type: 'http', url, headers: {} });
  });
  it.each(['ftp://host/x', 'httpsx://host/x', 'xhttp://host/x', 'not a url'])('url %s is refused', (url) => {
    expect(refusal(serverWith(`url: "${url}"`))).toEqual(['servers.s.url: expected an http(s) URL']);
  });
  it('command and cwd may not be empty; timeouts are positive', () => {
    expect(refusal(serverWith('command: "", cwd: "", timeout_ms: 0, max_result_bytes: -1'))).toEqual([
      'servers.s.command: expected a non-empty string, got ""',
      'servers.s.cwd: expected a non-empty string, got ""',
      'servers.s.timeout_ms: expected a positive number, got 0',
      'servers.s.max_result_bytes: expected a positive number, got -1',
    ]);
  });
});

describe('sandbox', () => {
  const sandbox = (block: string) => withAgent(`    sandbox: ${block}\n`);
  const EXPECTED =
    'agents[0].sandbox: expected "isolated, network egress = allowlist only", "none" or a mapping with network, filesystem, env, stop_grace';

  it.each(['[a]', 'null', '5', 'true'])('%s is neither a string nor a mapping', (value) => {
    expect(refusal(sandbox(value))).toEqual([EXPECTED]);
  });

  it.each(['/abs', '~', '~/notes', '/a/..b'])('path %s is accepted', (path) => {
    expect(loads(sandbox(`{ filesystem: { write: [${JSON.stringify(path)}] } }`)).agents.a!.sandbox.write).toEqual([
      path,
    ]);
  });
  it.each(['a/b', '~x', './a', ''])('path %j is not absolute', (path) => {
    expect(refusal(sandbox(`{ filesystem: { read_deny: [${JSON.stringify(path)}] } }`))).toEqual([
      `agents[0].sandbox.filesystem.read_deny[0]: expected an absolute path or one under ~/, got ${JSON.stringify(path)}`,
    ]);
  });
  it.each(['/a/../b', '~/..', '/..'])('path %s climbs out', (path) => {
    expect(refusal(sandbox(`{ filesystem: { write: [${JSON.stringify(path)}] } }`))).toEqual([
      'agents[0].sandbox.filesystem.write[0]: a sandbox path may not contain ".."',
    ]);
  });

  it.each(['api.anthropic.com', '*.github.com', 'registry.npmjs.org:443', 'localhost', 'a-b.c9.io:1'])(
    'host %s is accepted',
    (host) => {
      expect(
        loads(sandbox(`{ network: { allow: [${JSON.stringify(host)}] } }`)).agents.a!.sandbox.networkAllow,
      ).toEqual([host]);
    },
  );
  it.each(['a-.com', '-a.com', '*.*.x', 'x:123456', 'https://x.com', 'x.com/path', 'a b', '*', 'x.com:'])(
    'host %s is refused',
    (host) => {
      expect(refusal(sandbox(`{ network: { allow: [${JSON.stringify(host)}] } }`))).toEqual([
        `agents[0].sandbox.network.allow[0]: expected a host such as api.anthropic.com or *.github.com, got ${JSON.stringify(host)}`,
      ]);
    },
  );

  it('env names; every problem in the block is its own line', () => {
    expect(loads(sandbox('{ env: [_A1, b] }')).agents.a!.sandbox.env).toEqual(['_A1', 'b']);
    expect(refusal(sandbox('{ env: ["1A", "A-B"], stop_grace: 0 }'))).toEqual([
      'agents[0].sandbox.env[0]: expected an environment variable name',
      'agents[0].sandbox.env[1]: expected an environment variable name',
      'agents[0].sandbox.stop_grace: expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds, got 0',
    ]);
  });
});

describe('typo hints reach every nested block', () => {
  it.each([
    ['    sandbox: { network: { alow: [] } }\n', 'agents[0].sandbox.network.alow', 'allow'],
    ['    sandbox: { filesystem: { read_dny: [] } }\n', 'agents[0].sandbox.filesystem.read_dny', 'read_deny'],
    ['    sandbox: { filesystem: { writ: [] } }\n', 'agents[0].sandbox.filesystem.writ', 'write'],
    ['    sandbox: { stop_grac: 1s }\n', 'agents[0].sandbox.stop_grac', 'stop_grace'],
    ['control:\n  drill: { schedul: x }\n', 'control.drill.schedul', 'schedule'],
    ['control:\n  drill: { canary_agnt: x }\n', 'control.drill.canary_agnt', 'canary_agent'],
    ['control:\n  drill: { overdue_after_day: 1 }\n', 'control.drill.overdue_after_day', 'overdue_after_days'],
    ['control:\n  checkpoint_every_row: 1\n', 'control.checkpoint_every_row', 'checkpoint_every_rows'],
    ['    limits: { max_denial: 1 }\n', 'agents[0].limits.max_denial', 'max_denials'],
    ['    rules: [{ tool: t, then: deny, reasn: x }]\n', 'agents[0].rules[0].reasn', 'reason'],
  ])('%j', (yaml, field, hint) => {
    expect(refusal(withAgent(yaml))).toContain(`${field}: unknown key (did you mean "${hint}"?)`);
  });

  it('grants.max (the only field of grants, and a required one)', () => {
    expect(refusal(withAgent('    grants: { maxx: 1h }\n'))).toEqual([
      'agents[0].grants.max: required (expected a duration like 30s, 15m, 1h, 7d or a number of milliseconds)',
      'agents[0].grants.maxx: unknown key (did you mean "max"?)',
    ]);
    expect(refusal(withAgent('    rules: [{ tool: t }]\n'))).toEqual([
      'agents[0].rules[0].then: required (expected one of allow|approve|deny)',
    ]);
  });

  it('server and tool fields', () => {
    expect(refusal(`servers:\n  s: { comand: node }\n${AGENT}`)).toContain(
      'servers.s.comand: unknown key (did you mean "command"?)',
    );
    expect(
      refusal(`servers:\n  s: { command: node, tools: { t: { scope: read, descripton: x } } }\n${AGENT}`),
    ).toContain('servers.s.tools.t.descripton: unknown key (did you mean "description"?)');
  });
});
