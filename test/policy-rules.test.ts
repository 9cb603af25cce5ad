import { describe, expect, it } from 'vitest';
import { isWardenError } from '../src/errors.ts';
import {
  compileCondition,
  decide,
  parsePolicy,
  policyWarnings,
  toCel,
  type Decision,
  type Policy,
} from '../src/policy/index.ts';
import { helpdeskServersYaml } from './support/policies.ts';

const SERVERS = helpdeskServersYaml(['tickets', 'kb', 'crm']);

/** support-triage from the seed, with write on crm and tickets so rules have something to waive. */
function policyWith(rules: string, scopes = '{ tickets: [read, write], kb: [read], crm: [read, write] }') {
  return parsePolicy(
    `${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: ${scopes}
    approval_required: [send_customer_email, refund_request]
    rules:
${rules}
`,
    'rules.yml',
    {},
  );
}

/** A function, so a mutant that breaks compiling fails tests, not the file's collection (stryker-js#6150). */
const story = () =>
  policyWith(`      - tool: crm__refund_request
        when: "args.amount > 5000"
        then: deny
        reason: refunds over 5,000 go through finance
      - tool: crm__refund_request
        when: "args.amount <= 50"
        then: allow
      - tool: send_customer_email
        when: "!args.to.endsWith('@example.com')"
        then: approve
        reason: mail outside the company
      - tool: send_customer_email
        then: allow`);

/** What tools/list shows (gateway/pipeline.ts): the tools decide, asked without arguments, does not deny. */
const visibleTools = (p: Policy, agent: string, server: string, names: string[]) =>
  names.filter((t) => decide(p, agent, server, t, undefined, { listing: true }).kind !== 'deny');

const kind = (d: Decision) => (d.kind === 'deny' ? `deny:${d.code}` : d.kind);
const call = (tool: string, args: unknown, p = story(), now?: number) => {
  const [server, name] = tool.split('__') as [string, string];
  return decide(p, 'support-triage', server, name, args, { now });
};

function loadError(yaml: string): string {
  try {
    parsePolicy(yaml, 'bad.yml', {});
  } catch (err) {
    if (isWardenError(err, 'POLICY_INVALID')) return err.message;
    throw err;
  }
  throw new Error('expected the policy to be refused');
}

