import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { z } from 'zod';
import { describeError, isWardenError } from '../../errors.ts';
import { APPROVE_ACTION_ID, APPROVE_FOR_ACTION_ID_PREFIX } from '../blocks/approval-card.ts';
import type { SlackDeps } from '../deps.ts';
import { approvalIdSchema, readApprovalClick, tellUser } from './respond.ts';

/** `<approval id>|<ms>`, as the card's "Approve for …" buttons carry it. */
const approveForValue = z
  .string()
  .max(200)
  .transform((value, ctx) => {
    const [id, ms] = value.split('|');
    const parsedId = approvalIdSchema.safeParse(id);
    const forMs = Number(ms);
    if (!parsedId.success || !Number.isSafeInteger(forMs) || forMs <= 0) {
      ctx.addIssue({ code: 'custom', message: 'not an approval id and a duration' });
      return z.NEVER;
    }
    return { approvalId: parsedId.data, forMs };
  });

/** Approve button: ack, then one decide() call; the service audits and redraws the card. */
export function registerApprovalApprove(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(APPROVE_ACTION_ID, async ({ ack, body, action, client }) => {
    await ack();
    const click = await readApprovalClick(body, action, client, deps.logger);
    if (!click) return;
    const result = await deps.approvals.decide(click.approvalId, click.user, 'approve');
    if (!result.ok) await tellUser(client, deps.logger, click.where, result.message);
  });

  // "Approve for 15 min / 1 h": the same decision plus a time-boxed grant (checked against grants.max again).
  app.action<BlockAction<ButtonAction>>(
    new RegExp(`^${APPROVE_FOR_ACTION_ID_PREFIX}\\d+$`),
    async ({ ack, body, action, client }) => {
      await ack();
      const where = { channel: body.channel?.id, user: body.user.id };
      const value = approveForValue.safeParse(action.value);
      if (!value.success) {
        await tellUser(client, deps.logger, where, 'This button does not carry a valid approval and duration.');
        return;
      }
      try {
        const result = await deps.approvals.decide(value.data.approvalId, body.user.id, 'approve', undefined, {
          forMs: value.data.forMs,
        });
        if (!result.ok) await tellUser(client, deps.logger, where, result.message);
      } catch (err) {
        // e.g. grants.max was lowered since the card was drawn: nothing was decided, say why.
        if (!isWardenError(err, 'INVALID_INPUT')) deps.logger.error({ err: describeError(err) }, 'approve-for failed');
        await tellUser(
          client,
          deps.logger,
          where,
          `Not approved: ${isWardenError(err) ? err.message : 'Warden could not decide it'}.`,
        );
      }
    },
  );
}
