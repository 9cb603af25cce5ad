import type { Alert } from '../../control/types.ts';
import type { SlackMessage } from './approval-card.ts';
import { SlackLimits } from './limits.ts';
import { codeBlock, escapeMrkdwn, mrkdwnText, truncate } from './text.ts';

const SEVERITY_ICON: Record<Alert['severity'], string> = {
  info: ':information_source:',
  warning: ':warning:',
  critical: ':rotating_light:',
};

/** An alert as a message: headline, the sentence, and (redacted upstream) detail. */
export function buildAlertMessage(alert: Alert): SlackMessage {
  const headline = `${SEVERITY_ICON[alert.severity]} *${escapeMrkdwn(alert.kind)}*${alert.agent ? ` · agent *${escapeMrkdwn(truncate(alert.agent, 200))}*` : ''}`;
  const blocks: SlackMessage['blocks'] = [
    { type: 'section', text: mrkdwnText(`${headline}\n${escapeMrkdwn(truncate(alert.text, 2500))}`) },
  ];
  if (alert.detail && Object.keys(alert.detail).length > 0) {
    let detail: string;
    try {
      detail = JSON.stringify(alert.detail, null, 2);
    } catch {
      detail = '[detail could not be shown]';
    }
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: codeBlock(detail, SlackLimits.sectionText) } });
  }
  return { text: truncate(`[${alert.severity}] ${alert.kind}: ${escapeMrkdwn(alert.text)}`, 1000), blocks };
}
