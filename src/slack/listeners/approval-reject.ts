import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { describeError } from '../../errors.ts';
import { REJECT_ACTION_ID } from '../blocks/approval-card.ts';
import { buildRejectModal } from '../blocks/reject-modal.ts';
import type { SlackDeps } from '../deps.ts';
import { readApprovalClick, tellUser } from './respond.ts';

/**
 * Reject button: ack, check the clicker may decide (a refusal is audited
 * there), then open the reason modal. The decision happens on submit.
 */
export function registerApprovalReject(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(REJECT_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const click = await readApprovalClick(body, action, client, deps.logger);
    if (!click) return;
    const { approvalId, user, where } = click;
    const checked = await deps.approvals.precheck(approvalId, user, 'reject');
    if (!checked.ok) {
      await tellUser(client, deps.logger, where, checked.message);
      return;
    }
    const view = buildRejectModal(checked.record, { approvalId, channel: where.channel, messageTs: body.message?.ts });
    try {
      await client.views.open({ trigger_id: body.trigger_id, view });
    } catch (err) {
      deps.logger.warn({ approvalId, err: describeError(err) }, 'reject modal could not be opened');
      await tellUser(client, deps.logger, where, 'The reject dialog could not be opened; please try again.');
    }
  });
}