describe('CEL rules decide on arguments, first match wins', () => {
  it('deny, allow and approve as the story says', () => {
    const big = call('crm__refund_request', { amount: 6000 });
    expect(big).toMatchObject({ kind: 'deny', code: 'rule', policyRule: { index: 0, effect: 'deny' } });
    expect((big as { reason: string }).reason).toBe(
      'support-triage may not call refund_request on crm: rules[0] (when args.amount > 5000): refunds over 5,000 go through finance',
    );
    expect(call('crm__refund_request', { amount: 20 })).toMatchObject({
      kind: 'allow',
      policyRule: { index: 1, effect: 'allow' },
    });
    // Between the two: no rule matches, approval_required holds it as before.
    const mid = call('crm__refund_request', { amount: 500 });
    expect(mid).toMatchObject({ kind: 'approve', rule: 'approval_required' });
    expect(mid.kind === 'approve' && mid.policyRule).toBeUndefined();
  });

  it('integer literals compare with whole and fractional JSON numbers alike', () => {
    expect(kind(call('crm__refund_request', { amount: 10 }))).toBe('allow');
    expect(kind(call('crm__refund_request', { amount: 10.5 }))).toBe('allow');
    expect(kind(call('crm__refund_request', { amount: 50 }))).toBe('allow');
    expect(kind(call('crm__refund_request', { amount: 50.01 }))).toBe('approve');
    expect(kind(call('crm__refund_request', { amount: 5000.5 }))).toBe('deny:rule');
    const arith = policyWith(`      - tool: refund_request
        when: "args.amount + 1 == 11 && args.amount * 2 > 19"
        then: deny`);
    expect(kind(call('crm__refund_request', { amount: 10 }, arith))).toBe('deny:rule');
  });

  it('first match wins: an earlier allow beats a later deny', () => {
    const p = policyWith(`      - tool: refund_request
        when: "args.amount < 100"
        then: allow
      - tool: refund_request
        then: deny`);
    expect(kind(call('crm__refund_request', { amount: 5 }, p))).toBe('allow');
    expect(kind(call('crm__refund_request', { amount: 500 }, p))).toBe('deny:rule');
  });

  it('a bare tool name matches on any server, a qualified one only there', () => {
    expect(call('tickets__send_customer_email', { to: 'x@customer.org' })).toMatchObject({
      kind: 'approve',
      policyRule: { index: 2 },
    });
    expect(call('tickets__send_customer_email', { to: 'x@example.com' })).toMatchObject({
      kind: 'allow',
      policyRule: { index: 3 },
    });
    // crm__refund_request does not name a refund_request elsewhere: it is not a rule about tickets.
    const p = policyWith(`      - tool: tickets__refund_request
        then: allow`);
    expect(kind(call('crm__refund_request', { amount: 1 }, p))).toBe('approve');
  });

  it('can read agent, server, tool and now', () => {
    const p = policyWith(`      - tool: close_ticket
        when: "agent == 'support-triage' && server == 'tickets' && tool == 'close_ticket' && now < timestamp('2027-01-01T00:00:00Z')"
        then: deny
        reason: frozen until the new year`);
    expect(kind(call('tickets__close_ticket', {}, p, Date.UTC(2026, 11, 3)))).toBe('deny:rule');
    expect(kind(call('tickets__close_ticket', {}, p, Date.UTC(2027, 0, 2)))).toBe('allow');
  });
});

describe('evaluation fails closed', () => {
  it('a missing field matches deny and approve, and never allow', () => {
    const denied = call('crm__refund_request', { currency: 'EUR' });
    expect(denied).toMatchObject({ kind: 'deny', code: 'rule', policyRule: { index: 0 } });
    expect((denied as { reason: string }).reason).toContain('the condition could not be evaluated');
    expect((denied as { reason: string }).reason).toContain('amount');

    // No `to`: the approve rule fails closed (holds); the unconditional allow after it is never reached.
    const held = call('tickets__send_customer_email', { subject: 'hi' });
    expect(held).toMatchObject({ kind: 'approve', policyRule: { index: 2 } });
    expect((held as { reason: string }).reason).toContain('could not be evaluated');

    // Only an allow rule, failing to evaluate: no match, the usual hold stands.
    const p = policyWith(`      - tool: refund_request
        when: "args.amount <= 50"
        then: allow`);
    expect(kind(call('crm__refund_request', {}, p))).toBe('approve');
  });

  it('a wrong type fails closed too', () => {
    const d = call('crm__refund_request', { amount: '6000' });
    expect(d).toMatchObject({ kind: 'deny', code: 'rule' });
    expect((d as { reason: string }).reason).toContain('no matching overload');
    const p = policyWith(`      - tool: refund_request
        when: "args.amount <= 50"
        then: allow`);
    expect(kind(call('crm__refund_request', { amount: '20' }, p))).toBe('approve');
  });

  it('a condition that reads now without a time fails closed', () => {
    const p = policyWith(`      - tool: close_ticket
        when: "now > timestamp('2020-01-01T00:00:00Z')"
        then: approve`);
    expect(kind(call('tickets__close_ticket', {}, p))).toBe('approve');
  });

  it('a non-boolean result is an error, not a truthy value', () => {
    const p = policyWith(`      - tool: close_ticket
        when: "args.note"
        then: allow
      - tool: close_ticket
        when: "args.note"
        then: deny`);
    const d = call('tickets__close_ticket', { note: 'yes' }, p);
    expect(d).toMatchObject({ kind: 'deny', policyRule: { index: 1 } });
    expect((d as { reason: string }).reason).toContain('not true or false');
  });
});

