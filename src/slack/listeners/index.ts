import type { App } from '@slack/bolt';
import type { SlackDeps } from '../deps.ts';
import { registerAgentsCommand } from './agents-command.ts';
import { registerApprovalApprove } from './approval-approve.ts';
import { registerApprovalReject } from './approval-reject.ts';
import { registerAuditAgentStatus } from './audit-agent-status.ts';
import { registerAuditCommand } from './audit-command.ts';
import { registerAuditNextPage } from './audit-next-page.ts';
import { registerRejectReasonSubmit } from './reject-reason-submit.ts';

/**
 * Every Slack listener, one module a line. A module exports
 * `register<Name>(app, deps)` and registers exactly one listener; to add one,
 * import it and add its line here (and its command to manifest.yml —
 * test/slack-manifest.test.ts checks they match).
 */
export function registerListeners(app: App, deps: SlackDeps): void {
  registerAgentsCommand(app, deps);
  registerApprovalApprove(app, deps);
  registerApprovalReject(app, deps);
  registerAuditAgentStatus(app, deps);
  registerAuditCommand(app, deps);
  registerAuditNextPage(app, deps);
  registerRejectReasonSubmit(app, deps);
}
