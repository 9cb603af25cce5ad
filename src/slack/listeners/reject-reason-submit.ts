import type { App } from '@slack/bolt';
import { z } from 'zod';
import {
  REJECT_MODAL_CALLBACK_ID,
  REJECT_REASON_ACTION_ID,
  REJECT_REASON_BLOCK_ID,
  REJECT_REASON_MAX,
} from '../blocks/reject-modal.ts';
import type { SlackDeps } from '../deps.ts';
import { approvalIdSchema, tellUser } from './respond.ts';

const metadataSchema = z.object({
  approvalId: approvalIdSchema,
  channel: z.string().optional(),
  messageTs: z.string().optional(),
});

/** Reject modal submitted: validate the reason, ack (closing the modal), then decide. */
export function registerRejectReasonSubmit(app: App, deps: SlackDeps): void {
  app.view(REJECT_MODAL_CALLBACK_ID, async ({ ack, body, view, client }) => {
    const reason = view.state.values[REJECT_REASON_BLOCK_ID]?.[REJECT_REASON_ACTION_ID]?.value?.trim() ?? '';
    if (reason.length === 0 || reason.length > REJECT_REASON_MAX) {
      await ack({
        response_action: 'errors',
        errors: { [REJECT_REASON_BLOCK_ID]: `Give a reason (1–${REJECT_REASON_MAX} characters).` },
      });
      return;
    }
    let meta: z.infer<typeof metadataSchema>;
    try {
      meta = metadataSchema.parse(JSON.parse(view.private_metadata));
    } catch {
      await ack({
        response_action: 'errors',
        errors: { [REJECT_REASON_BLOCK_ID]: 'This dialog is not linked to an approval; reject from the card again.' },
      });
      return;
    }
    await ack();
    const user = body.user.id;
    const result = await deps.approvals.decide(meta.approvalId, user, 'reject', reason);
    if (!result.ok) await tellUser(client, deps.logger, { channel: meta.channel, user }, result.message);
  });
}
