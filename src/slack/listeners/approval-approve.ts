import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { APPROVE_ACTION_ID } from '../blocks/approval-card.ts';
import type { SlackDeps } from '../deps.ts';
import { approvalIdSchema, tellUser } from './respond.ts';

/** Approve button: ack, then one decide() call; the service audits and redraws the card. */
export function registerApprovalApprove(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(APPROVE_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const user = body.user.id;
    const where = { channel: body.channel?.id, user };
    const id = approvalIdSchema.safeParse(action.value);
    if (!id.success) {
      await tellUser(client, deps.logger, where, 'This button does not carry a valid approval id.');
      return;
    }
    const result = await deps.approvals.decide(id.data, user, 'approve');
    if (!result.ok) await tellUser(client, deps.logger, where, result.message);
  });
}
