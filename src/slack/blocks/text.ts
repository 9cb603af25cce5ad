import { SlackLimits } from './limits.ts';

/**
 * Text helpers shared by every Block Kit builder (approvals, /agents, /audit).
 * Anything that did not come from our own code (agent names, arguments,
 * reasons people type) goes through `escapeMrkdwn` so it cannot ping
 * channels (<!channel>), forge links or mentions, or break out of a code block.
 */

const ELLIPSIS = '…';

/** Slack's three control characters in mrkdwn. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * At most `max` UTF-16 units (Slack counts characters; a code unit count is
 * never smaller), ending with `marker` when cut. Never splits a surrogate
 * pair or an `&amp;`-style entity that `escapeMrkdwn` produced.
 */
export function truncate(text: string, max: number, marker: string = ELLIPSIS): string {
  if (text.length <= max) return text;
  if (max <= marker.length) return marker.slice(0, Math.max(0, max));
  let keep = max - marker.length;
  const last = text.charCodeAt(keep - 1);
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep -= 1;
  const amp = keep > 0 ? text.lastIndexOf('&', keep - 1) : -1;
  if (amp !== -1 && amp > keep - 5) {
    const entity = /^&(?:amp|lt|gt);/.exec(text.slice(amp, amp + 5));
    if (entity && amp + entity[0].length > keep) keep = amp;
  }
  return text.slice(0, keep) + marker;
}

/** Escaped and cut to fit a section's text. */
export function mrkdwnText(text: string, max: number = SlackLimits.sectionText): { type: 'mrkdwn'; text: string } {
  return { type: 'mrkdwn', text: truncate(text, max) };
}

export function plainText(text: string, max: number): { type: 'plain_text'; text: string; emoji: true } {
  return { type: 'plain_text', text: truncate(text, max), emoji: true };
}

/** `<@U…>` for a well-formed Slack user id; anything else is shown escaped, never as a mention. */
export function userMention(id: string | undefined): string {
  if (!id) return '_nobody_';
  return /^[UWB][A-Z0-9]{2,}$/.test(id) ? `<@${id}>` : escapeMrkdwn(id);
}

/**
 * Slack renders `<!date^…>` in the reader's time zone; the fallback (UTC,
 * ISO-like) shows where the client cannot.
 */
export function slackDate(ms: number, format: string = '{date_short_pretty} {time}'): string {
  const seconds = Math.floor(ms / 1000);
  const fallback = `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
  return `<!date^${seconds}^${format}|${fallback}>`;
}

/**
 * A fenced code block whose whole text (fences included) fits in `max`.
 * Backtick runs are broken with a zero-width space so content cannot close the fence.
 */
export function codeBlock(text: string, max: number, marker: string = `\n${ELLIPSIS} (truncated)`): string {
  const body = escapeMrkdwn(text).replace(/```/g, '`\u200b`\u200b`');
  const fence = '```';
  return `${fence}${truncate(body, max - 2 * fence.length, marker)}${fence}`;
}
