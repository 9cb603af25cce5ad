import type { App } from '@slack/bolt';
import { formatRows, parseQuery, QUERY_EXAMPLE } from '../../audit/index.ts';
import type { AuditQuery } from '../../audit/index.ts';
import { scopeAuditQuery } from '../../control/authorize.ts';
import { describeError, isWardenError } from '../../errors.ts';
import { AUDIT_PAGE_SIZE, buildAuditError, buildAuditRefusal, buildAuditResults } from '../blocks/audit.ts';
import { escapeMrkdwn, truncate } from '../blocks/text.ts';
import type { SlackDeps } from '../deps.ts';
import { ephemeral } from './respond.ts';
import { auditAccessRecord, auditRefusal, slackAuditAccess } from './audit-access.ts';

/**
 * `/audit <query>` in the audit query language. The asker is authorised
 * first (control.auditors, or owner/approver scope; see auditAccess) and the
 * query is bound to what they may see before it runs. Answers only the asker
 * (ephemeral), a page at a time; `format:csv` goes to the asker's direct
 * messages with Warden, never the channel, since the rows hold customer data.
 * A bad query gets the parser's message and a working example.
 */
export function registerAuditCommand(app: App, deps: SlackDeps): void {
  app.command('/audit', async ({ ack, command, respond, client }) => {
    await ack();
    const text = (command.text ?? '').trim();
    try {
      const { actor, access } = slackAuditAccess(deps, command.user_id);
      const refuse = async (action: 'query' | 'export', reason: string) => {
        await auditRefusal(deps, actor, action, reason, { query: truncate(text, 500), channel: command.channel_id });
        await respond(ephemeral(buildAuditRefusal(reason)));
      };
      // Before parsing: someone with no access learns nothing, not even whether their query was valid.
      if (!access.ok) return await refuse(/\bformat:csv\b/i.test(text) ? 'export' : 'query', access.reason);
      let parsed: AuditQuery;
      try {
        parsed = parseQuery(text, deps.clock.now());
      } catch (err) {
        if (!isWardenError(err, 'QUERY_INVALID')) throw err;
        await respond(ephemeral(buildAuditError(err.message, QUERY_EXAMPLE)));
        return;
      }
      const scoped = scopeAuditQuery(parsed, access);
      if (!scoped.ok) return await refuse(parsed.format === 'csv' ? 'export' : 'query', scoped.reason);
      const q = scoped.query;
      const scope = access.agents === 'all' ? undefined : access.agents;

      if (q.format === 'csv') {
        const { rows, nextCursor } = deps.auditReader.query(q);
        // A DM with the requester: the file is theirs alone, whoever else is in the channel.
        let dm: string | undefined;
        try {
          const opened = await client.conversations.open({ users: command.user_id });
          dm = opened.channel?.id;
        } catch (err) {
          deps.logger.warn(
            { err: describeError(err), user: command.user_id },
            'opening a DM for an /audit export failed',
          );
        }
        if (!dm) {
          await respond({
            response_type: 'ephemeral',
            text: 'Could not open a direct message with you to send the CSV, so nothing was uploaded. Try again, or use `warden audit query … --format csv`.',
          });
          return;
        }
        const stamp = new Date(deps.clock.now()).toISOString().replace(/[:.]/g, '-');
        await client.files.uploadV2({
          channel_id: dm,
          filename: `warden-audit-${stamp}.csv`,
          title: `Warden audit: ${truncate(text, 200)}`,
          content: formatRows(rows, 'csv'),
          initial_comment: `Your audit export: \`${escapeMrkdwn(truncate(text, 500))}\` (${rows.length} rows${scope ? `, limited to ${scope.map((a) => `\`${a}\``).join(', ')}` : ''})`,
        });
        await auditAccessRecord(deps, actor, 'export', {
          query: truncate(text, 500),
          rows: rows.length,
          channel: dm,
          ...(scope ? { limitedTo: scope } : {}),
        });
        const more =
          nextCursor !== undefined
            ? ` More rows match: raise \`limit:\` (up to 1000) or narrow with \`since:\`/\`until:\`.`
            : '';
        await respond({
          response_type: 'ephemeral',
          text: `Sent ${rows.length} audit row(s) as CSV to your direct messages with Warden (not to this channel).${more}`,
        });
        return;
      }
      const page = deps.auditReader.query({ ...q, limit: Math.min(q.limit, AUDIT_PAGE_SIZE) });
      await auditAccessRecord(deps, actor, 'query', {
        query: truncate(text, 500),
        rows: page.rows.length,
        channel: command.channel_id,
        ...(scope ? { limitedTo: scope } : {}),
      });
      // limit: is the total across pages: offer Next only while some of it is left.
      const nextCursor = q.limit > AUDIT_PAGE_SIZE ? page.nextCursor : undefined;
      await respond(
        ephemeral(
          buildAuditResults({ query: text, rows: page.rows, nextCursor, page: 1, policy: deps.policy(), scope }),
        ),
      );
    } catch (err) {
      deps.logger.error({ err: describeError(err), user: command.user_id }, '/audit failed');
      await respond({
        response_type: 'ephemeral',
        text: `The audit query failed: ${truncate(describeError(err), 500)}`,
      }).catch(() => {});
    }
  });
}
