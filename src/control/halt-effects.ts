import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import type { AlertSink, HaltState } from './types.ts';
import type { KillSwitch } from './kill-switch.ts';

/** The slice of ApprovalService a halt needs; structural so control never imports approvals' internals. */
export interface PendingApprovalCanceller {
  cancelPending(filter: { agent?: string }, reason: string): Promise<number>;
  /** Ends the time-boxed grants of the halted agent (or all): a grant never outlives a halt. */
  endGrantsOnHalt?(agent: string | undefined, by: string): Promise<number>;
}

export interface HaltEffectsOptions {
  killSwitch: KillSwitch;
  approvals?: PendingApprovalCanceller | undefined;
  alerts: AlertSink;
  logger?: Logger | undefined;
  /**
   * Also act on halts made by other processes (e.g. `warden agents halt` from a
   * terminal). Set it in the long-running process that owns Slack, so a CLI
   * halt still cancels cards and is announced; leave it off in short-lived ones.
   */
  actOnRemote?: boolean | undefined;
}

/** Drill halts are announced by the drill report; the announcement says so rather than paging. */
export const isDrillActor = (actor: string) => actor.startsWith('drill:');

function describe(state: { scope: 'org' | 'agent'; agent?: string | undefined }): string {
  return state.scope === 'org' ? 'all agents (org-wide)' : `agent ${state.agent}`;
}

/**
 * What a halt does beyond refusing new calls (the gateway reads `check()` and
 * aborts its own in-flight calls via `onHalt`): cancel pending approvals (their
 * cards are redrawn by the approval service's notifier) and announce on-call.
 */
export function wireHaltEffects(opts: HaltEffectsOptions): () => void {
  const logger = opts.logger ?? silentLogger();
  const onHalt = (state: HaltState, info: { origin: 'local' | 'remote' }) => {
    if (info.origin === 'remote' && !opts.actOnRemote) return;
    void (async () => {
      let cancelled = 0;
      if (opts.approvals) {
        try {
          cancelled = await opts.approvals.cancelPending(
            state.scope === 'org' ? {} : { agent: state.agent! },
            `halted by ${state.actor}: ${state.reason}`,
          );
        } catch (err) {
          logger.error(
            { err: describeError(err), scope: state.scope, agent: state.agent },
            'cancelling pending approvals after halt failed',
          );
        }
        try {
          await opts.approvals.endGrantsOnHalt?.(state.scope === 'org' ? undefined : state.agent, state.actor);
        } catch (err) {
          logger.error({ err: describeError(err), agent: state.agent }, 'ending grants after halt failed');
        }
      }
      const drill = isDrillActor(state.actor);
      opts.alerts.alert({
        kind: 'halted',
        severity: drill ? 'info' : 'critical',
        agent: state.agent,
        text: `${drill ? 'Drill: ' : ''}${describe(state)} halted by ${state.actor}: ${state.reason}. New calls are refused, in-flight calls cancelled${cancelled ? `, ${cancelled} pending approval(s) cancelled` : ''}.`,
        detail: {
          action: 'halt',
          scope: state.scope,
          actor: state.actor,
          at: state.at,
          approvalsCancelled: cancelled,
          origin: info.origin,
        },
      });
    })();
  };
  const onResume: Parameters<KillSwitch['onResume']>[0] = (r, info) => {
    if (info.origin === 'remote' && !opts.actOnRemote) return;
    const drill = isDrillActor(r.actor);
    opts.alerts.alert({
      kind: 'halted',
      severity: drill ? 'info' : 'warning',
      agent: r.agent,
      text: `${drill ? 'Drill: ' : ''}${describe(r)} resumed by ${r.actor}.`,
      detail: { action: 'resume', scope: r.scope, actor: r.actor, at: r.at, origin: info.origin },
    });
  };
  const offHalt = opts.killSwitch.onHalt(onHalt);
  const offResume = opts.killSwitch.onResume(onResume);
  return () => {
    offHalt();
    offResume();
  };
}
