import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { parseQuery, QUERY_EXAMPLE } from '../../audit/index.ts';
import { scopeAuditQuery } from '../../control/authorize.ts';
import { describeError, isWardenError } from '../../errors.ts';
import {
  AUDIT_NEXT_PAGE_ACTION_ID,
  AUDIT_PAGE_SIZE,
  buildAuditError,
  buildAuditRefusal,
  buildAuditResults,
  decodePageState,
} from '../blocks/audit.ts';
import { truncate } from '../blocks/text.ts';
import type { SlackDeps } from '../deps.ts';
import { auditAccessRecord, auditRefusal, slackAuditAccess } from './audit-access.ts';

/**
 * "Next page" under /audit results: the button carries the query and the
 * cursor; the page replaces the old one. The value is client-supplied, so the
 * clicker is authorised again and the query re-scoped exactly as /audit does:
 * a forged or forwarded value reads no more than its clicker could type.
 */
export function registerAuditNextPage(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(AUDIT_NEXT_PAGE_ACTION_ID, async ({ ack, action, body, respond }) => {
    await ack();
    const { actor, access } = slackAuditAccess(deps, body.user.id);
    const refuse = async (reason: string, detail: Record<string, unknown>) => {
      await auditRefusal(deps, actor, 'next_page', reason, detail);
      const m = buildAuditRefusal(reason);
      await respond({ response_type: 'ephemeral', replace_original: false, text: m.text, blocks: m.blocks });
    };
    try {
      if (!access.ok) return await refuse(access.reason, { value: truncate(action.value ?? '', 500) });
      const state = decodePageState(action.value ?? '');
      if (!state) {
        await respond({
          response_type: 'ephemeral',
          replace_original: false,
          text: 'This button no longer carries a valid page; run the /audit query again.',
        });
        return;
      }
      const scoped = scopeAuditQuery(parseQuery(state.q, deps.clock.now()), access);
      if (!scoped.ok) return await refuse(scoped.reason, { query: truncate(state.q, 500), before: state.before });
      // limit: is the total across pages; earlier pages were full (AUDIT_PAGE_SIZE each).
      const remaining = scoped.query.limit - (state.page - 1) * AUDIT_PAGE_SIZE;
      if (remaining <= 0) {
        await respond({
          response_type: 'ephemeral',
          replace_original: false,
          text: `That query's \`limit:${scoped.query.limit}\` is reached; raise it to see more.`,
        });
        return;
      }
      const found = deps.auditReader.query(
        { ...scoped.query, limit: Math.min(remaining, AUDIT_PAGE_SIZE) },
        { before: state.before },
      );
      const page = { rows: found.rows, nextCursor: remaining > AUDIT_PAGE_SIZE ? found.nextCursor : undefined };
      const scope = access.agents === 'all' ? undefined : access.agents;
      await auditAccessRecord(deps, actor, 'next_page', {
        query: truncate(state.q, 500),
        before: state.before,
        rows: page.rows.length,
        ...(scope ? { limitedTo: scope } : {}),
      });
      const m = buildAuditResults({
        query: state.q,
        rows: page.rows,
        nextCursor: page.nextCursor,
        page: state.page,
        policy: deps.policy(),
        scope,
      });
      await respond({ response_type: 'ephemeral', replace_original: true, text: m.text, blocks: m.blocks });
    } catch (err) {
      const m = isWardenError(err, 'QUERY_INVALID') ? buildAuditError(err.message, QUERY_EXAMPLE) : undefined;
      if (!m) deps.logger.error({ err: describeError(err) }, 'audit next page failed');
      await respond({
        response_type: 'ephemeral',
        replace_original: false,
        text: m?.text ?? `The audit query failed: ${describeError(err)}`,
        ...(m ? { blocks: m.blocks } : {}),
      });
    }
  });
}
