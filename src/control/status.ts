import type { Db } from '../store/db.ts';
import type { Policy } from '../policy/types.ts';
import { RunStore, type RunRecord } from './runs.ts';
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

/**
 * One row per agent in the policy, plus any agent seen in the last hour's
 * audit that the policy no longer names (so a removed agent still shows up).
 */
export function agentStatuses(db: Db, policy: Policy, halt: HaltCheck, now: number, only?: string): AgentStatus[] {
  const since = now - HOUR;
  // One agent asked for (the Agent status button): count its rows only.
  const counts = db
    .prepare(
      `SELECT agent,
              sum(CASE WHEN event = 'call.decided' THEN 1 ELSE 0 END) AS calls,
              sum(CASE WHEN event = 'call.decided' AND decision IN ('deny', 'denied', 'halted') THEN 1 ELSE 0 END) AS denials
         FROM audit WHERE ts >= ? AND agent IS NOT NULL AND (? IS NULL OR agent = ?) GROUP BY agent`,
    )
    .all(since, only ?? null, only ?? null) as { agent: string; calls: number; denials: number }[];
  const pending = db
    .prepare(
      `SELECT agent, count(*) AS n FROM approvals WHERE status = 'pending' AND (? IS NULL OR agent = ?) GROUP BY agent`,
    )
    .all(only ?? null, only ?? null) as { agent: string; n: number }[];
  const byAgent = new Map(counts.map((c) => [c.agent, c]));
  const pendingBy = new Map(pending.map((p) => [p.agent, p.n]));
  const runsByAgent = new Map<string, AgentStatus['runs']>();
  for (const run of new RunStore(db).open(only)) {
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
