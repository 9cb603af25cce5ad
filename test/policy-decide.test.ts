import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  classifyTool,
  classifyToolDetailed,
  decide,
  describeRule,
  loadPolicyFile,
  matchesApprovalRule,
  parsePolicy,
  policyWarnings,
  qualifiedToolName,
  splitQualifiedName,
  type Decision,
} from '../src/policy/index.ts';
import type { ToolAnnotations } from '../src/policy/types.ts';
import { helpdeskServersYaml } from './support/policies.ts';

const seed = loadPolicyFile('examples/seed-policy.yml', {});
/*
 * Loaded in each test, not at import: the example's rules compile CEL, and a mutant that breaks
 * compiling must fail tests, not the file's collection, which Stryker's vitest runner counts as no
 * failure at all (stryker-js#6150).
 */
const full = () => loadPolicyFile('examples/policy.yml', {});

const CATALOGUE = helpdeskServersYaml(['tickets', 'kb', 'crm']);
/** The seed as written, plus where its tools live: the seed form accepts a servers block. */
const seedWithCatalogue = parsePolicy(
  readFileSync('examples/seed-policy.yml', 'utf8') + CATALOGUE,
  'seed+catalogue.yml',
  {},
);

const kind = (d: Decision) =>
  d.kind === 'deny' ? `deny:${d.code}` : d.kind === 'approve' ? `approve:${d.rule}` : 'allow';

describe('the seed story', () => {
  it('with its tools classified: support-triage reads everything; email and refunds need a human', () => {
    const p = seedWithCatalogue;
    for (const [server, tool] of [
      ['tickets', 'list_tickets'],
      ['tickets', 'read_ticket'],
      ['kb', 'search_kb'],
      ['crm', 'lookup_customer'],
    ] as const) {
      expect(kind(decide(p, 'support-triage', server, tool, {})), `${server}/${tool}`).toBe('allow');
    }
    const email = decide(p, 'support-triage', 'tickets', 'send_customer_email', { ticket_id: 'T-1' });
    expect(email).toMatchObject({
      kind: 'approve',
      rule: 'approval_required',
      tool: { scope: 'write', consequence: 'customer-facing' },
    });
    expect(kind(decide(p, 'support-triage', 'crm', 'refund_request', {}))).toBe('approve:approval_required');
    // Not in approval_required and beyond read scope: refused, with a reason a model can act on.
    const close = decide(p, 'support-triage', 'tickets', 'close_ticket', { id: 'T-1' });
    expect(close).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason: 'support-triage has read scope on tickets; close_ticket is write (reversible)',
    });
  });

  it('as written (nothing classified): approval tools are held, everything else fails closed', () => {
    expect(kind(decide(seed, 'support-triage', 'tickets', 'send_customer_email', {}))).toBe(
      'approve:approval_required',
    );
    expect(kind(decide(seed, 'support-triage', 'crm', 'refund_request', {}))).toBe('approve:approval_required');
    const read = decide(seed, 'support-triage', 'tickets', 'read_ticket', {});
    expect(read).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'support-triage has read scope on tickets; read_ticket is not classified in the policy, so it counts as write (irreversible)',
    });
    expect(kind(decide(seed, 'support-triage', 'github', 'create_issue', {}))).toBe('deny:unknown_server');
  });
});

