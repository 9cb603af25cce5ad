import { describe, expect, it } from 'vitest';
import { describeRuleEntry, diffPolicies, parsePolicy } from '../src/policy/index.ts';

/** `warden policy diff` and the policy.changed audit row (policy/diff.ts), in process. */

const P = (yaml: string) => parsePolicy(yaml, 'p.yml', {});
const BASE = `servers:
  s: { command: node, tools: { r: { scope: read }, w: { scope: write } } }
  t: { command: node, tools: { x: { scope: read } } }
agents:
  - agent: a
    mcp_scopes: { s: [read], t: [read] }
`;
const diff = (after: string, before = BASE) => diffPolicies(P(before), P(after));
const withRules = (rules: string, base = BASE) => `${base}    rules: [${rules}]\n`;

describe('diffPolicies', () => {
  it('the same policy: nothing', () => {
    expect(diff(BASE)).toEqual([]);
  });

  it('an agent added or removed, with every tool it could be asked about', () => {
    const more = `${BASE}  - agent: b\n    mcp_scopes: { s: [read, write] }\n`;
    expect(diff(more)).toEqual([
      'b  agent added',
      'b  s__*  deny (no such agent) → approve',
      'b  s__r  deny (no such agent) → allow',
      'b  s__w  deny (no such agent) → approve',
    ]);
    expect(diffPolicies(P(more), P(BASE))).toEqual([
      'b  agent removed',
      'b  s__*  approve → deny (no such agent)',
      'b  s__r  allow → deny (no such agent)',
      'b  s__w  approve → deny (no such agent)',
    ]);
  });

  it('a widened scope: each tool whose outcome changes, in name order, and the scopes', () => {
    expect(diff(BASE.replace('{ s: [read], t', '{ s: [read, write], t'))).toEqual([
      'a  s__*  deny → approve',
      'a  s__w  deny → approve',
      'a  scopes s:read, t:read → s:read+write, t:read',
    ]);
    expect(diff(BASE.replace('{ s: [read], t: [read] }', '{ s: [], t: [read] }'))).toEqual([
      'a  s__r  allow → deny',
      'a  scopes s:read, t:read → s:none, t:read',
    ]);
    expect(diff(BASE.replace('{ s: [read], t: [read] }', '{}'))).toEqual([
      'a  s__r  allow → deny',
      'a  t__x  allow → deny',
      'a  scopes s:read, t:read → none',
    ]);
  });

  it('a server removed: its tools become unknown_server, and the server is listed', () => {
    const fewer = BASE.replace('  t: { command: node, tools: { x: { scope: read } } }\n', '').replace(
      ', t: [read]',
      '',
    );
    expect(diff(fewer)).toEqual([
      'a  t__*  deny → deny (unknown_server)',
      'a  t__x  allow → deny (unknown_server)',
      'a  scopes s:read, t:read → s:read',
      'server t removed',
    ]);
    expect(diffPolicies(P(fewer), P(BASE))).toContain('server t added');
  });

  it('an unconditional rule: the new outcome, and the rule', () => {
    expect(diff(withRules('{ tool: r, then: deny }'))).toEqual(['a  s__r  allow → deny', 'a  rule added: r then deny']);
    expect(diff(withRules('{ tool: r, then: approve, reason: look first }'))).toEqual([
      'a  s__r  allow → approve',
      'a  rule added: r then approve (look first)',
    ]);
  });

  it('a rule that cannot widen scope changes no outcome', () => {
    expect(diff(withRules('{ tool: w, then: allow }'))).toEqual(['a  rule added: w then allow']);
    expect(diff(withRules('{ tool: w, when: "args.a", then: approve }'))).toEqual([
      'a  rule added: w when args.a then approve',
    ]);
  });

  it('conditions in order, first match wins: one is left out only when it ends as the rest would', () => {
    expect(
      diff(
        withRules(
          '{ tool: r, when: "args.a", then: allow }, { tool: r, when: "args.b", then: deny }, { tool: r, then: approve }',
        ),
      ),
    ).toEqual([
      'a  s__r  allow → allow when args.a; deny when args.b; otherwise approve',
      'a  rule added: r when args.a then allow',
      'a  rule added: r when args.b then deny',
      'a  rule added: r then approve',
    ]);
    expect(
      diff(withRules('{ tool: r, when: "args.a", then: deny }, { tool: r, when: "args.b", then: allow }')),
    ).toEqual([
      'a  s__r  allow → deny when args.a; otherwise allow',
      'a  rule added: r when args.a then deny',
      'a  rule added: r when args.b then allow',
    ]);
    // Rules after an unconditional one never apply.
    expect(diff(withRules('{ tool: r, then: deny }, { tool: r, when: "args.a", then: allow }'))).toEqual([
      'a  s__r  allow → deny',
      'a  rule added: r then deny',
      'a  rule added: r when args.a then allow',
    ]);
    // A conditional allow on a tool the scopes refuse is still a deny.
    expect(diff(withRules('{ tool: w, when: "args.a", then: allow }, { tool: w, then: deny }'))).toEqual([
      'a  rule added: w when args.a then allow',
      'a  rule added: w then deny',
    ]);
  });

  it('a qualified rule or approval entry names its tool even when nothing classifies it', () => {
    expect(diff(`${BASE}    approval_required: [t__zz]\n`)).toEqual([
      'a  t__zz  deny → approve',
      'a  approval_required none → t__zz',
    ]);
    expect(
      diff(
        withRules('{ tool: s__new, when: "args.a", then: deny }', BASE.replace('[read], t', '[read, write], t')),
        BASE.replace('[read], t', '[read, write], t'),
      ),
    ).toEqual([
      'a  s__new  approve → deny when args.a; otherwise approve',
      'a  rule added: s__new when args.a then deny',
    ]);
  });

  it('rules removed and reordered', () => {
    const two = withRules('{ tool: r, when: "args.a", then: deny }, { tool: x, then: deny }');
    expect(diffPolicies(P(two), P(BASE))).toEqual([
      'a  s__r  deny when args.a; otherwise allow → allow',
      'a  t__x  deny → allow',
      'a  rule removed: r when args.a then deny',
      'a  rule removed: x then deny',
    ]);
    expect(diff(withRules('{ tool: x, then: deny }, { tool: r, when: "args.a", then: deny }'), two)).toEqual([
      'a  rules reordered (first match wins)',
    ]);
    // Same rules, one changed: an add and a remove, not a reorder.
    expect(diff(withRules('{ tool: r, when: "args.b", then: deny }, { tool: x, then: deny }'), two)).toEqual([
      'a  s__r  deny when args.a; otherwise allow → deny when args.b; otherwise allow',
      'a  rule added: r when args.b then deny',
      'a  rule removed: r when args.a then deny',
    ]);
  });

  it('every agent and control field', () => {
    const full = `${BASE}    approval_required: [r]
    owner: U0123ABCD
    channel: C0123ABCD
    approvers: [U0456EFGH, U0789IJKL]
    review_by: 2027-01-01
    approval_timeout: 1h
    answer_within: never
    on_redacted: refuse
    max_pending: 3
    grants: { max: 30m }
    limits: { calls_per_minute: 5, max_denials: 2, denial_window: 1m, max_rejections: 1, max_call_duration: 90s, auto_halt: true }
control:
  halters: [U0123ABCD]
  resumers: [U0123ABCD, U0456EFGH]
  auditors: [U0123ABCD]
  oncall_channel: C0999OPS1
  compliance_channel: C0888AUDT
  drill: { schedule: "0 9 1 * *", canary_agent: a }
`;
    const forth = [
      'a  s__r  allow → approve',
      'a  approval_required none → r',
      'a  owner none → U0123ABCD',
      'a  channel none → C0123ABCD',
      'a  approvers none → U0456EFGH, U0789IJKL',
      'a  review_by none → 2027-01-01',
      'a  approval_timeout 15m → 1h',
      'a  answer_within 45s → never',
      'a  on_redacted hold_and_warn → refuse',
      'a  max_pending 20 → 3',
      'a  grants.max none → 30m',
      'a  limits.calls_per_minute none → 5',
      'a  limits.max_denials none → 2',
      'a  limits.denial_window 10m → 1m',
      'a  limits.max_rejections none → 1',
      'a  limits.max_call_duration none → 90s',
      'a  limits.auto_halt false → true',
      'control  halters none → U0123ABCD',
      'control  resumers none → U0123ABCD, U0456EFGH',
      'control  auditors none → U0123ABCD',
      'control  oncall_channel none → C0999OPS1',
      'control  compliance_channel none → C0888AUDT',
      'control  drill.schedule none → 0 9 1 * *',
    ];
    expect(diff(full)).toEqual(forth);
    // And back: the same fields, each the other way round.
    const back = diffPolicies(P(full), P(BASE));
    expect(back).toHaveLength(forth.length);
    expect(back).toEqual(
      expect.arrayContaining([
        'a  s__r  approve → allow',
        'a  owner U0123ABCD → none',
        'a  answer_within never → 45s',
        'a  grants.max 30m → none',
        'a  limits.auto_halt true → false',
        'control  resumers U0123ABCD, U0456EFGH → none',
        'control  drill.schedule 0 9 1 * * → none',
      ]),
    );
    expect(diff(full.replace('answer_within: never', 'answer_within: 10s'), full)).toEqual([
      'a  answer_within never → 10s',
    ]);
  });
});

describe('describeRuleEntry', () => {
  const rule = (fields: string) => P(withRules(`{ ${fields} }`)).agents.a!.rules[0]!;
  it('tool, condition, effect, grant and reason, each only when present', () => {
    expect(describeRuleEntry(rule('tool: r, then: deny'))).toBe('r then deny');
    expect(describeRuleEntry(rule('tool: s__r, when: "args.a > 1", then: approve, grant: never, reason: why'))).toBe(
      's__r when args.a > 1 then approve (grant: never) (why)',
    );
    expect(describeRuleEntry(rule('tool: r, then: allow, reason: fine'))).toBe('r then allow (fine)');
  });
});
