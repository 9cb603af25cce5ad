/**
 * Slack mrkdwn → terminal text. Services write reasons for Slack (`<@U0123>` renders as a
 * name there); on a terminal the raw markup is noise, so the CLI prints the plain form.
 */
export function plainText(text: string): string {
  return text
    .replace(/<[@#!]([^|>]+)\|([^>]+)>/g, (_m, _id: string, label: string) => label)
    .replace(/<@([^|>]+)>/g, '$1')
    .replace(/<#([^|>]+)>/g, '#$1')
    .replace(/<!([^|>]+)>/g, '@$1')
    .replace(/<(https?:[^|>]+)\|([^>]+)>/g, '$2 ($1)')
    .replace(/<(https?:[^>]+)>/g, '$1');
}
