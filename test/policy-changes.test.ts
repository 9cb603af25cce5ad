import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, parseQuery, runQuery } from '../src/audit/index.ts';
import { reportPolicyChanges } from '../src/control/policy-changes.ts';
import { silentLogger } from '../src/logger.ts';
import { PolicyStore } from '../src/policy/store.ts';
import { SlackAlertSink } from '../src/slack/alert-sink.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';

/**
 * A reload that changes what agents may do is written to the audit trail as
 * `policy.changed` with the `policy diff` summary and posted on-call, through
 * a real SQLite trail and the local Slack Web API.
 */

const BOT_TOKEN = 'xoxb-policy-changes';
const ONCALL = 'C0999OPS1';
const EXAMPLE = readFileSync('examples/policy.yml', 'utf8');

let dir: string;
let db: Db;
let audit: AuditLog;
let slack: SlackApiServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-policy-changes-'));
  db = openDb(await storeLocation(dir));
  audit = new AuditLog(db);
  slack = await startSlackApiServer({ botToken: BOT_TOKEN });
});

afterAll(async () => {
  await audit?.close();
  db?.close();
  await slack?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('policy.changed on reload', () => {
  it('audits and posts on-call what a reload changes, and stays quiet when nothing does', async () => {
    const file = join(dir, 'policy.yml');
    writeFileSync(file, EXAMPLE);
    const store = new PolicyStore(file, { logger: silentLogger(), env: {} });
    const client = createSlackClient({ botToken: BOT_TOKEN, apiUrl: slack.apiUrl }, silentLogger(), { timeout: 2000 });
    const alerts = new SlackAlertSink({ client, policy: store, retry: { maxAttempts: 1 } });
    const off = reportPolicyChanges({ policy: store, audit, alerts, logger: silentLogger() });
    try {
      // Unchanged file: nothing to report.
      expect(store.reload()).toEqual({ ok: true });
      await audit.flush();
      await alerts.idle();
      expect(runQuery(db, parseQuery('event:policy.changed', Date.now())).rows).toHaveLength(0);
      expect(slack.callsOf('chat.postMessage')).toHaveLength(0);

      // Waive the hold on small refunds for billing-bot too, and give it a new approver.
      writeFileSync(
        file,
        EXAMPLE.replace(
          '    approvers: [U0123ABCD]\n',
          '    approvers: [U0123ABCD, U0456EFGH]\n    rules:\n      - tool: refund_request\n        when: "args.amount <= 100"\n        then: allow\n',
        ),
      );
      expect(store.reload()).toEqual({ ok: true });
      await audit.flush();
      await alerts.idle();
      const rows = runQuery(db, parseQuery('event:policy.changed', Date.now())).rows;
      expect(rows).toHaveLength(1);
      const detail = JSON.parse(rows[0]!.detail!) as { file: string; changes: string[] };
      expect(detail.file).toBe(file);
      expect(detail.changes).toEqual([
        'billing-bot  crm__refund_request  approve → allow when args.amount <= 100; otherwise approve',
        'billing-bot  rule added: refund_request when args.amount <= 100 then allow',
        'billing-bot  approvers U0123ABCD → U0123ABCD, U0456EFGH',
      ]);
      const posts = slack.callsOf('chat.postMessage');
      expect(posts.map((p) => p.args.channel)).toEqual([ONCALL]);
      expect(String(posts[0]!.args.text)).toContain('policy_changed');
      expect(JSON.stringify(posts[0]!.args.blocks)).toContain(
        'billing-bot  crm__refund_request  approve → allow when args.amount &lt;= 100; otherwise approve',
      );

      // A reload that fails keeps the old policy and reports no change.
      writeFileSync(file, 'agent: [broken');
      expect(store.reload().ok).toBe(false);
      await audit.flush();
      expect(runQuery(db, parseQuery('event:policy.changed', Date.now())).rows).toHaveLength(1);
    } finally {
      off();
    }
  });
});
