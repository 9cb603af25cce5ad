import type { AuditSink } from '../audit/types.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { diffPolicies } from '../policy/diff.ts';
import type { Policy } from '../policy/types.ts';
import type { AlertSink } from './types.ts';

/** Lines of the summary shown in the on-call message; the audit row keeps them all. */
const ALERT_LINES = 40;

export interface PolicyReloads {
  readonly path: string;
  onChange(listener: (policy: Policy, previous: Policy) => void): () => void;
}

/**
 * Every reload that changes something is written to the trail
 * (`policy.changed`, the `warden policy diff` lines in its detail) and posted
 * on-call, so a widened grant is never silent. Returns an unsubscribe.
 */
export function reportPolicyChanges(deps: {
  policy: PolicyReloads;
  audit: Pick<AuditSink, 'append'>;
  alerts: AlertSink;
  logger: Logger;
}): () => void {
  return deps.policy.onChange((next, previous) => {
    const changes = diffPolicies(previous, next);
    if (changes.length === 0) return;
    deps.audit
      .append({
        event: 'policy.changed',
        reason: `${changes.length} change(s) in ${deps.policy.path}`,
        detail: { file: deps.policy.path, changes },
      })
      .catch((err: unknown) =>
        deps.logger.error(
          { err: describeError(err), changes: changes.length },
          'the policy change could not be audited',
        ),
      );
    const shown = changes.slice(0, ALERT_LINES);
    const more = changes.length - shown.length;
    deps.alerts.alert({
      kind: 'policy_changed',
      severity: 'warning',
      text: `The policy was reloaded from ${deps.policy.path} with ${changes.length} change${changes.length === 1 ? '' : 's'}:\n${shown.join('\n')}${more > 0 ? `\n… and ${more} more (see the policy.changed audit row)` : ''}`,
    });
  });
}
