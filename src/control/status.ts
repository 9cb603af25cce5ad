import type { AuditReader } from '../audit/reader.ts';
import type { ApprovalStore } from '../approvals/store.ts';
import type { Policy } from '../policy/types.ts';
import type { RunRecord, RunStore } from './runs.ts';
import type { HaltCheck, HaltState } from './types.ts';

export interface AgentStatus {
  agent: string;
  owner?: string | undefined;
  channel?: string | undefined;
  state: 'running' | 'halted';
  halt?: HaltState | undefined;
  /** Tool calls decided in the last hour (any decision). */
  callsLastHour: number;
  /** Calls refused in the last hour (policy denials and halts). */
  denialsLastHour: number;
  pendingApprovals: number;
  reviewBy?: string | undefined;
  reviewOverdue: boolean;
  /** Whole days until the review date; negative when overdue. */
  reviewInDays?: number | undefined;
  /** Agent processes started with `warden run` and still going. */
  runs: Pick<RunRecord, 'id' | 'pid' | 'host' | 'startedAt' | 'sandboxed'>[];
  /** The policy says `sandbox: none`: `warden run` starts it with the host's files, credentials and network. */
  unsandboxed: boolean;
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Days from `now` to the end of an ISO review date (the whole day counts as still in time). */
export function daysUntilReview(reviewBy: string, now: number): number | undefined {
  const end = Date.parse(`${reviewBy}T23:59:59.999Z`);
  if (Number.isNaN(end)) return undefined;
  return Math.floor((end - now) / DAY);
}

/** Where status counts come from: the audit reader, the approvals store and the run store own those tables. */
export interface StatusSources {
  audit: Pick<AuditReader, 'activitySince'>;
  approvals: Pick<ApprovalStore, 'pendingCountsByAgent'>;
  runs: Pick<RunStore, 'open'>;
}

/**
 * One row per agent in the policy, plus any agent seen in the last hour's
 * audit that the policy no longer names (so a removed agent still shows up).
 */
export function agentStatuses(
  sources: StatusSources,
  policy: Policy,
  halt: HaltCheck,
  now: number,
  only?: string,
): AgentStatus[] {
  const since = now - HOUR;
  // One agent asked for (the Agent status button): count its rows only.
  const counts = sources.audit.activitySince(since, only);
  const pendingBy = sources.approvals.pendingCountsByAgent(only);
  const byAgent = new Map(counts.map((c) => [c.agent, c]));
  const runsByAgent = new Map<string, AgentStatus['runs']>();
  for (const run of sources.runs.open(only)) {
    const list = runsByAgent.get(run.agent) ?? [];
    list.push({ id: run.id, pid: run.pid, host: run.host, startedAt: run.startedAt, sandboxed: run.sandboxed });
    runsByAgent.set(run.agent, list);
  }
  const names = new Set(Object.keys(policy.agents));
  for (const agent of runsByAgent.keys()) names.add(agent);
  for (const c of counts) if (c.calls > 0) names.add(c.agent);
  const rows: AgentStatus[] = [];
  for (const name of [...names].sort()) {
    if (only !== undefined && name !== only) continue;
    const a = policy.agents[name];
    const h = halt.check(name);
    const reviewInDays = a?.reviewBy ? daysUntilReview(a.reviewBy, now) : undefined;
    rows.push({
      agent: name,
      owner: a?.owner,
      channel: a?.channel,
      state: h ? 'halted' : 'running',
      halt: h ?? undefined,
      callsLastHour: byAgent.get(name)?.calls ?? 0,
      denialsLastHour: byAgent.get(name)?.denials ?? 0,
      pendingApprovals: pendingBy.get(name) ?? 0,
      reviewBy: a?.reviewBy,
      reviewOverdue: reviewInDays !== undefined && reviewInDays < 0,
      reviewInDays,
      runs: runsByAgent.get(name) ?? [],
      unsandboxed: a?.sandbox.mode === 'none',
    });
  }
  return rows;
}
