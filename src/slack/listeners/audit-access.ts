import { actorLabel, auditAccess, type AuditAccess, type ControlActor } from '../../control/authorize.ts';
import { describeError } from '../../errors.ts';
import type { SlackDeps } from '../deps.ts';
import { recordRefusal } from './respond.ts';

/** What the user tried: the command itself, its CSV export, or one of its buttons. */
export type AuditAction = 'query' | 'export' | 'next_page' | 'agent_status';

/**
 * The Slack user's audit access under the live policy. Every /audit entry
 * point (the command and both buttons) asks again on each use: a button's
 * value is whatever the client sent, so it grants nothing by itself.
 */
export function slackAuditAccess(deps: SlackDeps, userId: string): { actor: ControlActor; access: AuditAccess } {
  const actor: ControlActor = { kind: 'slack', userId };
  return { actor, access: auditAccess(deps.policy(), actor) };
}

/** Records a refused /audit attempt as `audit.refused`, in the shape /agents uses for `control.refused`. */
export async function auditRefusal(
  deps: SlackDeps,
  actor: ControlActor,
  action: AuditAction,
  reason: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await recordRefusal(deps, 'audit.refused', actor, action, reason, detail);
}

/**
 * Who read what: each answered /audit query (or export, or page) is itself a
 * row, so compliance can see access to the trail, not only changes to it.
 * The query text is kept, the rows returned are counted, not copied.
 */
export async function auditAccessRecord(
  deps: SlackDeps,
  actor: ControlActor,
  action: AuditAction,
  detail: Record<string, unknown>,
): Promise<void> {
  await deps.audit
    .append({ event: 'audit.queried', decision: action, detail: { actor: actorLabel(actor), ...detail } })
    .catch((err: unknown) => deps.logger.error({ err: describeError(err), action }, 'recording an /audit read failed'));
}
