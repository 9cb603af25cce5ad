/**
 * Warden's Slack side, for real, on loopback: a SQLite file in a temp dir,
 * the real AuditLog and ApprovalService, SlackNotifier and the Bolt app with
 * its HTTP receiver on 127.0.0.1:0, its Web API client pointed at the local
 * Slack API server (slack-api-server.ts). Requests go in signed
 * (slack-sign.ts), exactly as Slack sends them.
 *
 *   const h = await startSlackHarness({ clock: new ManualClock() });
 *   const outcome = h.approvals.request(heldCall(h));              // card posted to CAPPROVALS
 *   const card = await h.slack.waitForCall('chat.postMessage');
 *   await h.sender.blockAction({ user: OWNER, actionId: 'approval_approve', value: approvalIdOf(card), channel: CHANNEL, messageTs: card.response!.ts });
 *   await outcome;                                                    // { status: 'approved', … }
 *   h.auditRows('approval.decided');
 *   await h.close();                                                  // in afterAll / afterEach
 *
 * Extra listeners' tests (e.g. /agents) can pass `deps` fields through
 * `appOptions` and use h.sender.command(...).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApprovalService, type ApprovalServiceOptions } from '../../src/approvals/index.ts';
import type { ApprovalRequestInput } from '../../src/approvals/types.ts';
import { AuditLog, AuditReader } from '../../src/audit/index.ts';
import type { AuditRow } from '../../src/audit/types.ts';
import type { Clock } from '../../src/clock.ts';
import { createLogger, silentLogger } from '../../src/logger.ts';
import { parsePolicy } from '../../src/policy/index.ts';
import type { Policy } from '../../src/policy/types.ts';
import { createSlackApp, type CreateSlackAppOptions, type SlackApp } from '../../src/slack/app.ts';
import { createSlackClient } from '../../src/slack/client.ts';
import { SlackNotifier } from '../../src/slack/notifier.ts';
import type { SlackRetryOptions } from '../../src/slack/retry.ts';
import { openDb, type Db } from '../../src/store/db.ts';
import { storeLocation } from './store-under-test.ts';
import {
  startSlackApiServer,
  type RecordedCall,
  type SlackApiServer,
  type SlackApiServerOptions,
} from './slack-api-server.ts';
import { SlackRequestSender } from './slack-sign.ts';
import { KillSwitch } from '../../src/control/kill-switch.ts';
import { RunStore } from '../../src/control/runs.ts';

export const BOT_TOKEN = 'xoxb-warden-test';
export const SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
export const OWNER = 'U0OWNER1';
export const APPROVER = 'U0APPROVER2';
export const STRANGER = 'U0STRANGER9';
export const CHANNEL = 'C0APPROVALS';
export const ONCALL = 'C0ONCALL1';

export const TEST_POLICY = `
servers:
  tickets:
    command: node
    args: [--import, tsx, test/fixtures/helpdesk-server.ts, tickets]
    tools:
      read_ticket:         { scope: read }
      send_customer_email: { scope: write, consequence: customer-facing }
  crm:
    command: node
    args: [--import, tsx, test/fixtures/helpdesk-server.ts, crm]
    tools:
      refund_request: { scope: write, consequence: irreversible }
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read], crm: [read] }
    approval_required: [send_customer_email, crm__refund_request]
    owner: ${OWNER}
    channel: ${CHANNEL}
    approvers: [${APPROVER}]
    approval_timeout: 15m
  - agent: no-channel-bot
    mcp_scopes: { tickets: [read] }
    approval_required: [send_customer_email]
    owner: ${OWNER}
control:
  oncall_channel: ${ONCALL}
`;

export interface SlackHarnessOptions {
  clock?: Clock;
  policyYaml?: string;
  /** Start Bolt's HTTP receiver (default true). */
  startApp?: boolean;
  retry?: SlackRetryOptions;
  approvals?: Partial<ApprovalServiceOptions>;
  appOptions?: Partial<CreateSlackAppOptions>;
  /** Reuse a database file (restart tests). */
  dbPath?: string;
  /** Options for the local Slack Web API (e.g. its per-channel rate limit). */
  slackApi?: Partial<SlackApiServerOptions>;
}