describe('rules never widen scope', () => {
  it('allow cannot reach a tool the scopes refuse', () => {
    const p = policyWith(
      `      - tool: close_ticket
        then: allow`,
      '{ tickets: [read], kb: [read], crm: [read] }',
    );
    const d = call('tickets__close_ticket', { id: 'T-1' }, p);
    expect(d).toMatchObject({ kind: 'deny', code: 'out_of_scope' });
    expect((d as { reason: string }).reason).toContain('cannot widen');
    // approve cannot either.
    const q = policyWith(
      `      - tool: close_ticket
        then: approve`,
      '{ tickets: [read], kb: [read], crm: [read] }',
    );
    expect(kind(call('tickets__close_ticket', {}, q))).toBe('deny:out_of_scope');
  });

  it('allow waives approval_required for a tool reachable through it', () => {
    // Read-only on crm: refund_request is reachable only through approval_required, and allow waives that hold.
    const p = policyWith(
      `      - tool: refund_request
        when: "args.amount <= 50"
        then: allow`,
      '{ tickets: [read], kb: [read], crm: [read] }',
    );
    expect(kind(call('crm__refund_request', { amount: 5 }, p))).toBe('allow');
  });

  it('policy check warns about rules that can never apply', () => {
    const p = policyWith(
      `      - tool: close_ticket
        then: allow
      - tool: nosuch__thing
        then: deny
      - tool: lookup_customer
        then: allow`,
      '{ tickets: [read], kb: [read], crm: [read] }',
    );
    const warnings = policyWarnings(p, Date.UTC(2026, 0, 1)).filter((w) => w.includes('rules['));
    expect(warnings).toEqual([
      'agent support-triage: rules[0] (close_ticket, then: allow) can never apply: support-triage cannot reach close_ticket through its scopes or approval_required, and a rule never widens scope',
      'agent support-triage: rules[1] (nosuch__thing, then: deny) names a tool no server in its scopes offers',
      'agent support-triage: rules[2] (lookup_customer, then: allow) changes nothing: the tool is already allowed without approval',
    ]);
  });
});

describe('tools/list with rules', () => {
  it('a conditional deny does not hide a tool; an unconditional one does; a conditional approve marks it held', () => {
    const p = policyWith(`      - tool: close_ticket
        when: "args.id == 'T-1'"
        then: deny
      - tool: list_tickets
        then: deny
      - tool: read_ticket
        when: "args.id == 'T-1'"
        then: approve`);
    expect(visibleTools(p, 'support-triage', 'tickets', ['close_ticket', 'list_tickets', 'read_ticket'])).toEqual([
      'close_ticket',
      'read_ticket',
    ]);
    expect(decide(p, 'support-triage', 'tickets', 'read_ticket', undefined, { listing: true }).kind).toBe('approve');
  });
});

