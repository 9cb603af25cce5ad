import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  classifyTool,
  decide,
  loadPolicyFile,
  parsePolicy,
  policyWarnings,
  qualifiedToolName,
  splitQualifiedName,
  type Decision,
} from '../src/policy/index.ts';
import type { ToolAnnotations } from '../src/policy/types.ts';
import { helpdeskServersYaml } from './support/policies.ts';

const seed = loadPolicyFile('examples/seed-policy.yml', {});
const full = loadPolicyFile('examples/policy.yml', {});

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
    const refund = decide(full, 'billing-bot', 'crm', 'refund_request', { amount: 10 });
    expect(refund).toEqual({
      kind: 'approve',
      rule: 'consequential',
      reason: 'billing-bot has write scope on crm; refund_request is write (irreversible), so a human must approve it',
      tool: { scope: 'write', consequence: 'irreversible' },
    });
    expect(kind(decide(full, 'billing-bot', 'crm', 'lookup_customer', {}))).toBe('allow');
    expect(kind(decide(full, 'billing-bot', 'tickets', 'close_ticket', {}))).toBe('deny:out_of_scope');
    expect(kind(decide(full, 'billing-bot', 'kb', 'search_kb', {}))).toBe('deny:out_of_scope');
  });

  it('a qualified approval_required entry matches only its server', () => {
    expect(kind(decide(full, 'support-triage', 'crm', 'refund_request', {}))).toBe('approve:approval_required');
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
    expect(kind(decide(full, 'warden-canary', 'canary', 'sleep', {}))).toBe('allow');
    expect(kind(decide(full, 'warden-canary', 'kb', 'search_kb', {}))).toBe('deny:out_of_scope');
    expect(decide(full, 'warden-canary', 'tickets', 'list_tickets', {})).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason: 'warden-canary has no scope on tickets, so it may call none of its tools',
    });
  });

  it('has no warnings today, and warns once a review date passes', () => {
    expect(policyWarnings(full, Date.parse('2026-11-25T00:00:00Z'))).toEqual([]);
    const later = policyWarnings(full, Date.parse('2027-04-01T00:00:00Z'));
    expect(later).toEqual(['agent billing-bot: review_by 2027-03-31 has passed; review its access and set a new date']);
  });
});

