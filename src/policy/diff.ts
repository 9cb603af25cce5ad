import { decide, matchesApprovalRule, qualifiedToolName, splitQualifiedName } from './decide.ts';
import { formatDuration } from './duration.ts';
import type { AgentPolicy, Decision, Policy, PolicyRule } from './types.ts';

/**
 * What a policy change does, one line per change, for a reviewer: per agent,
 * every tool whose outcome changes, rules added or removed, who owns and
 * approves, and limits. Pure; `warden policy diff` prints it and a reload
 * writes it to the audit trail. Empty when nothing changes.
 */
export function diffPolicies(before: Policy, after: Policy): string[] {
  const out: string[] = [];
  const names = union(Object.keys(before.agents), Object.keys(after.agents));
  for (const name of names) {
    const a = before.agents[name];
    const b = after.agents[name];
    if (a === undefined) out.push(`${name}  agent added`);
    else if (b === undefined) out.push(`${name}  agent removed`);
    for (const [tool, from, to] of toolOutcomes(before, after, name)) out.push(`${name}  ${tool}  ${from} → ${to}`);
    if (a === undefined || b === undefined) continue;
    const ruleText = (r: PolicyRule) => describeRuleEntry(r);
    const was = a.rules.map(ruleText);
    const now = b.rules.map(ruleText);
    for (const r of now.filter((r) => !was.includes(r))) out.push(`${name}  rule added: ${r}`);
    for (const r of was.filter((r) => !now.includes(r))) out.push(`${name}  rule removed: ${r}`);
    if (was.length === now.length && was.every((r) => now.includes(r)) && was.some((r, i) => r !== now[i])) {
      out.push(`${name}  rules reordered (first match wins)`);
    }
    for (const [field, from, to] of agentFields(a, b)) out.push(`${name}  ${field} ${from} → ${to}`);
  }
  for (const [field, from, to] of controlFields(before, after)) out.push(`control  ${field} ${from} → ${to}`);
  for (const server of union(Object.keys(before.servers), Object.keys(after.servers))) {
    if (before.servers[server] === undefined) out.push(`server ${server} added`);
    else if (after.servers[server] === undefined) out.push(`server ${server} removed`);
  }
  return out;
}

/** `crm__refund_request when args.amount > 5000 then deny (refunds over 5,000 go through finance)` */
export function describeRuleEntry(rule: PolicyRule): string {
  return `${rule.tool}${rule.when !== undefined ? ` when ${rule.when}` : ''} then ${rule.effect}${rule.grantNever ? ' (grant: never)' : ''}${rule.reason !== undefined ? ` (${rule.reason})` : ''}`;
}

type Change = [string, string, string];

/**
 * Each tool the agent could be asked about in either policy, described as the
 * outcome a reader needs: `approve`, or `deny when …; allow when …; otherwise approve`.
 * Tools no policy classifies appear as `server__*` (they count as write + irreversible).
 */
function toolOutcomes(before: Policy, after: Policy, agent: string): Change[] {
  const targets = new Map<string, { server: string; tool: string }>();
  for (const p of [before, after]) {
    const a = p.agents[agent];
    if (a === undefined) continue;
    for (const server of Object.keys(a.scopes)) {
      for (const tool of Object.keys(p.servers[server]?.tools ?? {})) {
        targets.set(qualifiedToolName(server, tool), { server, tool });
      }
      targets.set(qualifiedToolName(server, '*'), { server, tool: '*' });
    }
    for (const entry of [...a.approvalRequired, ...a.rules.map((r) => r.tool)]) {
      const q = splitQualifiedName(entry);
      if (q !== null && p.servers[q.server] !== undefined) targets.set(entry, q);
    }
  }
  const out: Change[] = [];
  for (const [name, { server, tool }] of [...targets].sort(([x], [y]) => x.localeCompare(y))) {
    const from = outcome(before, agent, server, tool);
    const to = outcome(after, agent, server, tool);
    if (from !== to) out.push([name, from, to]);
  }
  return out;
}