describe('the full example', () => {
  it('billing-bot: write scope allows reversible writes and holds irreversible ones', () => {
    const refund = decide(full(), 'billing-bot', 'crm', 'refund_request', { amount: 10 });
    expect(refund).toEqual({
      kind: 'approve',
      rule: 'consequential',
      reason: 'billing-bot has write scope on crm; refund_request is write (irreversible), so a human must approve it',
      tool: { scope: 'write', consequence: 'irreversible' },
    });
    expect(kind(decide(full(), 'billing-bot', 'crm', 'lookup_customer', {}))).toBe('allow');
    expect(kind(decide(full(), 'billing-bot', 'tickets', 'close_ticket', {}))).toBe('deny:out_of_scope');
    expect(kind(decide(full(), 'billing-bot', 'kb', 'search_kb', {}))).toBe('deny:out_of_scope');
  });

  it('a qualified approval_required entry matches only its server', () => {
    expect(kind(decide(full(), 'support-triage', 'crm', 'refund_request', { amount: 500 }))).toBe(
      'approve:approval_required',
    );
    // Same bare name on another server is not covered by crm__refund_request.
    const p = parsePolicy(
      `servers:
  crm: { command: node, tools: { refund_request: { scope: write } } }
  shop: { command: node, tools: { refund_request: { scope: write } } }
agents:
  - agent: a
    mcp_scopes: { crm: [read], shop: [read] }
    approval_required: [crm__refund_request]
`,
      'q.yml',
      {},
    );
    expect(kind(decide(p, 'a', 'crm', 'refund_request', {}))).toBe('approve:approval_required');
    expect(kind(decide(p, 'a', 'shop', 'refund_request', {}))).toBe('deny:out_of_scope');
  });

  it('the canary reads its drill server and nothing else', () => {
    expect(kind(decide(full(), 'warden-canary', 'canary', 'sleep', {}))).toBe('allow');
    expect(kind(decide(full(), 'warden-canary', 'kb', 'search_kb', {}))).toBe('deny:out_of_scope');
    expect(decide(full(), 'warden-canary', 'tickets', 'list_tickets', {})).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason: 'warden-canary has no scope on tickets, so it may call none of its tools',
    });
  });

  it('has no warnings today, and warns once a review date passes', () => {
    expect(policyWarnings(full(), Date.parse('2026-11-25T00:00:00Z'))).toEqual([]);
    const later = policyWarnings(full(), Date.parse('2027-04-01T00:00:00Z'));
    expect(later).toEqual(['agent billing-bot: review_by 2027-03-31 has passed; review its access and set a new date']);
  });
});

describe('fail closed', () => {
  it('unknown agent, server and tool are denied', () => {
    expect(decide(full(), 'mallory', 'kb', 'search_kb', {})).toMatchObject({ kind: 'deny', code: 'unknown_agent' });
    expect(decide(full(), 'support-triage', 'github', 'search_kb', {})).toMatchObject({
      kind: 'deny',
      code: 'unknown_server',
    });
    const upstream = new Set(['search_kb']);
    expect(decide(full(), 'support-triage', 'kb', 'drop_kb', {}, { upstreamTools: upstream })).toEqual({
      kind: 'deny',
      code: 'unknown_tool',
      reason: 'kb offers no tool "drop_kb"',
    });
    expect(kind(decide(full(), 'support-triage', 'kb', 'search_kb', {}, { upstreamTools: upstream }))).toBe('allow');
  });

  it('an unclassified tool is write + irreversible: denied on read scope, held on write scope', () => {
    expect(classifyTool(full(), 'crm', 'delete_customer')).toEqual({ scope: 'write', consequence: 'irreversible' });
    expect(kind(decide(full(), 'support-triage', 'crm', 'delete_customer', {}))).toBe('deny:out_of_scope');
    expect(decide(full(), 'billing-bot', 'crm', 'delete_customer', {})).toMatchObject({
      kind: 'approve',
      rule: 'consequential',
      tool: { scope: 'write', consequence: 'irreversible' },
    });
  });

  it('halted comes first, before even an unknown agent', () => {
    const org = decide(full(), 'nobody', 'nowhere', 'nothing', {}, { halted: { scope: 'org', reason: 'drill' } });
    expect(org).toMatchObject({ kind: 'deny', code: 'halted' });
    expect((org as { reason: string }).reason).toContain('org-wide');
    const one = decide(
      full(),
      'support-triage',
      'kb',
      'search_kb',
      {},
      { halted: { scope: 'agent', reason: 'runaway loop' } },
    );
    expect(one).toEqual({
      kind: 'deny',
      code: 'halted',
      reason:
        'support-triage is halted by the kill switch (reason: runaway loop); no tool calls run until an operator resumes it',
    });
  });
});

