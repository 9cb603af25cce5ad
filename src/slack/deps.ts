import type { ApprovalService } from '../approvals/index.ts';
import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { DrillRunner } from '../control/drill.ts';
import type { KillSwitch } from '../control/kill-switch.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/types.ts';
import type { Db } from '../store/db.ts';

/**
 * What Slack listeners may use. Every listener module exports
 * `register<Name>(app: App, deps: SlackDeps)` and is added with one line in
 * listeners/index.ts. Listeners translate Slack payloads and call services;
 * they hold no business logic.
 *
 * Modules that need more (e.g. /agents needs the kill switch) add an optional
 * field here and check it at registration.
 */
export interface SlackDeps {
  approvals: Pick<ApprovalService, 'decide' | 'precheck' | 'get'> & {
    /** Time-boxed grants, for /agents status and /agents revoke; absent in processes without them. */
    grants?: ApprovalService['grants'] | undefined;
  };
  /** The live policy (PolicyStore.current), read on every use so reloads apply. */
  policy: () => Policy;
  audit: AuditSink;
  logger: Logger;
  clock: Clock;
  /** For read-side commands (/audit queries, /agents status). */
  db?: Db | undefined;
  /** The kill switch and drill runner, for /agents (and /audit's "agent status" hop). */
  control?: { killSwitch: KillSwitch; drill?: DrillRunner | undefined } | undefined;
}
