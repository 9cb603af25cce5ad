import type { ControlPolicy } from '../policy/types.ts';

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

/** Resuming re-opens the gate, so it is stricter: an empty resumers list means CLI only. */
export function canResume(control: ControlPolicy, actor: ControlActor): ControlAuthz {
  if (actor.kind === 'cli') return { ok: true };
  if (control.resumers.length === 0) return { ok: false, reason: 'no Slack user may resume (control.resumers is empty); use `warden agents resume` from the CLI' };
  if (control.resumers.includes(actor.userId)) return { ok: true };
  return { ok: false, reason: `<@${actor.userId}> is not in control.resumers` };
}

/** Running a drill halts (the canary, or the org in a maintenance window) and resumes, so it needs both. */
export function canDrill(control: ControlPolicy, actor: ControlActor): ControlAuthz {
  const h = canHalt(control, actor);
  if (!h.ok) return h;
  return canResume(control, actor);
}
