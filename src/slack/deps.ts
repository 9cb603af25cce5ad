import type { ApprovalService } from '../approvals/index.ts';
import type { AuditReader } from '../audit/reader.ts';
import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { DrillRunner } from '../control/drill.ts';
import type { KillSwitch } from '../control/kill-switch.ts';
import type { RunStore } from '../control/runs.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/types.ts';

/**
 * What Slack listeners may use. Every listener module exports
 * `register<Name>(app: App, deps: SlackDeps)` and is added with one line in
 * listeners/index.ts. Listeners translate Slack payloads and call services;
 * they hold no business logic.
 *
 * Every field is required: a listener never checks whether a service is
 * there, and never builds one itself (no raw database handle either: each
 * table is read through the module that owns it).
 */
export interface SlackDeps {
  approvals: Pick<ApprovalService, 'decide' | 'precheck' | 'get' | 'pendingCountsByAgent'>;
  /** The live policy (PolicyStore.current), read on every use so reloads apply. */
  policy: () => Policy;
  audit: AuditSink;
  logger: Logger;
  clock: Clock;
  /** The audit trail's read side, for /audit queries and /agents status. */
  auditReader: AuditReader;
  /**
   * The kill switch and open runs, for /agents (and /audit's "agent status" hop); drills only where a
   * gateway runs them.
   */
  control: { killSwitch: KillSwitch; runs: Pick<RunStore, 'open'>; drill?: DrillRunner | undefined };
}
