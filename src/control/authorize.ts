import type { AuditQuery } from '../audit/query.ts';
import type { ControlPolicy, Policy } from '../policy/types.ts';

/**
 * Who is asking to halt or resume. The CLI runs as an OS user who already holds
 * the database file, so it is trusted; Slack users are checked against policy.
 */
export type ControlActor = { kind: 'cli'; user: string } | { kind: 'slack'; userId: string };

export type ControlAuthz = { ok: true } | { ok: false; reason: string };

/** The string recorded in audit rows and control_state for an actor. */
export function actorLabel(actor: ControlActor): string {
  return actor.kind === 'cli' ? `cli:${actor.user}` : `slack:${actor.userId}`;
}

/** Stopping is always safe, so an empty halters list lets anyone in the workspace halt. */
export function canHalt(control: ControlPolicy, actor: ControlActor): ControlAuthz {
  if (actor.kind === 'cli') return { ok: true };
  if (control.halters.length === 0 || control.halters.includes(actor.userId)) return { ok: true };
  return { ok: false, reason: `<@${actor.userId}> is not in control.halters` };
}

/**
 * Revoking a grant only takes access away, like a halt: whoever may halt may
 * revoke, and so may the agent's owner and approvers (who give grants).
 */
export function canRevokeGrants(policy: Policy, agent: string, actor: ControlActor): ControlAuthz {
  if (canHalt(policy.control, actor).ok) return { ok: true };
  const a = policy.agents[agent];
  if (actor.kind === 'slack' && a !== undefined && (a.owner === actor.userId || a.approvers.includes(actor.userId))) {
    return { ok: true };
  }
  return {
    ok: false,
    reason: `<@${actor.kind === 'slack' ? actor.userId : actor.user}> is not in control.halters, nor ${agent}'s owner or an approver`,
  };
}

/** Resuming re-opens the gate, so it is stricter: an empty resumers list means CLI only. */
export function canResume(control: ControlPolicy, actor: ControlActor): ControlAuthz {
  if (actor.kind === 'cli') return { ok: true };
  if (control.resumers.length === 0)
    return {
      ok: false,
      reason: 'no Slack user may resume (control.resumers is empty); use `warden agents resume` from the CLI',
    };
  if (control.resumers.includes(actor.userId)) return { ok: true };
  return { ok: false, reason: `<@${actor.userId}> is not in control.resumers` };
}

/** Running a drill halts (the canary, or the org in a maintenance window) and resumes, so it needs both. */
export function canDrill(control: ControlPolicy, actor: ControlActor): ControlAuthz {
  const h = canHalt(control, actor);
  if (!h.ok) return h;
  return canResume(control, actor);
}

/**
 * What a user may read of the audit trail: every row, or the rows of some
 * agents. The rows hold (redacted) arguments and results of customer-facing
 * calls, so Slack access is granted, never assumed.
 */
export type AuditAccess = { ok: true; agents: 'all' } | { ok: true; agents: string[] } | { ok: false; reason: string };

/**
 * `control.auditors` non-empty: only they may read, and they read everything.
 * Empty: users explicitly listed in halters or resumers (on-call, who already
 * answer for every agent) read everything; an agent's owner and approvers read
 * that agent's rows; anyone else is refused. An empty halters list opens
 * halting to all, but it lists nobody, so it opens no audit rows.
 */
export function auditAccess(policy: Pick<Policy, 'control' | 'agents'>, actor: ControlActor): AuditAccess {
  if (actor.kind === 'cli') return { ok: true, agents: 'all' };
  const { control } = policy;
  const user = actor.userId;
  if (control.auditors.length > 0) {
    if (control.auditors.includes(user)) return { ok: true, agents: 'all' };
    return { ok: false, reason: `<@${user}> is not in control.auditors` };
  }
  if (control.halters.includes(user) || control.resumers.includes(user)) return { ok: true, agents: 'all' };
  const mine = Object.values(policy.agents)
    .filter((a) => a.owner === user || a.approvers.includes(user))
    .map((a) => a.name)
    .sort();
  if (mine.length > 0) return { ok: true, agents: mine };
  return {
    ok: false,
    reason: `<@${user}> owns or approves no agent and is not in control.halters or control.resumers (control.auditors is empty)`,
  };
}

/**
 * The query a user may run: unchanged with full access; otherwise bound to
 * their agents in the query itself (runQuery filters on it), so no display
 * step can leak a row. Naming an agent outside the scope is refused rather
 * than answered with an empty page, which would read as "nothing happened".
 */
export function scopeAuditQuery(
  q: AuditQuery,
  access: AuditAccess,
): { ok: true; query: AuditQuery } | { ok: false; reason: string } {
  if (!access.ok) return access;
  if (access.agents === 'all') return { ok: true, query: q };
  if (q.agent !== undefined && !access.agents.includes(q.agent)) {
    return {
      ok: false,
      reason: `you may audit only ${describeAgents(access.agents)}; \`agent:${q.agent}\` is not one of them`,
    };
  }
  return { ok: true, query: { ...q, agents: access.agents } };
}

/** May this user see one agent's status from an /audit row? Same scope as its rows. */
export function canAuditAgent(access: AuditAccess, agent: string): ControlAuthz {
  if (!access.ok) return access;
  if (access.agents === 'all' || access.agents.includes(agent)) return { ok: true };
  return { ok: false, reason: `you may audit only ${describeAgents(access.agents)}; \`${agent}\` is not one of them` };
}

function describeAgents(agents: readonly string[]): string {
  return `the agents you own or approve (${agents.map((a) => `\`${a}\``).join(', ')})`;
}