function outcome(policy: Policy, agent: string, server: string, tool: string): string {
  const a = policy.agents[agent];
  if (a === undefined) return 'deny (no such agent)';
  // `*` stands for any tool the policy does not classify; `\0` can be no real tool's name.
  const probe = tool === '*' ? '\0unclassified' : tool;
  const bare: Policy = { ...policy, agents: { ...policy.agents, [agent]: { ...a, rules: [] } } };
  const base = decide(bare, agent, server, probe, undefined);
  // The conditional rules in order (first match wins), then what applies when none matches.
  const parts: { effect: Decision['kind']; when: string }[] = [];
  let otherwise: Decision['kind'] = base.kind;
  for (const rule of tool === '*' ? [] : rulesFor(a, server, tool)) {
    const effective = rule.effect === 'deny' || base.kind === 'deny' ? 'deny' : rule.effect;
    if (rule.when === undefined) {
      otherwise = effective;
      break;
    }
    parts.push({ effect: effective, when: rule.when });
  }
  // A condition that ends as `otherwise` would anyway may be left out only at the end: earlier,
  // it still shadows the rules after it (allow when A; deny when B is not "deny when B").
  while (parts.length > 0 && parts.at(-1)!.effect === otherwise) parts.pop();
  if (parts.length === 0) return label(otherwise, base);
  return `${parts.map((p) => `${p.effect} when ${p.when}`).join('; ')}; otherwise ${otherwise}`;
}

function label(kind: Decision['kind'], base: Decision): string {
  return kind === base.kind && base.kind === 'deny' && base.code !== 'out_of_scope' ? `deny (${base.code})` : kind;
}

function rulesFor(a: AgentPolicy, server: string, tool: string): PolicyRule[] {
  return a.rules.filter((r) => matchesApprovalRule(r.tool, server, tool));
}

function agentFields(a: AgentPolicy, b: AgentPolicy): Change[] {
  const ms = (v: number | undefined) => (v === undefined ? 'none' : formatDuration(v));
  const opt = (v: unknown) => (v === undefined ? 'none' : String(v));
  const list = (v: readonly string[]) => (v.length ? v.join(', ') : 'none');
  const scopes = (s: AgentPolicy['scopes']) =>
    Object.entries(s)
      .map(([k, v]) => `${k}:${v.join('+') || 'none'}`)
      .join(', ') || 'none';
  const fields: [string, string, string][] = [
    ['scopes', scopes(a.scopes), scopes(b.scopes)],
    ['approval_required', list(a.approvalRequired), list(b.approvalRequired)],
    ['owner', opt(a.owner), opt(b.owner)],
    ['channel', opt(a.channel), opt(b.channel)],
    ['approvers', list(a.approvers), list(b.approvers)],
    ['review_by', opt(a.reviewBy), opt(b.reviewBy)],
    ['approval_timeout', ms(a.approvalTimeoutMs), ms(b.approvalTimeoutMs)],
    [
      'answer_within',
      a.answerWithinMs === undefined ? 'never' : ms(a.answerWithinMs),
      b.answerWithinMs === undefined ? 'never' : ms(b.answerWithinMs),
    ],
    ['on_redacted', a.onRedacted, b.onRedacted],
    ['max_pending', String(a.maxPending), String(b.maxPending)],
    ['grants.max', ms(a.grantMaxMs), ms(b.grantMaxMs)],
    ['limits.calls_per_minute', opt(a.limits.callsPerMinute), opt(b.limits.callsPerMinute)],
    ['limits.max_denials', opt(a.limits.maxDenials), opt(b.limits.maxDenials)],
    ['limits.denial_window', ms(a.limits.denialWindowMs), ms(b.limits.denialWindowMs)],
    ['limits.max_rejections', opt(a.limits.maxRejections), opt(b.limits.maxRejections)],
    ['limits.max_call_duration', ms(a.limits.maxCallDurationMs), ms(b.limits.maxCallDurationMs)],
    ['limits.auto_halt', String(a.limits.autoHalt), String(b.limits.autoHalt)],
  ];
  return fields.filter(([, from, to]) => from !== to);
}

function controlFields(before: Policy, after: Policy): Change[] {
  const list = (v: readonly string[]) => (v.length ? v.join(', ') : 'none');
  const opt = (v: unknown) => (v === undefined ? 'none' : String(v));
  const x = before.control;
  const y = after.control;
  const fields: Change[] = [
    ['halters', list(x.halters), list(y.halters)],
    ['resumers', list(x.resumers), list(y.resumers)],
    ['auditors', list(x.auditors), list(y.auditors)],
    ['oncall_channel', opt(x.oncallChannel), opt(y.oncallChannel)],
    ['compliance_channel', opt(x.complianceChannel), opt(y.complianceChannel)],
    ['drill.schedule', opt(x.drill.schedule), opt(y.drill.schedule)],
  ];
  return fields.filter(([, from, to]) => from !== to);
}

function union(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])].sort();
}
