import type { types } from '@slack/bolt';
import type { AuditRow } from '../../audit/types.ts';
import type { Policy } from '../../policy/types.ts';
import type { SlackMessage } from './approval-card.ts';
import { SlackLimits } from './limits.ts';
import { escapeMrkdwn, mrkdwnText, plainText, slackDate, truncate, userMention } from './text.ts';

type KnownBlock = types.KnownBlock;

export const AUDIT_NEXT_PAGE_ACTION_ID = 'audit_next_page';
export const AUDIT_AGENT_STATUS_ACTION_ID = 'audit_agent_status';
/** Rows a page: with header, context and the actions block this stays far below 50 blocks. */
export const AUDIT_PAGE_SIZE = 20;
/** The query text rides in the Next button's value with the cursor; past this it cannot. */
export const MAX_PAGINATED_QUERY_CHARS = 1800;

export interface AuditPageState {
  /** The query as typed, re-parsed on each page. */
  q: string;
  /** seq to continue below. */
  before: number;
  /** Pages shown so far, for the header. */
  page: number;
}

export function encodePageState(s: AuditPageState): string | undefined {
  const v = JSON.stringify(s);
  return v.length <= SlackLimits.buttonValue ? v : undefined;
}

export function decodePageState(value: string): AuditPageState | undefined {
  try {
    const v = JSON.parse(value) as Partial<AuditPageState>;
    if (typeof v.q !== 'string' || !Number.isInteger(v.before) || (v.before as number) < 1 || !Number.isInteger(v.page))
      return undefined;
    return { q: v.q, before: v.before as number, page: v.page as number };
  } catch {
    return undefined;
  }
}

function what(row: AuditRow): string {
  const tool = row.tool
    ? row.server && !row.tool.includes('__')
      ? `${row.server}__${row.tool}`
      : row.tool
    : undefined;
  return [
    `\`${escapeMrkdwn(row.event)}\``,
    tool ? `\`${escapeMrkdwn(truncate(tool, 150))}\`` : '',
    row.decision ? `→ *${escapeMrkdwn(truncate(row.decision, 40))}*` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

/** One row: when, what, who (agent and its owner — the first hop), why. */
export function auditRowText(row: AuditRow, policy?: Policy): string {
  const owner = row.owner ?? (row.agent ? policy?.agents[row.agent]?.owner : undefined);
  const who = row.agent
    ? `agent *${escapeMrkdwn(truncate(row.agent, 100))}* · owner ${userMention(owner ?? undefined)}`
    : '_no agent_';
  const extra = [
    row.approver ? `by ${userMention(row.approver)}` : '',
    row.duration_ms !== null ? `${row.duration_ms} ms` : '',
    row.reason ? `_${escapeMrkdwn(truncate(row.reason, 300))}_` : '',
  ].filter(Boolean);
  return [`\`#${row.seq}\` ${slackDate(row.ts)} ${what(row)}`, who, extra.join(' · ')].filter(Boolean).join('\n');
}

/**
 * `/audit` results as an ephemeral message. Each row carries a button to the
 * agent's status (second hop); a Next page button carries the cursor.
 */
export function buildAuditResults(opts: {
  query: string;
  rows: AuditRow[];
  nextCursor?: number | undefined;
  page: number;
  policy?: Policy | undefined;
  /** The agents the asker may see, when not all: said in the header so an empty page is not misread. */
  scope?: readonly string[] | undefined;
}): SlackMessage {
  const rows = opts.rows.slice(0, AUDIT_PAGE_SIZE);
  const blocks: KnownBlock[] = [
    { type: 'header', text: plainText(`Audit${opts.page > 1 ? ` — page ${opts.page}` : ''}`, SlackLimits.headerText) },
    {
      type: 'context',
      elements: [
        mrkdwnText(
          `Query: \`${escapeMrkdwn(truncate(opts.query || '(everything)', 1500))}\` · ${rows.length} row(s), newest first`,
          SlackLimits.contextText,
        ),
      ],
    },
  ];
  if (opts.scope) {
    blocks.push({
      type: 'context',
      elements: [
        mrkdwnText(`Limited to the agents you own or approve: ${scopeList(opts.scope)}`, SlackLimits.contextText),
      ],
    });
  }
  if (rows.length === 0) blocks.push({ type: 'section', text: mrkdwnText('No audit rows match.') });
  for (const row of rows) {
    const section: KnownBlock = { type: 'section', text: mrkdwnText(auditRowText(row, opts.policy)) };
    if (row.agent) {
      section.accessory = {
        type: 'button',
        action_id: `${AUDIT_AGENT_STATUS_ACTION_ID}:${row.seq}`.slice(0, SlackLimits.actionId),
        text: plainText('Agent status', SlackLimits.buttonText),
        value: truncate(row.agent, SlackLimits.buttonValue),
      };
    }
    blocks.push(section);
  }
  if (opts.nextCursor !== undefined) {
    const value =
      opts.query.length <= MAX_PAGINATED_QUERY_CHARS
        ? encodePageState({ q: opts.query, before: opts.nextCursor, page: opts.page + 1 })
        : undefined;
    if (value) {
      blocks.push({
        type: 'actions',
        block_id: 'audit_pagination',
        elements: [
          {
            type: 'button',
            action_id: AUDIT_NEXT_PAGE_ACTION_ID,
            text: plainText('Next page', SlackLimits.buttonText),
            value,
          },
        ],
      });
    } else {
      blocks.push({
        type: 'context',
        elements: [
          mrkdwnText(
            'More rows match, but the query is too long to page through here: narrow it, or use `warden audit query`.',
            SlackLimits.contextText,
          ),
        ],
      });
    }
  }
  return { text: `Audit: ${rows.length} row(s) for ${truncate(opts.query || '(everything)', 200)}`, blocks };
}

/** A bad query: what was wrong, and one that works. */
export function buildAuditError(message: string, example: string): SlackMessage {
  return {
    text: `Bad audit query: ${truncate(message, 500)}`,
    blocks: [
      { type: 'section', text: mrkdwnText(`:x: ${escapeMrkdwn(truncate(message, 2000))}`) },
      {
        type: 'context',
        elements: [
          mrkdwnText(
            `Example: \`/audit ${escapeMrkdwn(example)}\` · add \`format:csv\` for a file`,
            SlackLimits.contextText,
          ),
        ],
      },
    ],
  };
}

function scopeList(agents: readonly string[]): string {
  return truncate(agents.map((a) => `\`${escapeMrkdwn(truncate(a, 100))}\``).join(', '), 2500);
}

/** /audit refused: who may audit is the policy's call, so the reason names the policy field. */
export function buildAuditRefusal(reason: string): SlackMessage {
  return {
    text: `Not allowed: ${truncate(reason, 500)}`,
    blocks: [
      { type: 'section', text: mrkdwnText(`:no_entry: Not allowed: ${truncate(reason, 2500)}`) },
      {
        type: 'context',
        elements: [
          mrkdwnText(
            'Who may read the audit trail from Slack is set by `control.auditors` in the policy.',
            SlackLimits.contextText,
          ),
        ],
      },
    ],
  };
}
