import { randomUUID } from 'node:crypto';
import { AuditReader } from '../audit/reader.ts';
import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { decide, formatDuration, qualifiedToolName } from '../policy/index.ts';
import type { Policy } from '../policy/types.ts';
import type { Db } from '../store/db.ts';

/** Durations an approver is offered on the card (each only up to the agent's `grants.max`). */
export const GRANT_CHOICES_MS = [15 * 60_000, 60 * 60_000] as const;
/** The approval id a call covered by a grant carries instead of a held request's. */
export const GRANT_APPROVAL_PREFIX = 'grant:';

export type GrantEndReason = 'expired' | 'revoked' | 'halted' | 'policy_changed';

export interface Grant {
  id: string;
  agent: string;
  server: string;
  tool: string;
  approvalId?: string | undefined;
  grantedBy: string;
  createdAt: number;
  expiresAt: number;
  endedAt?: number | undefined;
  endedBy?: string | undefined;
  endReason?: GrantEndReason | undefined;
}

interface GrantRow {
  id: string;
  agent: string;
  server: string;
  tool: string;
  approval_id: string | null;
  granted_by: string;
  created_at: number;
  expires_at: number;
  ended_at: number | null;
  ended_by: string | null;
  end_reason: string | null;
}

const END_REASONS: ReadonlySet<string> = new Set<GrantEndReason>(['expired', 'revoked', 'halted', 'policy_changed']);

function fromRow(r: GrantRow): Grant {
  return {
    id: r.id,
    agent: r.agent,
    server: r.server,
    tool: r.tool,
    approvalId: r.approval_id ?? undefined,
    grantedBy: r.granted_by,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    endedAt: r.ended_at ?? undefined,
    endedBy: r.ended_by ?? undefined,
    endReason: r.end_reason !== null && END_REASONS.has(r.end_reason) ? (r.end_reason as GrantEndReason) : undefined,
  };
}