export interface SlackHarness {
  dir: string;
  dbPath: string;
  db: Db;
  policy: Policy;
  audit: AuditLog;
  slack: SlackApiServer;
  notifier: SlackNotifier;
  approvals: ApprovalService;
  app: SlackApp;
  /** Receiver port (0 when the app was not started). */
  port: number;
  sender: SlackRequestSender;
  auditRows(event?: string): AuditRow[];
  close(): Promise<void>;
}

export async function startSlackHarness(opts: SlackHarnessOptions = {}): Promise<SlackHarness> {
  const dir = mkdtempSync(join(tmpdir(), 'warden-slack-'));
  const dbPath = opts.dbPath ?? (await storeLocation(dir));
  const db = openDb(dbPath);
  const logger = process.env.SLACK_TEST_LOG ? createLogger({ level: process.env.SLACK_TEST_LOG }) : silentLogger();
  const policy = parsePolicy(opts.policyYaml ?? TEST_POLICY, 'test-policy.yml', {});
  const audit = new AuditLog(db, { logger, ...(opts.clock ? { clock: opts.clock } : {}) });
  const clock = opts.clock;
  const slack = await startSlackApiServer({
    botToken: BOT_TOKEN,
    ...(clock ? { now: () => clock.now() } : {}),
    ...opts.slackApi,
  });
  const client = createSlackClient({ botToken: BOT_TOKEN, apiUrl: slack.apiUrl }, logger, { timeout: 5000 });
  const notifier = new SlackNotifier({ client, clock: opts.clock, logger, retry: opts.retry });
  const approvals = new ApprovalService({
    db,
    audit,
    notifier,
    clock: opts.clock,
    logger,
    policy: () => policy,
    ...opts.approvals,
  });
  // Polls the real clock: it only answers status questions here, and must see halts other handles write.
  const killSwitch = new KillSwitch({ db, audit, logger, pollMs: 20 });
  killSwitch.start();
  const app = createSlackApp({
    config: { botToken: BOT_TOKEN, signingSecret: SIGNING_SECRET, port: 0, apiUrl: slack.apiUrl },
    approvals,
    policy: () => policy,
    audit,
    logger,
    db,
    auditReader: new AuditReader(db),
    control: { killSwitch, runs: new RunStore(db) },
    host: '127.0.0.1',
    clientOptions: { timeout: 5000 },
    ...opts.appOptions,
  });
  let port = 0;
  if (opts.startApp !== false) port = (await app.start()).port ?? 0;
  const sender = new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET);
  return {
    dir,
    dbPath,
    db,
    policy,
    audit,
    slack,
    notifier,
    approvals,
    app,
    port,
    sender,
    auditRows: (event) =>
      (event === undefined
        ? db.prepare('SELECT * FROM audit ORDER BY seq').all()
        : db.prepare('SELECT * FROM audit WHERE event = ? ORDER BY seq').all(event)) as AuditRow[],
    async close() {
      await approvals.close();
      await app.stop();
      killSwitch.stop();
      await audit.close();
      await slack.close();
      db.close();
      if (!opts.dbPath) rmSync(dir, { recursive: true, force: true });
    },
  };
}

let callSeq = 0;

/** A call held for approval, as the gateway would hand it over. */
export function heldCall(
  h: Pick<SlackHarness, 'policy'>,
  overrides: Partial<ApprovalRequestInput> & { agentName?: string } = {},
): ApprovalRequestInput {
  const { agentName, ...rest } = overrides;
  return {
    callId: `call-${++callSeq}`,
    agent: h.policy.agents[agentName ?? 'support-triage']!,
    server: 'tickets',
    tool: 'send_customer_email',
    args: {
      ticket_id: 'T-1001',
      to: 'ada@example.com',
      subject: 'Your refund',
      body: 'Hello Ada, your refund is on its way.',
    },
    rule: 'approval_required',
    consequence: 'customer-facing',
    reason: 'send_customer_email is in approval_required for support-triage',
    signal: new AbortController().signal,
    ...rest,
  };
}

/** The approval id carried by a posted card's Approve button. */
export function approvalIdOf(call: RecordedCall): string {
  const actions = (
    call.args.blocks as Array<{ type: string; elements?: Array<{ action_id: string; value: string }> }>
  ).find((b) => b.type === 'actions');
  const approve = actions?.elements?.find((e) => e.action_id === 'approval_approve');
  if (!approve) throw new Error('card has no approve button');
  return approve.value;
}
