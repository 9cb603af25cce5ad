import type { AgentPolicy, Consequence, DecideContext, Decision, Policy, ToolAnnotations, ToolClass } from './types.ts';

/**
 * The policy decision: pure, no I/O, fail closed. Order:
 *   1. halted (org or agent)                         → deny halted
 *   2. unknown agent                                 → deny unknown_agent
 *   3. unknown server / agent has no scope on it     → deny unknown_server / out_of_scope
 *   4. upstream known and does not offer the tool    → deny unknown_tool
 *   5. tool in the agent's approval_required         → approve (approval_required), even beyond read scope
 *   6. read tool                                     → allow
 *   7. write tool, agent has write: reversible       → allow; irreversible / customer-facing → approve (consequential)
 *   8. write tool, agent has read only               → deny out_of_scope
 * Classification: the policy's, else write + irreversible; upstream annotations only tighten.
 */

const SEP = '__';

export function qualifiedToolName(server: string, tool: string): string {
  return `${server}${SEP}${tool}`;
}

/** Inverse of qualifiedToolName. Server names cannot contain `__`, so the first one separates. */
export function splitQualifiedName(name: string): { server: string; tool: string } | null {
  const i = name.indexOf(SEP);
  if (i <= 0 || i + SEP.length >= name.length) return null;
  return { server: name.slice(0, i), tool: name.slice(i + SEP.length) };
}

/** A lookup that sees only the map's own keys: a name like `constructor` is unknown, not inherited. */
function own<T>(map: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return map !== undefined && Object.hasOwn(map, key) ? map[key] : undefined;
}

export interface ClassifiedTool {
  tool: ToolClass;
  /** False when the policy does not list the tool (it then counts as write + irreversible). */
  classified: boolean;
  /** Annotations that made the class stricter, e.g. `readOnlyHint: false`. */
  tightenedBy: string[];
}

export function classifyToolDetailed(
  policy: Policy,
  server: string,
  tool: string,
  annotations?: ToolAnnotations,
): ClassifiedTool {
  const declared = own(own(policy.servers, server)?.tools, tool);
  let scope = declared?.scope ?? 'write';
  let consequence: Consequence = declared?.consequence ?? 'irreversible';
  const tightenedBy: string[] = [];
  // Annotations are the upstream's claims; an upstream could lie to look harmless,
  // so they are read only in the direction that restricts.
  if (annotations?.readOnlyHint === false && scope === 'read') {
    scope = 'write';
    tightenedBy.push('readOnlyHint: false');
  }
  if (annotations?.destructiveHint === true && (scope === 'read' || consequence === 'reversible')) {
    scope = 'write';
    if (consequence === 'reversible') consequence = 'irreversible';
    tightenedBy.push('destructiveHint: true');
  }
  return { tool: { scope, consequence }, classified: declared !== undefined, tightenedBy };
}

/** The class `decide` uses for a tool: the policy's, else write + irreversible, tightened by annotations. */
export function classifyTool(policy: Policy, server: string, tool: string, annotations?: ToolAnnotations): ToolClass {
  return classifyToolDetailed(policy, server, tool, annotations).tool;
}

/** Whether an approval_required entry (bare `refund_request` or qualified `crm__refund_request`) names this tool. */
export function matchesApprovalRule(entry: string, server: string, tool: string): boolean {
  return entry === tool || entry === qualifiedToolName(server, tool);
}

export function decide(
  policy: Policy,
  agent: string,
  server: string,
  tool: string,
  args: unknown,
  ctx: DecideContext = {},
): Decision {
  // Arguments do not change the decision today; they are part of the signature
  // so argument-level rules can arrive without touching every caller.
  void args;
  if (ctx.halted) {
    const why = ctx.halted.reason ? ` (reason: ${ctx.halted.reason})` : '';
    return {
      kind: 'deny',
      code: 'halted',
      reason:
        ctx.halted.scope === 'org'
          ? `all agents are halted by the org-wide kill switch${why}; no tool calls run until an operator resumes`
          : `${agent} is halted by the kill switch${why}; no tool calls run until an operator resumes it`,
    };
  }
  const a = own(policy.agents, agent);
  if (a === undefined) {
    return {
      kind: 'deny',
      code: 'unknown_agent',
      reason: `agent "${agent}" is not in the policy, so it may call no tools`,
    };
  }
  if (own(policy.servers, server) === undefined) {
    return {
      kind: 'deny',
      code: 'unknown_server',
      reason: `server "${server}" is not in the policy, so no agent may call its tools`,
    };
  }
  const scopes = own(a.scopes, server) ?? [];
  if (scopes.length === 0) {
    return {
      kind: 'deny',
      code: 'out_of_scope',
      reason: `${agent} has no scope on ${server}, so it may call none of its tools`,
    };
  }
  if (ctx.upstreamTools !== undefined && !ctx.upstreamTools.has(tool)) {
    return { kind: 'deny', code: 'unknown_tool', reason: `${server} offers no tool "${tool}"` };
  }

  const c = classifyToolDetailed(policy, server, tool, ctx.annotations);
  // Only refusals and holds carry a sentence; an allowed call (the common case) skips building it.
  const cls = () => describeClass(tool, c);
  const hasWrite = scopes.includes('write');

  if (needsApproval(a, server, tool)) {
    return {
      kind: 'approve',
      rule: 'approval_required',
      reason: `${agent} may call ${tool} on ${server} only with a human's approval (approval_required); ${cls()}`,
      tool: c.tool,
    };
  }
  if (c.tool.scope === 'read') return { kind: 'allow', tool: c.tool };
  if (!hasWrite) {
    return { kind: 'deny', code: 'out_of_scope', reason: `${agent} has read scope on ${server}; ${cls()}` };
  }
  if (c.tool.consequence === 'reversible') return { kind: 'allow', tool: c.tool };
  return {
    kind: 'approve',
    rule: 'consequential',
    reason: `${agent} has write scope on ${server}; ${cls()}, so a human must approve it`,
    tool: c.tool,
  };
}

function needsApproval(agent: AgentPolicy, server: string, tool: string): boolean {
  return agent.approvalRequired.some((entry) => matchesApprovalRule(entry, server, tool));
}

function describeClass(tool: string, c: ClassifiedTool): string {
  const base = `${tool} is ${c.tool.scope} (${c.tool.consequence})`;
  if (!c.classified)
    return `${tool} is not classified in the policy, so it counts as ${c.tool.scope} (${c.tool.consequence})`;
  if (c.tightenedBy.length > 0) return `${base} because the upstream marks it ${c.tightenedBy.join(', ')}`;
  return base;
}