describe('annotations only tighten', () => {
  it('readOnlyHint:false makes a read tool write', () => {
    expect(classifyTool(full(), 'tickets', 'read_ticket', { readOnlyHint: false })).toEqual({
      scope: 'write',
      consequence: 'reversible',
    });
    const d = decide(full(), 'support-triage', 'tickets', 'read_ticket', {}, { annotations: { readOnlyHint: false } });
    expect(d).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'support-triage has read scope on tickets; read_ticket is write (reversible) because the upstream marks it readOnlyHint: false',
    });
  });

  it('destructiveHint:true makes a tool irreversible', () => {
    expect(classifyTool(full(), 'tickets', 'close_ticket', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(
      kind(decide(full(), 'billing-bot', 'crm', 'lookup_customer', {}, { annotations: { destructiveHint: true } })),
    ).toBe('approve:consequential');
    // customer-facing is already held for approval; it keeps its more specific label.
    expect(classifyTool(full(), 'tickets', 'send_customer_email', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'customer-facing',
    });
  });

  it('readOnlyHint:true never loosens a write or unclassified tool', () => {
    expect(classifyTool(full(), 'crm', 'refund_request', { readOnlyHint: true, destructiveHint: false })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(classifyTool(full(), 'crm', 'mystery', { readOnlyHint: true })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(kind(decide(full(), 'support-triage', 'crm', 'mystery', {}, { annotations: { readOnlyHint: true } }))).toBe(
      'deny:out_of_scope',
    );
    expect(
      kind(decide(full(), 'support-triage', 'tickets', 'close_ticket', {}, { annotations: { readOnlyHint: true } })),
    ).toBe('deny:out_of_scope');
  });
});

describe('names and tool lists', () => {
  it('qualified names round-trip', () => {
    expect(qualifiedToolName('tickets', 'read_ticket')).toBe('tickets__read_ticket');
    expect(splitQualifiedName('tickets__read_ticket')).toEqual({ server: 'tickets', tool: 'read_ticket' });
    // Tool names may contain "__"; server names may not, so the first separator wins.
    expect(splitQualifiedName('crm__bulk__export')).toEqual({ server: 'crm', tool: 'bulk__export' });
    expect(splitQualifiedName('read_ticket')).toBeNull();
    expect(splitQualifiedName('__x')).toBeNull();
    expect(splitQualifiedName('x__')).toBeNull();
  });

  it('allows or holds the tools tools/list shows, denies the ones it hides', () => {
    // listTools (gateway/pipeline.ts) shows exactly the tools decide does not deny.
    const visibleTools = (
      policy: ReturnType<typeof full>,
      agent: string,
      server: string,
      names: string[],
      annotations: Record<string, ToolAnnotations> = {},
    ) =>
      names.filter((t) => decide(policy, agent, server, t, undefined, { annotations: annotations[t] }).kind !== 'deny');
    const offered = ['list_tickets', 'read_ticket', 'close_ticket', 'send_customer_email', 'mystery'];
    expect(visibleTools(full(), 'support-triage', 'tickets', offered)).toEqual([
      'list_tickets',
      'read_ticket',
      'send_customer_email',
    ]);
    expect(visibleTools(full(), 'billing-bot', 'crm', ['lookup_customer', 'refund_request', 'mystery'])).toEqual([
      'lookup_customer',
      'refund_request',
      'mystery',
    ]);
    expect(visibleTools(full(), 'warden-canary', 'crm', ['lookup_customer'])).toEqual([]);
    expect(visibleTools(full(), 'mallory', 'kb', ['search_kb'])).toEqual([]);
    // An annotation that tightens a read tool to write hides it from a read-only agent.
    expect(visibleTools(full(), 'support-triage', 'kb', ['search_kb'], { search_kb: { readOnlyHint: false } })).toEqual(
      [],
    );
  });
});

describe('names an agent controls are never inherited members', () => {
  const names = ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf'];

  it('denies prototype-named agents, servers and tools instead of throwing', () => {
    for (const n of names) {
      expect(decide(full(), n, 'tickets', 'read_ticket', {})).toMatchObject({ kind: 'deny', code: 'unknown_agent' });
      expect(decide(full(), 'support-triage', n, 'read_ticket', {})).toMatchObject({
        kind: 'deny',
        code: 'unknown_server',
      });
      // An unknown tool on a granted server is unclassified: write + irreversible, so a read-only agent is refused.
      expect(decide(full(), 'support-triage', 'tickets', n, {})).toMatchObject({ kind: 'deny', code: 'out_of_scope' });
      expect(classifyTool(full(), 'tickets', n)).toEqual({ scope: 'write', consequence: 'irreversible' });
      expect(classifyTool(full(), n, n)).toEqual({ scope: 'write', consequence: 'irreversible' });
    }
  });

  it('the loaded maps have no prototype to inherit from', () => {
    expect(full().agents.constructor).toBeUndefined();
    expect(full().servers.toString).toBeUndefined();
    expect(full().servers.tickets!.tools.hasOwnProperty).toBeUndefined();
    expect(full().agents['support-triage']!.scopes.valueOf).toBeUndefined();
  });
});

describe('every decision, word for word', () => {
  /** One agent with read on kb, read+write on tickets and crm, an empty scope on shop, and its own rules. */
  const policy = (extra = '') =>
    parsePolicy(
      `servers:
  kb: { command: node, tools: { search_kb: { scope: read }, audit_kb: { scope: read, consequence: irreversible }, notify_kb: { scope: read, consequence: customer-facing } } }
  tickets:
    command: node
    tools:
      read_ticket: { scope: read }
      close_ticket: { scope: write, consequence: reversible }
      send_customer_email: { scope: write, consequence: customer-facing }
  crm: { command: node, tools: { refund_request: { scope: write } } }
  shop: { command: node, tools: { browse: { scope: read } } }
agents:
  - agent: bot
    mcp_scopes: { kb: [read], tickets: [read, write], crm: [read, write], shop: [] }
${extra}`,
      'words.yml',
      {},
    );
  const p = policy('    approval_required: [tickets__read_ticket, search_kb]\n');

  it('unknown agent and unknown server', () => {
    expect(decide(p, 'mallory', 'kb', 'search_kb', {})).toEqual({
      kind: 'deny',
      code: 'unknown_agent',
      reason: 'agent "mallory" is not in the policy, so it may call no tools',
    });
    expect(decide(p, 'bot', 'github', 'search_kb', {})).toEqual({
      kind: 'deny',
      code: 'unknown_server',
      reason: 'server "github" is not in the policy, so no agent may call its tools',
    });
  });

  it('an empty scope list is no scope: nothing on that server, not even a read', () => {
    expect(decide(p, 'bot', 'shop', 'browse', {})).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason: 'bot has no scope on shop, so it may call none of its tools',
    });
    // The scope check comes before the upstream's tool list.
    expect(decide(p, 'bot', 'shop', 'nosuch', {}, { upstreamTools: new Set(['browse']) })).toMatchObject({
      code: 'out_of_scope',
    });
  });

  it('an unknown tool is refused before approval_required could hold it', () => {
    expect(decide(p, 'bot', 'kb', 'search_kb', {}, { upstreamTools: new Set(['other']) })).toEqual({
      kind: 'deny',
      code: 'unknown_tool',
      reason: 'kb offers no tool "search_kb"',
    });
  });

  it('halts without a reason, org-wide and for one agent', () => {
    expect(decide(p, 'bot', 'kb', 'search_kb', {}, { halted: { scope: 'org', reason: '' } })).toEqual({
      kind: 'deny',
      code: 'halted',
      reason: 'all agents are halted by the org-wide kill switch; no tool calls run until an operator resumes',
    });
    expect(decide(p, 'bot', 'kb', 'search_kb', {}, { halted: { scope: 'agent', reason: '' } })).toEqual({
      kind: 'deny',
      code: 'halted',
      reason: 'bot is halted by the kill switch; no tool calls run until an operator resumes it',
    });
    expect(decide(p, 'bot', 'kb', 'search_kb', {}, { halted: { scope: 'org', reason: 'drill' } })).toMatchObject({
      reason:
        'all agents are halted by the org-wide kill switch (reason: drill); no tool calls run until an operator resumes',
    });
  });

  it('approval_required, bare or qualified, holds even a read tool, and says why', () => {
    expect(decide(p, 'bot', 'kb', 'search_kb', {})).toEqual({
      kind: 'approve',
      rule: 'approval_required',
      reason:
        "bot may call search_kb on kb only with a human's approval (approval_required); search_kb is read (reversible)",
      tool: { scope: 'read', consequence: 'reversible' },
    });
    expect(decide(p, 'bot', 'tickets', 'read_ticket', {})).toMatchObject({
      kind: 'approve',
      rule: 'approval_required',
    });
    // An unclassified tool on a read server: held by approval_required, with its class spelled out.
    const q = policy('    approval_required: [mystery]\n');
    expect(decide(q, 'bot', 'kb', 'mystery', {})).toEqual({
      kind: 'approve',
      rule: 'approval_required',
      reason:
        "bot may call mystery on kb only with a human's approval (approval_required); mystery is not classified in the policy, so it counts as write (irreversible)",
      tool: { scope: 'write', consequence: 'irreversible' },
    });
  });

  it('write scope: reversible writes run, irreversible and customer-facing ones are held', () => {
    const q = policy();
    expect(decide(q, 'bot', 'tickets', 'close_ticket', {})).toEqual({
      kind: 'allow',
      tool: { scope: 'write', consequence: 'reversible' },
    });
    expect(decide(q, 'bot', 'tickets', 'read_ticket', {})).toEqual({
      kind: 'allow',
      tool: { scope: 'read', consequence: 'reversible' },
    });
    expect(decide(q, 'bot', 'tickets', 'send_customer_email', {})).toEqual({
      kind: 'approve',
      rule: 'consequential',
      reason:
        'bot has write scope on tickets; send_customer_email is write (customer-facing), so a human must approve it',
      tool: { scope: 'write', consequence: 'customer-facing' },
    });
    // A read tool declared irreversible still runs on read scope: scope decides reads.
    expect(decide(q, 'bot', 'kb', 'audit_kb', {})).toEqual({
      kind: 'allow',
      tool: { scope: 'read', consequence: 'irreversible' },
    });
  });

  it('annotations: each tightening is named, in order, and only a real tightening', () => {
    const q = policy();
    // Both hints on a read tool: write, irreversible, both named.
    expect(
      decide(q, 'bot', 'kb', 'search_kb', {}, { annotations: { readOnlyHint: false, destructiveHint: true } }),
    ).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'bot has read scope on kb; search_kb is write (irreversible) because the upstream marks it readOnlyHint: false, destructiveHint: true',
    });
    // destructiveHint alone on a read tool makes it a write too.
    expect(decide(q, 'bot', 'kb', 'search_kb', {}, { annotations: { destructiveHint: true } })).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'bot has read scope on kb; search_kb is write (irreversible) because the upstream marks it destructiveHint: true',
    });
    // On a read tool declared irreversible, destructiveHint makes it a write and keeps irreversible.
    expect(classifyTool(q, 'kb', 'audit_kb', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    // On a read tool declared customer-facing it keeps that more specific label.
    expect(classifyTool(q, 'kb', 'notify_kb', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'customer-facing',
    });
    // A reversible write held once the upstream calls it destructive.
    expect(decide(q, 'bot', 'tickets', 'close_ticket', {}, { annotations: { destructiveHint: true } })).toEqual({
      kind: 'approve',
      rule: 'consequential',
      reason:
        'bot has write scope on tickets; close_ticket is write (irreversible) because the upstream marks it destructiveHint: true, so a human must approve it',
      tool: { scope: 'write', consequence: 'irreversible' },
    });
    // Hints that change nothing are not claimed as the reason.
    expect(
      decide(
        q,
        'bot',
        'tickets',
        'send_customer_email',
        {},
        { annotations: { readOnlyHint: false, destructiveHint: true } },
      ),
    ).toMatchObject({
      reason:
        'bot has write scope on tickets; send_customer_email is write (customer-facing), so a human must approve it',
    });
    expect(
      decide(q, 'bot', 'crm', 'refund_request', {}, { annotations: { readOnlyHint: false, destructiveHint: true } }),
    ).toMatchObject({
      reason: 'bot has write scope on crm; refund_request is write (irreversible), so a human must approve it',
    });
    // readOnlyHint: true and destructiveHint: false are ignored, whatever the class.
    expect(
      decide(q, 'bot', 'kb', 'search_kb', {}, { annotations: { readOnlyHint: true, destructiveHint: false } }),
    ).toEqual({ kind: 'allow', tool: { scope: 'read', consequence: 'reversible' } });
  });

  it('rules: the matched rule is named with its fields, with or without when and reason', () => {
    const q = policy(`    approval_required: [refund_request]
    rules:
      - tool: close_ticket
        then: deny
      - tool: tickets__read_ticket
        when: "args.id == 'T-9'"
        then: approve
        reason: a sensitive ticket
      - tool: crm__refund_request
        when: "args.amount <= 5"
        then: allow
      - tool: refund_request
        then: approve
        grant: never
`);
    const denied = decide(q, 'bot', 'tickets', 'close_ticket', {});
    expect(denied).toEqual({
      kind: 'deny',
      code: 'rule',
      reason: 'bot may not call close_ticket on tickets: rules[0]: then: deny',
      policyRule: { index: 0, tool: 'close_ticket', when: undefined, effect: 'deny', reason: undefined },
    });
    // No evaluation error and no grant: the audit row's rule carries neither key.
    expect(Object.keys(denied.kind === 'deny' ? (denied.policyRule ?? {}) : {})).not.toContain('error');
    expect(Object.keys(denied.kind === 'deny' ? (denied.policyRule ?? {}) : {})).not.toContain('grantNever');
    expect(decide(q, 'bot', 'tickets', 'read_ticket', { id: 'T-9' })).toEqual({
      kind: 'approve',
      rule: 'approval_required',
      reason:
        "bot may call read_ticket on tickets only with a human's approval: rules[1] (when args.id == 'T-9'): a sensitive ticket",
      tool: { scope: 'read', consequence: 'reversible' },
      policyRule: {
        index: 1,
        tool: 'tickets__read_ticket',
        when: "args.id == 'T-9'",
        effect: 'approve',
        reason: 'a sensitive ticket',
      },
    });
    expect(decide(q, 'bot', 'tickets', 'read_ticket', { id: 'T-1' })).toEqual({
      kind: 'allow',
      tool: { scope: 'read', consequence: 'reversible' },
    });
    expect(decide(q, 'bot', 'crm', 'refund_request', { amount: 5 })).toEqual({
      kind: 'allow',
      tool: { scope: 'write', consequence: 'irreversible' },
      policyRule: {
        index: 2,
        tool: 'crm__refund_request',
        when: 'args.amount <= 5',
        effect: 'allow',
        reason: undefined,
      },
    });
    expect(decide(q, 'bot', 'crm', 'refund_request', { amount: 6 })).toEqual({
      kind: 'approve',
      rule: 'approval_required',
      reason: "bot may call refund_request on crm only with a human's approval: rules[3]: then: approve",
      tool: { scope: 'write', consequence: 'irreversible' },
      policyRule: {
        index: 3,
        tool: 'refund_request',
        when: undefined,
        effect: 'approve',
        reason: undefined,
        grantNever: true,
      },
    });
  });

  it('a condition that cannot be evaluated is named in the rule and its reason', () => {
    const q = policy(`    rules:
      - tool: close_ticket
        when: "args.n > 1"
        then: deny
`);
    expect(decide(q, 'bot', 'tickets', 'close_ticket', {})).toEqual({
      kind: 'deny',
      code: 'rule',
      reason:
        'bot may not call close_ticket on tickets: rules[0] (when args.n > 1): the condition could not be evaluated (field not found: n), so the rule applies: then: deny',
      policyRule: {
        index: 0,
        tool: 'close_ticket',
        when: 'args.n > 1',
        effect: 'deny',
        reason: undefined,
        error: 'field not found: n',
      },
    });
    // It evaluated to false: the rule does not apply.
    expect(decide(q, 'bot', 'tickets', 'close_ticket', { n: 0 })).toEqual({
      kind: 'allow',
      tool: { scope: 'write', consequence: 'reversible' },
    });
  });

  it('a rule that cannot widen the scopes says so, and names itself', () => {
    const q = policy(`    rules:
      - tool: shop__browse
        then: allow
      - tool: kb__drop
        when: "args.really == true"
        then: approve
`);
    expect(decide(q, 'bot', 'shop', 'browse', {})).toMatchObject({ code: 'out_of_scope' });
    expect(decide(q, 'bot', 'kb', 'drop', { really: true })).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'bot has read scope on kb; drop is not classified in the policy, so it counts as write (irreversible) (rules[1] (when args.really == true) cannot widen what the scopes allow)',
      policyRule: { index: 1, tool: 'kb__drop', when: 'args.really == true', effect: 'approve', reason: undefined },
    });
    const r = policy(`    rules:
      - tool: drop
        then: allow
`);
    expect(decide(r, 'bot', 'kb', 'drop', {})).toMatchObject({
      reason:
        'bot has read scope on kb; drop is not classified in the policy, so it counts as write (irreversible) (rules[0] cannot widen what the scopes allow)',
    });
  });

  it('listing (no arguments): unconditional rules apply, conditional ones only as a possible hold', () => {
    const q = policy(`    rules:
      - tool: close_ticket
        when: "args.id == 'T-1'"
        then: allow
      - tool: close_ticket
        when: "args.id == 'T-2'"
        then: deny
      - tool: close_ticket
        when: "args.id == 'T-3'"
        then: approve
      - tool: read_ticket
        then: deny
`);
    expect(decide(q, 'bot', 'tickets', 'close_ticket', undefined, { listing: true })).toMatchObject({
      kind: 'approve',
      policyRule: { index: 2 },
    });
    expect(decide(q, 'bot', 'tickets', 'read_ticket', undefined, { listing: true })).toMatchObject({
      kind: 'deny',
      code: 'rule',
      policyRule: { index: 3 },
    });
    // The same call with arguments is decided by the condition that matches.
    expect(decide(q, 'bot', 'tickets', 'close_ticket', { id: 'T-1' })).toMatchObject({
      kind: 'allow',
      policyRule: { index: 0 },
    });
    expect(decide(q, 'bot', 'tickets', 'close_ticket', { id: 'T-2' })).toMatchObject({
      kind: 'deny',
      policyRule: { index: 1 },
    });
  });

  it('rules see the call time passed in', () => {
    const q = policy(`    rules:
      - tool: close_ticket
        when: "now >= timestamp('2027-01-01T00:00:00Z')"
        then: deny
`);
    expect(decide(q, 'bot', 'tickets', 'close_ticket', {}, { now: Date.UTC(2027, 0, 1) })).toMatchObject({
      kind: 'deny',
    });
    expect(decide(q, 'bot', 'tickets', 'close_ticket', {}, { now: Date.UTC(2026, 11, 31) })).toMatchObject({
      kind: 'allow',
    });
  });

  it('approval rules match the bare or the qualified name exactly', () => {
    expect(matchesApprovalRule('refund_request', 'crm', 'refund_request')).toBe(true);
    expect(matchesApprovalRule('crm__refund_request', 'crm', 'refund_request')).toBe(true);
    expect(matchesApprovalRule('shop__refund_request', 'crm', 'refund_request')).toBe(false);
    expect(matchesApprovalRule('refund', 'crm', 'refund_request')).toBe(false);
    expect(matchesApprovalRule('crm__refund', 'crm', 'refund_request')).toBe(false);
  });

  it('describeRule names an evaluation failure, or the reason, or the effect', () => {
    expect(describeRule({ index: 2, tool: 't', effect: 'approve' })).toBe('rules[2]: then: approve');
    expect(describeRule({ index: 0, tool: 't', when: 'args.a', effect: 'deny', reason: 'no' })).toBe(
      'rules[0] (when args.a): no',
    );
    expect(describeRule({ index: 1, tool: 't', effect: 'deny', error: 'boom', reason: 'no' })).toBe(
      'rules[1]: the condition could not be evaluated (boom), so the rule applies: no',
    );
  });

  it('classifyToolDetailed says whether the policy classified the tool and what tightened it', () => {
    expect(classifyToolDetailed(p, 'kb', 'search_kb')).toEqual({
      tool: { scope: 'read', consequence: 'reversible' },
      classified: true,
      tightenedBy: [],
    });
    expect(classifyToolDetailed(p, 'kb', 'nosuch', { readOnlyHint: false })).toEqual({
      tool: { scope: 'write', consequence: 'irreversible' },
      classified: false,
      tightenedBy: [],
    });
    expect(classifyToolDetailed(p, 'nowhere', 'search_kb')).toMatchObject({ classified: false });
  });
});