describe('fail closed', () => {
  it('unknown agent, server and tool are denied', () => {
    expect(decide(full, 'mallory', 'kb', 'search_kb', {})).toMatchObject({ kind: 'deny', code: 'unknown_agent' });
    expect(decide(full, 'support-triage', 'github', 'search_kb', {})).toMatchObject({
      kind: 'deny',
      code: 'unknown_server',
    });
    const upstream = new Set(['search_kb']);
    expect(decide(full, 'support-triage', 'kb', 'drop_kb', {}, { upstreamTools: upstream })).toEqual({
      kind: 'deny',
      code: 'unknown_tool',
      reason: 'kb offers no tool "drop_kb"',
    });
    expect(kind(decide(full, 'support-triage', 'kb', 'search_kb', {}, { upstreamTools: upstream }))).toBe('allow');
  });

  it('an unclassified tool is write + irreversible: denied on read scope, held on write scope', () => {
    expect(classifyTool(full, 'crm', 'delete_customer')).toEqual({ scope: 'write', consequence: 'irreversible' });
    expect(kind(decide(full, 'support-triage', 'crm', 'delete_customer', {}))).toBe('deny:out_of_scope');
    expect(decide(full, 'billing-bot', 'crm', 'delete_customer', {})).toMatchObject({
      kind: 'approve',
      rule: 'consequential',
      tool: { scope: 'write', consequence: 'irreversible' },
    });
  });

  it('halted comes first, before even an unknown agent', () => {
    const org = decide(full, 'nobody', 'nowhere', 'nothing', {}, { halted: { scope: 'org', reason: 'drill' } });
    expect(org).toMatchObject({ kind: 'deny', code: 'halted' });
    expect((org as { reason: string }).reason).toContain('org-wide');
    const one = decide(
      full,
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
    expect(classifyTool(full, 'tickets', 'read_ticket', { readOnlyHint: false })).toEqual({
      scope: 'write',
      consequence: 'reversible',
    });
    const d = decide(full, 'support-triage', 'tickets', 'read_ticket', {}, { annotations: { readOnlyHint: false } });
    expect(d).toEqual({
      kind: 'deny',
      code: 'out_of_scope',
      reason:
        'support-triage has read scope on tickets; read_ticket is write (reversible) because the upstream marks it readOnlyHint: false',
    });
  });

  it('destructiveHint:true makes a tool irreversible', () => {
    expect(classifyTool(full, 'tickets', 'close_ticket', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(
      kind(decide(full, 'billing-bot', 'crm', 'lookup_customer', {}, { annotations: { destructiveHint: true } })),
    ).toBe('approve:consequential');
    // customer-facing is already held for approval; it keeps its more specific label.
    expect(classifyTool(full, 'tickets', 'send_customer_email', { destructiveHint: true })).toEqual({
      scope: 'write',
      consequence: 'customer-facing',
    });
  });

  it('readOnlyHint:true never loosens a write or unclassified tool', () => {
    expect(classifyTool(full, 'crm', 'refund_request', { readOnlyHint: true, destructiveHint: false })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(classifyTool(full, 'crm', 'mystery', { readOnlyHint: true })).toEqual({
      scope: 'write',
      consequence: 'irreversible',
    });
    expect(kind(decide(full, 'support-triage', 'crm', 'mystery', {}, { annotations: { readOnlyHint: true } }))).toBe(
      'deny:out_of_scope',
    );
    expect(
      kind(decide(full, 'support-triage', 'tickets', 'close_ticket', {}, { annotations: { readOnlyHint: true } })),
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
      policy: typeof full,
      agent: string,
      server: string,
      names: string[],
      annotations: Record<string, ToolAnnotations> = {},
    ) =>
      names.filter((t) => decide(policy, agent, server, t, undefined, { annotations: annotations[t] }).kind !== 'deny');
    const offered = ['list_tickets', 'read_ticket', 'close_ticket', 'send_customer_email', 'mystery'];
    expect(visibleTools(full, 'support-triage', 'tickets', offered)).toEqual([
      'list_tickets',
      'read_ticket',
      'send_customer_email',
    ]);
    expect(visibleTools(full, 'billing-bot', 'crm', ['lookup_customer', 'refund_request', 'mystery'])).toEqual([
      'lookup_customer',
      'refund_request',
      'mystery',
    ]);
    expect(visibleTools(full, 'warden-canary', 'crm', ['lookup_customer'])).toEqual([]);
    expect(visibleTools(full, 'mallory', 'kb', ['search_kb'])).toEqual([]);
    // An annotation that tightens a read tool to write hides it from a read-only agent.
    expect(visibleTools(full, 'support-triage', 'kb', ['search_kb'], { search_kb: { readOnlyHint: false } })).toEqual(
      [],
    );
  });
});

describe('names an agent controls are never inherited members', () => {
  const names = ['constructor', '__proto__', 'hasOwnProperty', 'toString', 'valueOf'];

  it('denies prototype-named agents, servers and tools instead of throwing', () => {
    for (const n of names) {
      expect(decide(full, n, 'tickets', 'read_ticket', {})).toMatchObject({ kind: 'deny', code: 'unknown_agent' });
      expect(decide(full, 'support-triage', n, 'read_ticket', {})).toMatchObject({
        kind: 'deny',
        code: 'unknown_server',
      });
      // An unknown tool on a granted server is unclassified: write + irreversible, so a read-only agent is refused.
      expect(decide(full, 'support-triage', 'tickets', n, {})).toMatchObject({ kind: 'deny', code: 'out_of_scope' });
      expect(classifyTool(full, 'tickets', n)).toEqual({ scope: 'write', consequence: 'irreversible' });
      expect(classifyTool(full, n, n)).toEqual({ scope: 'write', consequence: 'irreversible' });
    }
  });

  it('the loaded maps have no prototype to inherit from', () => {
    expect(full.agents.constructor).toBeUndefined();
    expect(full.servers.toString).toBeUndefined();
    expect(full.servers.tickets!.tools.hasOwnProperty).toBeUndefined();
    expect(full.agents['support-triage']!.scopes.valueOf).toBeUndefined();
  });
});