/** The `grants` table's statements: the only SQL that touches it. */
function prepareGrantSql(db: Db) {
  return {
    insert: db.prepare(`INSERT INTO grants (id, agent, server, tool, approval_id, granted_by, created_at, expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    open: db.prepare('SELECT * FROM grants WHERE ended_at IS NULL ORDER BY created_at'),
    openFor: db.prepare(
      'SELECT * FROM grants WHERE ended_at IS NULL AND agent = ? AND server = ? AND tool = ? ORDER BY expires_at DESC LIMIT 1',
    ),
    // Ending is a compare-and-set: of two processes ending one grant, one writes (and audits) it.
    end: db.prepare('UPDATE grants SET ended_at = ?, ended_by = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL'),
  };
}

/**
 * Time-boxed grants: "yes, for the next 30 minutes" for one agent and one
 * tool. The only reader and writer of the `grants` table. Every start and end
 * is audited (`grant.created`, `grant.ended`) and every call a grant covers
 * names it (`grant.used`). A grant never outlives its expiry, a revocation, a
 * halt of its agent, or a policy reload that takes the tool or the agent's
 * `grants:` away; each of those ends it with the reason.
 */
export class GrantService {
  readonly #audit: Pick<AuditSink, 'append'>;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #sql: ReturnType<typeof prepareGrantSql>;
  readonly #trail: AuditReader;

  constructor(db: Db, deps: { audit: Pick<AuditSink, 'append'>; clock: Clock; logger: Logger }) {
    this.#audit = deps.audit;
    this.#clock = deps.clock;
    this.#logger = deps.logger;
    this.#sql = prepareGrantSql(db);
    this.#trail = new AuditReader(db);
  }

  /**
   * Starts a grant. Refused with INVALID_INPUT when the agent's policy has no
   * `grants:` or the duration is longer than its `max`.
   */
  async create(
    policy: Policy,
    input: { agent: string; server: string; tool: string; by: string; forMs: number; approvalId?: string | undefined },
  ): Promise<Grant> {
    const max = policy.agents[input.agent]?.grantMaxMs;
    if (max === undefined) {
      throw new WardenError('INVALID_INPUT', `for: agent ${input.agent} has no grants in the policy; approve once`, {
        details: { field: 'for' },
      });
    }
    if (!(input.forMs > 0) || input.forMs > max) {
      throw new WardenError(
        'INVALID_INPUT',
        `for: a grant for ${input.agent} lasts at most ${formatDuration(max)} (grants.max), got ${formatDuration(input.forMs)}`,
        { details: { field: 'for' } },
      );
    }
    const now = this.#clock.now();
    const grant: Grant = {
      id: `grt_${randomUUID()}`,
      agent: input.agent,
      server: input.server,
      tool: input.tool,
      approvalId: input.approvalId,
      grantedBy: input.by,
      createdAt: now,
      expiresAt: now + input.forMs,
    };
    this.#sql.insert.run(
      grant.id,
      grant.agent,
      grant.server,
      grant.tool,
      grant.approvalId ?? null,
      grant.grantedBy,
      grant.createdAt,
      grant.expiresAt,
    );
    try {
      await this.#audit.append({
        event: 'grant.created',
        agent: grant.agent,
        server: grant.server,
        tool: grant.tool,
        approver: grant.grantedBy,
        decision: 'created',
        reason: `${grant.grantedBy} granted ${qualifiedToolName(grant.server, grant.tool)} to ${grant.agent} for ${formatDuration(input.forMs)}`,
        detail: { grantId: grant.id, approvalId: grant.approvalId, expiresAt: grant.expiresAt },
      });
    } catch (err) {
      // A grant the trail does not know about must not cover anything.
      this.#sql.end.run(this.#clock.now(), 'warden', 'revoked', grant.id);
      throw err;
    }
    return grant;
  }

  /** Grants in force (an expired one still open is ended here, audited). */
  async list(): Promise<Grant[]> {
    const out: Grant[] = [];
    for (const row of this.#sql.open.all() as GrantRow[]) {
      const grant = fromRow(row);
      if (grant.expiresAt <= this.#clock.now()) await this.#end(grant, 'expired', 'warden');
      else out.push(grant);
    }
    return out;
  }

  /** The grant in force for this agent and tool, if any: a call it covers needs no card. */
  async covering(agent: string, server: string, tool: string): Promise<Grant | undefined> {
    const row = this.#sql.openFor.get(agent, server, tool) as GrantRow | undefined;
    if (row === undefined) return undefined;
    const grant = fromRow(row);
    if (grant.expiresAt <= this.#clock.now()) {
      await this.#end(grant, 'expired', 'warden');
      return undefined;
    }
    // A halt ends grants where halt effects run; one made while no Warden ran (a CLI halt,
    // then a resume) is found here, in the trail, so a grant never outlives a halt.
    if (this.#trail.haltedSince(grant.agent, grant.createdAt)) {
      await this.#end(grant, 'halted', 'warden');
      return undefined;
    }
    return grant;
  }

  /** Audits that a call ran under a grant, naming both. */
  async used(grant: Grant, callId: string): Promise<void> {
    await this.#audit.append({
      event: 'grant.used',
      callId,
      agent: grant.agent,
      server: grant.server,
      tool: grant.tool,
      approver: grant.grantedBy,
      decision: 'approved',
      reason: `covered by ${grant.grantedBy}'s grant until ${new Date(grant.expiresAt).toISOString()}`,
      detail: { grantId: grant.id, approvalId: grant.approvalId, expiresAt: grant.expiresAt },
    });
  }

  /** Ends an agent's grants (all of them, or one tool's: bare or `server__tool`). Returns those ended. */
  async revoke(filter: { agent?: string | undefined; tool?: string | undefined }, by: string): Promise<Grant[]> {
    return this.#endWhere(
      (g) =>
        (filter.agent === undefined || g.agent === filter.agent) &&
        (filter.tool === undefined || filter.tool === g.tool || filter.tool === qualifiedToolName(g.server, g.tool)),
      'revoked',
      by,
    );
  }

  /** A halt ends the grants of the halted agent (or of all agents). */
  async halted(agent: string | undefined, by: string): Promise<Grant[]> {
    return this.#endWhere((g) => agent === undefined || g.agent === agent, 'halted', by);
  }

  /** After a reload: grants whose agent lost `grants:`, or whose tool the agent may no longer reach, end. */
  async policyChanged(policy: Policy): Promise<Grant[]> {
    return this.#endWhere(
      (g) =>
        policy.agents[g.agent]?.grantMaxMs === undefined ||
        decide(policy, g.agent, g.server, g.tool, undefined, { listing: true }).kind === 'deny',
      'policy_changed',
      'warden',
    );
  }

  async #endWhere(match: (g: Grant) => boolean, reason: GrantEndReason, by: string): Promise<Grant[]> {
    const ended: Grant[] = [];
    for (const row of this.#sql.open.all() as GrantRow[]) {
      const grant = fromRow(row);
      if (!match(grant)) continue;
      if (await this.#end(grant, reason, by)) ended.push(grant);
    }
    return ended;
  }

  async #end(grant: Grant, reason: GrantEndReason, by: string): Promise<boolean> {
    const at = this.#clock.now();
    // An expired grant ended late still ended at its expiry.
    const endedAt = reason === 'expired' ? Math.min(at, grant.expiresAt) : at;
    if (this.#sql.end.run(endedAt, by, reason, grant.id).changes === 0) return false;
    try {
      await this.#audit.append({
        event: 'grant.ended',
        agent: grant.agent,
        server: grant.server,
        tool: grant.tool,
        approver: by,
        decision: reason === 'expired' ? 'expired' : reason === 'halted' ? 'halted' : 'revoked',
        reason: `grant of ${qualifiedToolName(grant.server, grant.tool)} to ${grant.agent} ended: ${reason.replace('_', ' ')}`,
        detail: { grantId: grant.id, approvalId: grant.approvalId, endReason: reason, expiresAt: grant.expiresAt },
      });
    } catch (err) {
      // The grant has ended either way (ending is the safe direction); say that the row is missing.
      this.#logger.error({ err: describeError(err), grantId: grant.id }, 'grant.ended could not be audited');
    }
    return true;
  }
}
