import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { AGENT_NAME_RE } from '../../policy/schema.ts';
import { canAuditAgent } from '../../control/authorize.ts';
import { agentStatuses } from '../../control/status.ts';
import { describeError } from '../../errors.ts';
import { buildAgentsStatus } from '../blocks/agents.ts';
import { AUDIT_AGENT_STATUS_ACTION_ID, buildAuditRefusal } from '../blocks/audit.ts';
import { truncate } from '../blocks/text.ts';
import type { SlackDeps } from '../deps.ts';
import { auditRefusal, slackAuditAccess } from './audit-access.ts';

/**
 * "Agent status" beside an /audit row: the second hop from a row to the
 * agent and its owner (the `/agents status AGENT` view), as a new ephemeral
 * message so the results stay where they were. The agent in the value is
 * client-supplied: the clicker must be allowed that agent's audit rows.
 */
export function registerAuditAgentStatus(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(
    new RegExp(`^${AUDIT_AGENT_STATUS_ACTION_ID}(:\\d+)?$`),
    async ({ ack, action, body, respond }) => {
      await ack();
      const agent = action.value ?? '';
      const { actor, access } = slackAuditAccess(deps, body.user.id);
      const refuse = async (reason: string) => {
        await auditRefusal(deps, actor, 'agent_status', reason, { agent: truncate(agent, 100) });
        const m = buildAuditRefusal(reason);
        await respond({ response_type: 'ephemeral', replace_original: false, text: m.text, blocks: m.blocks }).catch(
          (err: unknown) =>
            deps.logger.warn({ err: describeError(err) }, 'refusal for an agent status click not delivered'),
        );
      };
      if (!access.ok) return await refuse(access.reason);
      // Checked before the name is echoed in any reply: the value is whatever the client sent.
      if (!AGENT_NAME_RE.test(agent)) {
        await respond({
          response_type: 'ephemeral',
          replace_original: false,
          text: 'This button does not name a valid agent.',
        });
        return;
      }
      const authz = canAuditAgent(access, agent);
      if (!authz.ok) return await refuse(authz.reason);
      try {
        const ks = deps.control.killSwitch;
        const now = deps.clock.now();
        const rows = agentStatuses(
          { audit: deps.auditReader, approvals: deps.approvals, runs: deps.control.runs },
          deps.policy(),
          ks,
          now,
          agent,
        );
        const m = buildAgentsStatus(rows, { orgHalt: ks.orgHalt(), now });
        await respond({ response_type: 'ephemeral', replace_original: false, text: m.text, blocks: m.blocks });
      } catch (err) {
        deps.logger.error({ err: describeError(err), agent }, 'agent status from /audit failed');
        await respond({
          response_type: 'ephemeral',
          replace_original: false,
          text: `Status failed: ${describeError(err)}`,
        });
      }
    },
  );
}
