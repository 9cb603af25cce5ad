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
  const fence = '```';
  return `${fence}${truncate(codeBlockBody(text), max - 2 * fence.length, marker)}${fence}`;
}

/** What `codeBlock` puts between its fences before any cut: escaped, with backtick runs broken. */
export function codeBlockBody(text: string): string {
  return escapeMrkdwn(text).replace(/```/g, '`\u200b`\u200b`');
}

// Characters that change what a reader sees without being seen: C0/C1
// controls (tab, newline and carriage return excepted), soft hyphen, zero-width characters,
// bidi embeddings/overrides/isolates, word joiners, BOM. An agent could use
// them to make `evil.example` read as `example.com` on a card.
const INVISIBLE =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;

/** Shows invisible and direction-changing characters as `⟦U+202E⟧`, so what people read is what runs. */
export function revealInvisible(text: string): string {
  return text.replace(INVISIBLE, (c) => `⟦U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟧`);
}
