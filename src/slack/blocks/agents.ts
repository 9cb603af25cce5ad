import type { types } from '@slack/bolt';
import type { AgentStatus } from '../../control/status.ts';
import type { HaltState } from '../../control/types.ts';
import type { SlackMessage } from './approval-card.ts';
import { SlackLimits } from './limits.ts';
import { escapeMrkdwn, mrkdwnText, plainText, slackDate, truncate, userMention } from './text.ts';

type KnownBlock = types.KnownBlock;

/** Room for header, banner, footer: the rest are agents, one section each. */
const MAX_AGENT_SECTIONS = SlackLimits.messageBlocks - 5;

function haltLine(h: HaltState): string {
  const who = h.scope === 'org' ? 'org-wide halt' : 'halted';
  return `:red_circle: *${who}* by ${escapeMrkdwn(truncate(h.actor, 100))} ${slackDate(h.at)}: ${escapeMrkdwn(truncate(h.reason, 300))}`;
}

function reviewText(r: AgentStatus): string {
  if (!r.reviewBy) return 'review: _not set_';
  if (r.reviewOverdue) return `review: *${r.reviewBy}* :warning: *OVERDUE* (${-(r.reviewInDays ?? 0)}d)`;
  return `review: ${r.reviewBy}${r.reviewInDays !== undefined && r.reviewInDays <= 7 ? ` (in ${r.reviewInDays}d)` : ''}`;
}

export function agentStatusLine(r: AgentStatus): string {
  const state = r.halt ? haltLine(r.halt) : ':large_green_circle: running';
  const runs =
    r.runs.length === 0
      ? ''
      : `processes (\`warden run\`): ${r.runs
          .slice(0, 5)
          .map(
            (run) =>
              `\`${run.id}\` pid ${run.pid ?? '?'} on ${escapeMrkdwn(truncate(run.host, 60))} since ${slackDate(run.startedAt)}`,
          )
          .join(', ')}${r.runs.length > 5 ? ` and ${r.runs.length - 5} more` : ''}`;
  return [
    `*${escapeMrkdwn(truncate(r.agent, 100))}* · owner ${userMention(r.owner)}`,
    state,
    ...(r.unsandboxed
      ? [':warning: *sandbox: none*: `warden run` starts it with the host’s files, credentials and network']
      : []),
    ...(runs ? [runs] : []),
    `calls (1h): *${r.callsLastHour}* · denied (1h): *${r.denialsLastHour}* · pending approvals: *${r.pendingApprovals}* · ${reviewText(r)}`,
  ].join('\n');
}

/**
 * `/agents status`: one section per agent. More agents than fit one message
 * are counted, not dropped silently, and the CLI has the full list.
 */
export function buildAgentsStatus(
  rows: AgentStatus[],
  opts: { orgHalt?: HaltState | undefined; now: number },
): SlackMessage {
  const blocks: KnownBlock[] = [{ type: 'header', text: plainText('Agents', SlackLimits.headerText) }];
  if (opts.orgHalt)
    blocks.push({
      type: 'section',
      text: mrkdwnText(`:rotating_light: *All agents are halted.* ${haltLine(opts.orgHalt)}`),
    });
  if (rows.length === 0) blocks.push({ type: 'section', text: mrkdwnText('No agents in the policy.') });
  for (const r of rows.slice(0, MAX_AGENT_SECTIONS))
    blocks.push({ type: 'section', text: mrkdwnText(agentStatusLine(r)) });
  const more = rows.length - MAX_AGENT_SECTIONS;
  const footer = [
    `As of ${slackDate(opts.now)}.`,
    more > 0 ? `${more} more agent(s) not shown: \`warden agents status\`.` : '',
  ]
    .filter(Boolean)
    .join(' ');
  blocks.push({ type: 'context', elements: [mrkdwnText(footer, SlackLimits.contextText)] });
  const halted = rows.filter((r) => r.state === 'halted').length;
  const overdue = rows.filter((r) => r.reviewOverdue).length;
  return {
    text: `${rows.length} agent(s), ${halted} halted, ${overdue} review(s) overdue${opts.orgHalt ? ' — ORG HALTED' : ''}`,
    blocks,
  };
}

/** A one-line ephemeral answer: what happened, or why not. */
export function buildControlReply(text: string, icon = ':information_source:'): SlackMessage {
  return { text: truncate(text, 1000), blocks: [{ type: 'section', text: mrkdwnText(`${icon} ${text}`) }] };
}

export const AGENTS_USAGE =
  'Usage: `/agents status [AGENT]` · `/agents halt [all|AGENT] [reason]` · `/agents resume [all|AGENT]` · `/agents drill [canary|org]`';
