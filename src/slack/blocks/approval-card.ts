import type { types } from '@slack/bolt';
import type { ApprovalRecord, ApprovalResultReport } from '../../approvals/types.ts';
import {
  argumentsWarning,
  planArgumentsThread,
  redactionNotice,
  renderArguments,
  THREAD_SECTIONS_PER_MESSAGE,
} from './approval-arguments.ts';
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

/** Escaped, then cut: the cut never splits an entity, and the result is at most `max` whatever the input. */
function shown(text: string, max: number): string {
  return truncate(escapeMrkdwn(text), max);
}

/** The one line saying where the request stands, drawn from the stored status. */
export function statusLine(record: ApprovalRecord): string {
  const reason = (max: number) => shown(record.decisionReason ?? '', max);
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

function fallbackText(record: ApprovalRecord, incomplete: boolean): string {
  const what = escapeMrkdwn(`${record.agent} → ${qualified(record)}`);
  switch (record.status) {
    case 'pending':
      return `Approval needed: ${what}${incomplete ? ' (not every argument fits on the card: read the thread)' : ''}`;
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
 * replaces them with a status line. Fits Block Kit limits whatever the input:
 * every part is cut to a fixed size, so the whole card stays under
 * `SlackLimits.messageBlocksTextSoft`.
 *
 * Every argument key is listed with its own value (see approval-arguments.ts);
 * when anything is cut or left out, a warning says what, right under the
 * header, and the full arguments go in the thread (`buildArgumentsThread`).
 */
/** A card that waited for Slack's per-channel limit says so: the time to decide is shorter than it looks. */
function queueNote(record: ApprovalRecord, postedAt: number | undefined): string {
  if (postedAt === undefined) return '';
  const waitedS = Math.round((postedAt - record.requestedAt) / 1000);
  if (waitedS < 5) return '';
  return `posted ${waitedS} s after the request (Slack takes about one message a second a channel) · `;
}

export function buildApprovalCard(record: ApprovalRecord, options: { postedAt?: number } = {}): SlackMessage {
  const pending = record.status === 'pending';
  const args = renderArguments(record.args);
  const warning = args.incomplete ? argumentsWarning(args, planArgumentsThread(record.args)) : null;
  const redactions = redactionNotice(args);
  const blocks: KnownBlock[] = [
    {
      type: 'header',
      text: plainText(
        `${pending ? 'Approval needed' : 'Approval request'}: ${qualified(record)}`,
        SlackLimits.headerText,
      ),
    },
  ];
  if (warning) blocks.push({ type: 'section', text: mrkdwnText(warning, 1500) });
  blocks.push(
    {
      type: 'section',
      fields: [
        mrkdwnText(`*Agent*\n${shown(record.agent, 200)}`, SlackLimits.sectionFieldText),
        mrkdwnText(
          `*Owner*\n${record.owner ? userMention(truncate(record.owner, 100)) : userMention(undefined)}`,
          SlackLimits.sectionFieldText,
        ),
        mrkdwnText(`*Server*\n${shown(record.server, 200)}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*Tool*\n${shown(record.tool, 200)}`, SlackLimits.sectionFieldText),
      ],
    },
    {
      type: 'section',
      text: mrkdwnText(
        [
          '*Why it needs approval*',
          shown(record.requestReason ?? 'policy requires a human decision', 1000),
          `Rule: ${RULE_LABEL[record.rule]} · Consequence: *${CONSEQUENCE_LABEL[record.consequence]}*`,
        ].join('\n'),
      ),
    },
    ...args.blocks,
  );
  if (redactions) blocks.push({ type: 'section', text: mrkdwnText(redactions, 1000) });
  blocks.push({
    type: 'context',
    elements: [
      mrkdwnText(
        `Requested ${slackDate(record.requestedAt)} · Expires ${slackDate(record.expiresAt)} · ` +
          queueNote(record, options.postedAt) +
          `args sha256 \`${record.argsHash.slice(0, 12)}\` · call \`${shown(record.callId, 80)}\``,
        SlackLimits.contextText,
      ),
    ],
  });
  if (pending) {
    blocks.push({
      type: 'actions',
      block_id: APPROVAL_ACTIONS_BLOCK_ID,
      elements: [
        {
          type: 'button',
          action_id: APPROVE_ACTION_ID,
          text: plainText('Approve', SlackLimits.buttonText),
          style: 'primary',
          value: record.id,
        },
        {
          type: 'button',
          action_id: REJECT_ACTION_ID,
          text: plainText('Reject', SlackLimits.buttonText),
          style: 'danger',
          value: record.id,
        },
      ],
    });
  }
  blocks.push({ type: 'section', text: mrkdwnText(statusLine(record)) });
  return { text: truncate(fallbackText(record, args.incomplete), 300), blocks };
}

/** Whether the card leaves anything out, so the thread must carry the full arguments. */
export function cardHidesArguments(record: ApprovalRecord): boolean {
  return renderArguments(record.args).incomplete;
}

/**
 * The full (redacted) arguments as thread replies, for a card that could not
 * show them all: pretty JSON split into code sections, a few a message, each
 * within the limits. Empty when the card shows everything.
 */
export function buildArgumentsThread(record: ApprovalRecord): SlackMessage[] {
  if (!cardHidesArguments(record)) return [];
  const plan = planArgumentsThread(record.args);
  const parts = Math.ceil(plan.chunks.length / THREAD_SECTIONS_PER_MESSAGE);
  const messages: SlackMessage[] = [];
  for (let i = 0; i < parts; i++) {
    const chunks = plan.chunks.slice(i * THREAD_SECTIONS_PER_MESSAGE, (i + 1) * THREAD_SECTIONS_PER_MESSAGE);
    const blocks: KnownBlock[] = [
      {
        type: 'context',
        elements: [
          mrkdwnText(
            `:page_facing_up: Full arguments of \`${shown(qualified(record), 200)}\` (secrets redacted) — part ${i + 1} of ${parts}`,
            SlackLimits.contextText,
          ),
        ],
      },
      // Chunks are already escaped and fence-safe (codeBlockBody); only the fences are added.
      ...chunks.map((c): KnownBlock => ({ type: 'section', text: { type: 'mrkdwn', text: `\`\`\`${c}\`\`\`` } })),
    ];
    if (i === parts - 1 && !plan.complete) {
      blocks.push({
        type: 'section',
        text: mrkdwnText(
          `:rotating_light: *The rest is not posted*: the arguments are ${plan.totalChars.toLocaleString('en-US')} characters, ` +
            `more than Warden shows in Slack (${plan.postedChars.toLocaleString('en-US')} above). Do not approve what you could not read.`,
        ),
      });
    }
    messages.push({ text: `Full arguments of ${escapeMrkdwn(qualified(record))}, part ${i + 1} of ${parts}`, blocks });
  }
  return messages;
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
