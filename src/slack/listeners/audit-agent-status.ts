import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { KillSwitch } from '../../control/kill-switch.ts';
import { agentStatuses } from '../../control/status.ts';
import { describeError } from '../../errors.ts';
import { buildAgentsStatus } from '../blocks/agents.ts';
import { AUDIT_AGENT_STATUS_ACTION_ID } from '../blocks/audit.ts';
import type { SlackDeps } from '../deps.ts';

/**
 * "Agent status" beside an /audit row: the second hop from a row to the
 * agent and its owner (the `/agents status AGENT` view), as a new ephemeral
 * message so the results stay where they were.
 */
export function registerAuditAgentStatus(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(new RegExp(`^${AUDIT_AGENT_STATUS_ACTION_ID}(:\\d+)?$`), async ({ ack, action, respond }) => {
    await ack();
    const agent = action.value ?? '';
    if (!deps.db || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(agent)) {
      await respond({ response_type: 'ephemeral', replace_original: false, text: 'This button does not name a valid agent.' });
      return;
    }
    try {
      // Without a running kill switch, one read of control_state is as good: it is the truth.
      const ks = deps.control?.killSwitch ?? new KillSwitch({ db: deps.db, audit: deps.audit });
      const now = deps.clock.now();
      const rows = agentStatuses(deps.db, deps.policy(), ks, now, agent);
      const m = buildAgentsStatus(rows, { orgHalt: ks.status().find((s) => s.scope === 'org'), now });
      await respond({ response_type: 'ephemeral', replace_original: false, text: m.text, blocks: m.blocks });
    } catch (err) {
      deps.logger.error({ err: describeError(err), agent }, 'agent status from /audit failed');
      await respond({ response_type: 'ephemeral', replace_original: false, text: `Status failed: ${describeError(err)}` });
    }
  });
}
