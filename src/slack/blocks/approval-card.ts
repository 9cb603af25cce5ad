import type { types } from '@slack/bolt';
import type { ApprovalRecord, ApprovalResultReport } from '../../approvals/types.ts';
import { SlackLimits } from './limits.ts';
import { codeBlock, escapeMrkdwn, mrkdwnText, plainText, slackDate, truncate, userMention } from './text.ts';

type KnownBlock = types.KnownBlock;

/** action_ids of the card's buttons; the listeners register exactly these. */
export const APPROVE_ACTION_ID = 'approval_approve';
export const REJECT_ACTION_ID = 'approval_reject';
export const APPROVAL_ACTIONS_BLOCK_ID = 'approval_actions';

export interface SlackMessage {
  /** Notification and accessibility fallback. */
  text: string;
  blocks: KnownBlock[];
}

const CONSEQUENCE_LABEL: Record<ApprovalRecord['consequence'], string> = {
  reversible: 'reversible',
  irreversible: 'irreversible',
  'customer-facing': 'customer-facing',
};

const RULE_LABEL: Record<ApprovalRecord['rule'], string> = {
  approval_required: 'listed in the agent’s `approval_required`',
  consequential: 'a consequential write',
};

function qualified(record: ApprovalRecord): string {
  return truncate(`${record.server}__${record.tool}`, 200);
}

/** Pretty JSON of the (already redacted) arguments; anything unprintable is described. */
function prettyArgs(args: unknown): string {
  try {
    return JSON.stringify(args ?? null, null, 2) ?? 'null';
  } catch {
    return '"[arguments could not be shown]"';
  }
}

/** The one line saying where the request stands, drawn from the stored status. */
export function statusLine(record: ApprovalRecord): string {
  const reason = (max: number) => escapeMrkdwn(truncate(record.decisionReason ?? '', max));
  const at = record.decidedAt !== undefined ? ` at ${slackDate(record.decidedAt)}` : '';
  switch (record.status) {
    case 'pending':
      return `:hourglass_flowing_sand: *Waiting for a decision* — expires ${slackDate(record.expiresAt)}`;
    case 'approved':
      return `:white_check_mark: *Approved* by ${userMention(record.decidedBy)}${at}${record.decisionReason ? `: ${reason(1000)}` : ''}`;
    case 'rejected':
      return `:no_entry: *Rejected* by ${userMention(record.decidedBy)}: ${record.decisionReason ? reason(1000) : '_no reason given_'}`;
    case 'expired':
      return `:hourglass: *Expired* — nobody decided by ${slackDate(record.expiresAt)}; the call was not made`;
    case 'cancelled':
      return `:octagonal_sign: *Cancelled*: ${record.decisionReason ? reason(1000) : 'agents halted'}`;
    case 'abandoned':
      return `:warning: *Abandoned* (${record.decisionReason ? reason(1000) : 'Warden restarted'})`;
    case 'failed':
      return `:x: *Failed*: ${record.decisionReason ? reason(1000) : 'unknown reason'}`;
  }
}

function fallbackText(record: ApprovalRecord): string {
  const what = escapeMrkdwn(`${record.agent} → ${qualified(record)}`);
  switch (record.status) {
    case 'pending':
      return `Approval needed: ${what}`;
    case 'approved':
      return `Approved by <@${record.decidedBy}>: ${what}`;
    case 'rejected':
      return `Rejected by <@${record.decidedBy}>: ${what}`;
    default:
      return `${record.status[0]!.toUpperCase()}${record.status.slice(1)}: ${what}`;
  }
}

/**
 * The approval card, drawn only from the stored record. Pending cards carry
 * Approve / Reject buttons whose value is the approval id; every later state
 * replaces them with a status line. Fits Block Kit limits whatever the input.
 */
export function buildApprovalCard(record: ApprovalRecord): SlackMessage {
  const pending = record.status === 'pending';
  const blocks: KnownBlock[] = [
    {
      type: 'header',
      text: plainText(`${pending ? 'Approval needed' : 'Approval request'}: ${qualified(record)}`, SlackLimits.headerText),
    },
    {
      type: 'section',
      fields: [
        mrkdwnText(`*Agent*\n${escapeMrkdwn(record.agent)}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*Owner*\n${userMention(record.owner)}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*Server*\n${escapeMrkdwn(record.server)}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*Tool*\n${escapeMrkdwn(record.tool)}`, SlackLimits.sectionFieldText),
      ],
    },
    {
      type: 'section',
      text: mrkdwnText(
        [
          '*Why it needs approval*',
          escapeMrkdwn(truncate(record.requestReason ?? 'policy requires a human decision', 2000)),
          `Rule: ${RULE_LABEL[record.rule]} · Consequence: *${CONSEQUENCE_LABEL[record.consequence]}*`,
        ].join('\n'),
      ),
    },
    {
      type: 'section',
      text: {
        type: 'mrkdwn',
        // The heading plus a code block that is cut, fences included, to the section limit.
        text: `*Arguments* (secrets redacted)\n${codeBlock(prettyArgs(record.args), SlackLimits.sectionText - 40)}`,
      },
    },
    {
      type: 'context',
      elements: [
        mrkdwnText(
          `Requested ${slackDate(record.requestedAt)} · Expires ${slackDate(record.expiresAt)} · ` +
            `args sha256 \`${record.argsHash.slice(0, 12)}\` · call \`${escapeMrkdwn(truncate(record.callId, 80))}\``,
          SlackLimits.contextText,
        ),
      ],
    },
  ];
  if (pending) {
    blocks.push({
      type: 'actions',
      block_id: APPROVAL_ACTIONS_BLOCK_ID,
      elements: [
        { type: 'button', action_id: APPROVE_ACTION_ID, text: plainText('Approve', SlackLimits.buttonText), style: 'primary', value: record.id },
        { type: 'button', action_id: REJECT_ACTION_ID, text: plainText('Reject', SlackLimits.buttonText), style: 'danger', value: record.id },
      ],
    });
  }
  blocks.push({ type: 'section', text: mrkdwnText(statusLine(record)) });
  return { text: truncate(fallbackText(record), 300), blocks };
}

/** The thread reply saying how an approved call ended. */
export function buildOutcomeReply(record: ApprovalRecord, outcome: ApprovalResultReport): SlackMessage {
  const head = outcome.ok ? ':white_check_mark: *Call completed*' : ':x: *Call failed*';
  const body = codeBlock(outcome.summary || '(empty)', SlackLimits.sectionText - 200);
  return {
    text: truncate(`${outcome.ok ? 'Completed' : 'Failed'}: ${qualified(record)}`, 300),
    blocks: [{ type: 'section', text: mrkdwnText(`${head} — \`${escapeMrkdwn(qualified(record))}\`\n${body}`) }],
  };
}