describe('conditions are compiled at load', () => {
  const bad = (when: string) =>
    loadError(`${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
    rules:
      - tool: refund_request
        then: allow
      - tool: refund_request
        when: ${JSON.stringify(when)}
        then: deny
`);
  // The agents entry starts on the line after SERVERS; `when` of rules[1] is 8 lines below `agents:`.
  const whenLine = SERVERS.split('\n').length + 8;

  it('a syntax error names file, line, column and field', () => {
    expect(bad('args.amount >')).toMatch(
      new RegExp(
        `^bad\\.yml:${whenLine}:15: agents\\[0\\]\\.rules\\[1\\]\\.when: invalid condition: at 1:\\d+ of the expression: `,
      ),
    );
  });

  it('an unknown name, an unknown function and a constant type error are load errors', () => {
    expect(bad('amount > 5')).toContain(
      `bad.yml:${whenLine}:15: agents[0].rules[1].when: invalid condition: unknown name "amount"; a condition may read args, agent, server, tool, now`,
    );
    expect(bad('lookup(args.x)')).toContain('invalid condition: unknown function "lookup"');
    expect(bad("args.amount > 1 + 'a'")).toContain("invalid condition: found no matching overload for '_+_'");
    expect(bad('1 + 2')).toContain('invalid condition: the condition is always a number, not true or false');
  });

  it('macros may use their own variables', () => {
    const p = policyWith(`      - tool: close_ticket
        when: "args.tags.exists(t, t == 'vip')"
        then: approve`);
    expect(kind(call('tickets__close_ticket', { tags: ['a', 'vip'] }, p))).toBe('approve');
    expect(kind(call('tickets__close_ticket', { tags: ['a'] }, p))).toBe('allow');
  });

  it('grant: never only on approve rules; grants.max is a duration', () => {
    const text = loadError(`${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
    grants: { max: soon }
    rules:
      - tool: refund_request
        then: allow
        grant: never
`);
    expect(text).toContain('agents[0].grants.max: expected a duration like 30s, 15m, 1h, 7d');
    const p = parsePolicy(
      `${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
    approval_required: [refund_request]
    grants: { max: 45m }
    rules:
      - tool: refund_request
        then: approve
        grant: never
`,
      'ok.yml',
      {},
    );
    expect(p.agents['support-triage']).toMatchObject({ grantMaxMs: 45 * 60_000, rules: [{ grantNever: true }] });
    expect(call('crm__refund_request', {}, p)).toMatchObject({ kind: 'approve', policyRule: { grantNever: true } });
    expect(
      loadError(`${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
    rules:
      - tool: refund_request
        then: allow
        grant: never
`),
    ).toContain('agents[0].rules[0].grant: `grant: never` applies to `then: approve` rules only');
  });

  it('rule fields are checked like the rest of the file', () => {
    expect(
      loadError(`${SERVERS}
agents:
  - agent: support-triage
    mcp_scopes: { crm: [read] }
    rules:
      - tool: refund_request
        then: maybe
`),
    ).toContain('agents[0].rules[0].then: expected one of allow|approve|deny');
  });
});

