import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { APPROVE_ACTION_ID } from '../blocks/approval-card.ts';
import type { SlackDeps } from '../deps.ts';
import { readApprovalClick, tellUser } from './respond.ts';

/** Approve button: ack, then one decide() call; the service audits and redraws the card. */
export function registerApprovalApprove(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(APPROVE_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const click = await readApprovalClick(body, action, client, deps.logger);
    if (!click) return;
    const result = await deps.approvals.decide(click.approvalId, click.user, 'approve');
    if (!result.ok) await tellUser(client, deps.logger, click.where, result.message);
  });
}
