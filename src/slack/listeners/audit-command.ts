import type { App, RespondArguments } from '@slack/bolt';
import { formatRows, parseQuery, runQuery, QUERY_EXAMPLE } from '../../audit/index.ts';
import { describeError, isWardenError } from '../../errors.ts';
import { AUDIT_PAGE_SIZE, buildAuditError, buildAuditResults } from '../blocks/audit.ts';
import { escapeMrkdwn, truncate } from '../blocks/text.ts';
import type { SlackDeps } from '../deps.ts';

const ephemeral = (m: { text: string; blocks: unknown[] }): RespondArguments => ({ response_type: 'ephemeral', text: m.text, blocks: m.blocks as never });

/**
 * `/audit <query>` in the audit query language. Answers only the asker
 * (ephemeral), a page at a time; `format:csv` uploads the rows as a file to
 * the channel the command came from. A bad query gets the parser's message
 * and a working example.
 */
export function registerAuditCommand(app: App, deps: SlackDeps): void {
  app.command('/audit', async ({ ack, command, respond, client }) => {
    await ack();
    const text = (command.text ?? '').trim();
    if (!deps.db) {
      await respond({ response_type: 'ephemeral', text: 'The audit trail is not available in this Warden process.' });
      return;
    }
    try {
      let q;
      try {
        q = parseQuery(text, deps.clock.now());
      } catch (err) {
        if (!isWardenError(err, 'QUERY_INVALID')) throw err;
        await respond(ephemeral(buildAuditError(err.message, QUERY_EXAMPLE)));
        return;
      }
      if (q.format === 'csv') {
        const { rows, nextCursor } = runQuery(deps.db, q);
        const stamp = new Date(deps.clock.now()).toISOString().replace(/[:.]/g, '-');
        await client.files.uploadV2({
          channel_id: command.channel_id,
          filename: `warden-audit-${stamp}.csv`,
          title: `Warden audit: ${truncate(text, 200)}`,
          content: formatRows(rows, 'csv'),
          initial_comment: `Audit export requested by <@${command.user_id}>: \`${escapeMrkdwn(truncate(text, 500))}\` (${rows.length} rows)`,
        });
        const more = nextCursor !== undefined ? ` More rows match: raise \`limit:\` (up to 1000) or narrow with \`since:\`/\`until:\`.` : '';
        await respond({ response_type: 'ephemeral', text: `Uploaded ${rows.length} audit row(s) as CSV to this channel.${more}` });
        return;
      }
      const page = runQuery(deps.db, { ...q, limit: Math.min(q.limit, AUDIT_PAGE_SIZE) });
      await respond(ephemeral(buildAuditResults({ query: text, rows: page.rows, nextCursor: page.nextCursor, page: 1, policy: deps.policy() })));
    } catch (err) {
      deps.logger.error({ err: describeError(err), user: command.user_id }, '/audit failed');
      await respond({ response_type: 'ephemeral', text: `The audit query failed: ${truncate(describeError(err), 500)}` }).catch(() => {});
    }
  });
}