describe('compileCondition and toCel (pure)', () => {
  const input = { agent: 'support-triage', server: 'crm', tool: 'refund_request' };
  const compiled = (source: string) => {
    const c = compileCondition(source);
    if (!c.ok) throw new Error(`expected ${source} to compile: ${c.error}`);
    return c.condition;
  };
  const run = (source: string, args: unknown, now?: number) => compiled(source).evaluate({ ...input, args, now });
  const compileError = (source: string) => {
    const c = compileCondition(source);
    if (c.ok) throw new Error(`expected ${source} to be refused`);
    return c.error;
  };

  it('keeps its source, and reads the names it is given', () => {
    expect(compiled('args.amount > 1').source).toBe('args.amount > 1');
    expect(run("agent == 'support-triage' && server == 'crm' && tool == 'refund_request'", {})).toEqual({
      ok: true,
      value: true,
    });
    expect(run("agent == 'other'", {})).toEqual({ ok: true, value: false });
  });

  it('a call without arguments reads as an empty map, not an error', () => {
    expect(run('has(args.amount)', undefined)).toEqual({ ok: true, value: false });
    expect(run('args.size() == 0', undefined)).toEqual({ ok: true, value: true });
    expect(run('has(args.amount)', { amount: 1 })).toEqual({ ok: true, value: true });
  });

  it('now is a timestamp only when a time is given', () => {
    const after = "now > timestamp('2026-01-01T00:00:00Z')";
    expect(run(after, {}, Date.UTC(2026, 5, 1))).toEqual({ ok: true, value: true });
    expect(run(after, {}, Date.UTC(2025, 5, 1))).toEqual({ ok: true, value: false });
    expect(run(after, {})).toMatchObject({ ok: false });
  });

  it('a result that is not true or false names what it was', () => {
    const gave = (args: unknown, source = 'args.v') => run(source, args);
    expect(gave({ v: 'x' })).toEqual({ ok: false, error: 'the condition gave a string, not true or false' });
    expect(gave({ v: 1 })).toEqual({ ok: false, error: 'the condition gave a number, not true or false' });
    expect(gave({ v: 1.5 })).toEqual({ ok: false, error: 'the condition gave a number, not true or false' });
    expect(gave({ v: null })).toEqual({ ok: false, error: 'the condition gave null, not true or false' });
    expect(gave({ v: [true] })).toEqual({ ok: false, error: 'the condition gave a list, not true or false' });
    expect(gave({ v: { a: true } })).toEqual({ ok: false, error: 'the condition gave a map, not true or false' });
    expect(run('now', {}, 0)).toEqual({
      ok: false,
      error: 'the condition gave a value of another type, not true or false',
    });
  });

  it("an evaluation error is the library's message, not a throw", () => {
    expect(run('args.a / 0 == 1', { a: 1 })).toEqual({ ok: false, error: 'int divide by zero' });
    expect(run('args.a > 1', {})).toEqual({ ok: false, error: 'field not found: a' });
  });

  it('JSON values map to CEL values: whole numbers are ints, objects are maps', () => {
    expect(toCel(null)).toBeNull();
    expect(toCel(undefined)).toBeNull();
    expect(toCel(10)).toBe(10n);
    expect(toCel(-3)).toBe(-3n);
    expect(toCel(10.5)).toBe(10.5);
    // Past 2^53 a JSON number is no longer exact: it stays a double.
    expect(toCel(2 ** 53)).toBe(2 ** 53);
    expect(toCel('x')).toBe('x');
    expect(toCel(false)).toBe(false);
    expect(toCel(() => 1)).toBeNull();
    expect(toCel([1, 'a', [2.5]])).toEqual([1n, 'a', [2.5]]);
    const map = toCel(JSON.parse('{"__proto__":{"x":1},"n":2}'));
    expect(map).toEqual(
      new Map<string, unknown>([
        ['__proto__', new Map([['x', 1n]])],
        ['n', 2n],
      ]),
    );
    // `__proto__` from parsed JSON is an ordinary key a condition can read.
    expect(run("has(args.__proto__) && args['__proto__'] == 1", JSON.parse('{"__proto__":1}'))).toEqual({
      ok: true,
      value: true,
    });
  });

  it('list and map elements are read as written', () => {
    expect(run('[args.n, 1].size() == 2 && args.l[1].k == 2', { n: 1, l: [0, { k: 2 }] })).toEqual({
      ok: true,
      value: true,
    });
    expect(run("{'k': args.n}.k == 1 && {args.key: 1}.size() == 1", { n: 1, key: 'z' })).toEqual({
      ok: true,
      value: true,
    });
    // A variable read only in a map key, or in one entry of several, still makes the map read a variable.
    expect(run('{args.key: 1}.size() == 1', { key: 'z' })).toEqual({ ok: true, value: true });
    expect(run("{'a': args.n, 'b': 1}.a == 1", { n: 1 })).toEqual({ ok: true, value: true });
    expect(run("args.to.lowerAscii().endsWith('@example.com')", { to: 'A@EXAMPLE.COM' })).toEqual({
      ok: true,
      value: true,
    });
  });

  it('macros bind their own variables, and only inside the macro', () => {
    expect(run('args.l.exists(x, x > 1) && args.l.all(y, y > 0)', { l: [1, 2] })).toEqual({ ok: true, value: true });
    expect(run('args.l.map(x, x * 2)[1] == 4', { l: [1, 2] })).toEqual({ ok: true, value: true });
    expect(compileError('args.l.exists(x, x > 1) && x > 1')).toBe(
      'unknown name "x"; a condition may read args, agent, server, tool, now',
    );
    expect(compileError('args.l.exists(x, y > 1)')).toBe(
      'unknown name "y"; a condition may read args, agent, server, tool, now',
    );
  });

  it('a syntax error keeps line and column of the expression and only its first line', () => {
    expect(compileError('args.a +')).toBe('at 1:8 of the expression: found + but expecting end of input');
    expect(compileError('args.a ==\n 1 +')).toBe('at 2:4 of the expression: found + but expecting end of input');
    // Line numbers past 9 keep every digit.
    expect(compileError(`args.a ==${'\n'.repeat(10)} 1 +`)).toBe(
      'at 11:4 of the expression: found + but expecting end of input',
    );
  });

  it('unknown names and functions anywhere are load errors', () => {
    expect(compileError('args.a > 1 && lookup(args.x)')).toBe('unknown function "lookup"');
    // A message of an unknown type would fail on every call instead.
    expect(compileError('Foo{a: args.x} == 1')).toBe(
      'unknown type "Foo"; a condition may build lists and maps, not messages',
    );
    expect(compileError('args.a > 1 || google.protobuf.Duration{seconds: 1} == args.d')).toBe(
      'unknown type "google.protobuf.Duration"; a condition may build lists and maps, not messages',
    );
    expect(compileError('args.x.nosuch()')).toBe('unknown function "nosuch"');
    expect(compileError('[args.a, amount].size() > 0')).toBe(
      'unknown name "amount"; a condition may read args, agent, server, tool, now',
    );
    expect(compileError("{'k': amount}.size() > 0")).toBe(
      'unknown name "amount"; a condition may read args, agent, server, tool, now',
    );
    expect(compileError('{amount: 1}.size() > 0')).toBe(
      'unknown name "amount"; a condition may read args, agent, server, tool, now',
    );
    expect(compileError('args.l.exists(x, lookup(x))')).toBe('unknown function "lookup"');
    expect(compileError('lookup(args.x).y')).toBe('unknown function "lookup"');
    // The first problem is the one named, not the last.
    expect(compileError('amount > 1 && other > 1')).toBe(
      'unknown name "amount"; a condition may read args, agent, server, tool, now',
    );
    expect(compileError('lookup(args.a) && other(args.b)')).toBe('unknown function "lookup"');
  });

  it('constants: a boolean is fine, anything else or a failing part is a load error', () => {
    expect(run('true', {})).toEqual({ ok: true, value: true });
    expect(run('1 < 2', {})).toEqual({ ok: true, value: true });
    expect(run('[1, 2].size() == 2', {})).toEqual({ ok: true, value: true });
    expect(compileError("'x'")).toBe('the condition is always a string, not true or false');
    expect(compileError('1.5')).toBe('the condition is always a number, not true or false');
    expect(compileError('null')).toBe('the condition is always null, not true or false');
    expect(compileError('[1]')).toBe('the condition is always a list, not true or false');
    expect(compileError("{'a': 1}")).toBe('the condition is always a map, not true or false');
    expect(compileError("1 + 'a' == 2")).toBe("found no matching overload for '_+_' applied to '(int, string)'");
    // A failing constant next to a part that reads a variable: on the left, the right, inside a list or a call's target.
    const overload = "found no matching overload for '_+_' applied to '(int, string)'";
    expect(compileError("(1 + 'a') == args.n")).toBe(overload);
    expect(compileError("args.n == 1 + 'a'")).toBe(overload);
    expect(compileError("[args.n, 1 + 'a'].size() > 0")).toBe(overload);
    expect(compileError("(1 + 'a').size() > args.n")).toBe(overload);
    expect(compileError("args.n > 0 && (1 + 'a' == 2)")).toBe(overload);
    // A map of constants is a constant too, so a failing part inside one fails the load.
    expect(compileError("args.n == {'a': 1 + 'a'}.a")).toBe(overload);
    // The first failing constant is the one named.
    expect(compileError("args.n == 1 + 'a' || args.m == 2 - 'b'")).toBe(overload);
  });
});
