import type { App, BlockAction, ButtonAction } from '@slack/bolt';
import { parseQuery, runQuery, QUERY_EXAMPLE } from '../../audit/index.ts';
import { describeError, isWardenError } from '../../errors.ts';
import { AUDIT_NEXT_PAGE_ACTION_ID, AUDIT_PAGE_SIZE, buildAuditError, buildAuditResults, decodePageState } from '../blocks/audit.ts';
import type { SlackDeps } from '../deps.ts';

/** "Next page" under /audit results: the button carries the query and the cursor; the page replaces the old one. */
export function registerAuditNextPage(app: App, deps: SlackDeps): void {
  app.action<BlockAction<ButtonAction>>(AUDIT_NEXT_PAGE_ACTION_ID, async ({ ack, action, respond }) => {
    await ack();
    const state = decodePageState(action.value ?? '');
    if (!state || !deps.db) {
      await respond({ response_type: 'ephemeral', replace_original: false, text: 'This button no longer carries a valid page; run the /audit query again.' });
      return;
    }
    try {
      const q = parseQuery(state.q, deps.clock.now());
      const page = runQuery(deps.db, { ...q, limit: Math.min(q.limit, AUDIT_PAGE_SIZE) }, { before: state.before });
      const m = buildAuditResults({ query: state.q, rows: page.rows, nextCursor: page.nextCursor, page: state.page, policy: deps.policy() });
      await respond({ response_type: 'ephemeral', replace_original: true, text: m.text, blocks: m.blocks });
    } catch (err) {
      const m = isWardenError(err, 'QUERY_INVALID') ? buildAuditError(err.message, QUERY_EXAMPLE) : undefined;
      if (!m) deps.logger.error({ err: describeError(err) }, 'audit next page failed');
      await respond({ response_type: 'ephemeral', replace_original: false, text: m?.text ?? `The audit query failed: ${describeError(err)}`, ...(m ? { blocks: m.blocks } : {}) });
    }
  });
}
