import type { types } from '@slack/bolt';
import type { DrillResult } from '../../control/drill.ts';
import type { SlackMessage } from './approval-card.ts';
import { SlackLimits } from './limits.ts';
import { escapeMrkdwn, mrkdwnText, plainText, slackDate, truncate } from './text.ts';

type KnownBlock = types.KnownBlock;

/** The drill report for the on-call channel: the three numbers an incident depends on. */
export function buildDrillReport(r: DrillResult): SlackMessage {
  const icon = r.ok ? ':white_check_mark:' : ':rotating_light:';
  const verdict = r.ok ? 'passed' : 'FAILED';
  const tth = r.timeToHaltMs === undefined ? 'never refused' : `${r.timeToHaltMs.toFixed(1)} ms`;
  const blocks: KnownBlock[] = [
    { type: 'header', text: plainText(`Kill-switch drill ${verdict}`, SlackLimits.headerText) },
    {
      type: 'section',
      fields: [
        mrkdwnText(
          `*Mode*\n${r.mode === 'org' ? 'org-wide (maintenance window)' : `canary \`${escapeMrkdwn(truncate(r.agent, 100))}\``}`,
          SlackLimits.sectionFieldText,
        ),
        mrkdwnText(`*Halt → first refusal*\n${tth}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*In-flight call cancelled*\n${r.inflightCancelled ? 'yes' : '*no*'}`, SlackLimits.sectionFieldText),
        mrkdwnText(`*Restored after resume*\n${r.restored ? 'yes' : '*no*'}`, SlackLimits.sectionFieldText),
      ],
    },
  ];
  if (r.problems.length > 0) {
    blocks.push({
      type: 'section',
      text: mrkdwnText(
        `${icon} *Problems*\n${r.problems.map((p) => `• ${escapeMrkdwn(truncate(p, 500))}`).join('\n')}`,
      ),
    });
  }
  blocks.push({
    type: 'context',
    elements: [
      mrkdwnText(
        `\`${r.id}\` · started ${slackDate(r.startedAt)} · took ${((r.finishedAt - r.startedAt) / 1000).toFixed(1)} s`,
        SlackLimits.contextText,
      ),
    ],
  });
  return {
    text: `${icon} Kill-switch drill (${r.mode}) ${verdict}: halt→refusal ${tth}, in-flight cancelled ${r.inflightCancelled ? 'yes' : 'no'}`,
    blocks,
  };
}
