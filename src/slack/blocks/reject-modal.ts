import type { types } from '@slack/bolt';
import type { ApprovalRecord } from '../../approvals/types.ts';
import { SlackLimits } from './limits.ts';
import { escapeMrkdwn, mrkdwnText, plainText, truncate } from './text.ts';

export const REJECT_MODAL_CALLBACK_ID = 'approval_reject_modal';
export const REJECT_REASON_BLOCK_ID = 'reject_reason';
export const REJECT_REASON_ACTION_ID = 'reason';
export const REJECT_REASON_MAX = 1000;

/** Carried through the modal so the submission knows which card it came from. */
export interface RejectModalMetadata {
  approvalId: string;
  channel?: string | undefined;
  messageTs?: string | undefined;
}

export function buildRejectModal(record: ApprovalRecord, meta: RejectModalMetadata): types.ModalView {
  return {
    type: 'modal',
    callback_id: REJECT_MODAL_CALLBACK_ID,
    // Ids only: small by construction, far below the 3,000-character limit.
    private_metadata: JSON.stringify(meta),
    title: plainText('Reject call', SlackLimits.modalTitle),
    submit: plainText('Reject', SlackLimits.modalButton),
    close: plainText('Cancel', SlackLimits.modalButton),
    blocks: [
      {
        type: 'section',
        text: mrkdwnText(
          `Reject *${escapeMrkdwn(truncate(`${record.server}__${record.tool}`, 200))}* for *${escapeMrkdwn(truncate(record.agent, 200))}*? ` +
            'The agent is told the call was rejected, with your reason.',
        ),
      },
      {
        type: 'input',
        block_id: REJECT_REASON_BLOCK_ID,
        label: plainText('Reason', SlackLimits.inputLabel),
        hint: plainText('Shown on the card and returned to the agent.', SlackLimits.inputHint),
        element: {
          type: 'plain_text_input',
          action_id: REJECT_REASON_ACTION_ID,
          multiline: true,
          min_length: 1,
          max_length: REJECT_REASON_MAX,
          placeholder: plainText('Why should this call not run?', SlackLimits.placeholder),
        },
      },
    ],
  };
}
