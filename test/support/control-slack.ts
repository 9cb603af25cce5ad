/**
 * The control plane behind a real Bolt app: kill switch, gateway (slow
 * fixture) and drill runner on one SQLite file, the Slack harness (signed
 * requests, local Slack Web API) on the same file, halt effects wired to the
 * Slack alert sink and the approval service as `serve` would wire them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApprovalService } from '../../src/approvals/index.ts';
import { AuditLog } from '../../src/audit/log.ts';
import { AuditReader } from '../../src/audit/reader.ts';
import { drillTokensFromDb } from '../../src/cli/commands/agents-control.ts';
import { DrillRunner, drillReportPoster } from '../../src/control/drill.ts';
import { wireHaltEffects } from '../../src/control/halt-effects.ts';
import { KillSwitch } from '../../src/control/kill-switch.ts';
import { RunStore } from '../../src/control/runs.ts';
import { mcpCanaryConnector } from '../../src/gateway/canary-client.ts';
import { startGateway, type GatewayHandle } from '../../src/gateway/index.ts';
import { silentLogger } from '../../src/logger.ts';
import { SlackAlertSink, SlackChannelPoster } from '../../src/slack/alert-sink.ts';
import { buildDrillReport } from '../../src/slack/blocks/drill.ts';
import { openDb, type Db } from '../../src/store/db.ts';
import { controlPolicyText } from './control-env.ts';
import { startSlackHarness, type SlackHarness } from './slack-harness.ts';
import { storeLocation } from './store-under-test.ts';
import type { RecordedCall } from './slack-api-server.ts';

export const ONCALL_USER = 'U0ONCALL';
export const LEAD = 'U0LEAD';
export const STRANGER = 'U0STRANGER9';

/** The control policy plus support-triage; `controlExtra` adds lines under `control:` (e.g. `auditors: [U0AUDITOR]`). */
export function slackControlPolicy(controlExtra = ''): string {
  return controlPolicyText(
    `
  - agent: support-triage
    owner: U0OWNER
    channel: C0OWNER
    mcp_scopes: { slow: [read] }
    approval_required: [sleep]
`,
    controlExtra,
  );
}

export const SLACK_CONTROL_POLICY = slackControlPolicy();

export interface SentCommand {
  status: number;
  replies: () => RecordedCall[];
  next(n?: number): Promise<RecordedCall>;
}

/** Sends a signed slash command through a harness and waits on its response_url posts. */
export async function sendSlashCommand(
  h: SlackHarness,
  user: string,
  command: string,
  text: string,
  channel = 'C0TEST',
): Promise<SentCommand> {
  const url = h.slack.responseUrl();
  const id = url.slice(url.lastIndexOf('/') + 1);
  const res = await h.sender.command({ command, text, user, channel, responseUrl: url });
  const replies = () => h.slack.callsOf('response_url').filter((c) => c.args.responseUrlId === id);
  return {
    status: res.status,
    replies,
    async next(n = 1) {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const r = replies();
        if (r.length >= n) return r[n - 1]!;
        await new Promise((res) => setTimeout(res, 10));
      }
      throw new Error(`no reply #${n} to ${command} ${text}`);
    },
  };
}

/** Clicks a button as `user` and waits for the post to that click's response_url. */
export async function clickButton(
  h: SlackHarness,
  user: string,
  actionId: string,
  value: string,
  blockId = 'x',
): Promise<RecordedCall> {
  const url = h.slack.responseUrl();
  const id = url.slice(url.lastIndexOf('/') + 1);
  await h.sender.blockAction({ user, actionId, value, blockId, responseUrl: url });
  return h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === id);
}

export interface ControlSlack {
  h: SlackHarness;
  db: Db;
  audit: AuditLog;
  ks: KillSwitch;
  gateway: GatewayHandle;
  drill: DrillRunner;
  alerts: SlackAlertSink;
  /** Sends a signed slash command and returns the first response_url post. */
  command(user: string, command: string, text: string, channel?: string): Promise<SentCommand>;
  close(): Promise<void>;
}

export async function startControlSlack(opts: { policyText?: string } = {}): Promise<ControlSlack> {
  const policyText = opts.policyText ?? SLACK_CONTROL_POLICY;
  const dir = mkdtempSync(join(tmpdir(), 'warden-ctl-slack-'));
  // A SQLite file in dir, or a PostgreSQL schema when the test file runs on PostgreSQL.
  const dbPath = await storeLocation(dir);
  const db = openDb(dbPath);
  const audit = new AuditLog(db);
  const ks = new KillSwitch({ db, audit });
  ks.start();
  const { parsePolicy } = await import('../../src/policy/index.ts');
  const policy = parsePolicy(policyText, 'policy.yml');
  const gwApprovals = new ApprovalService({ db, audit, policy, logger: silentLogger() });
  const gateway = await startGateway({
    policy,
    db,
    audit,
    approvals: gwApprovals,
    halt: ks,
    alerts: { alert() {} },
    logger: silentLogger(),
    host: '127.0.0.1',
    port: 0,
  });
  let poster: SlackChannelPoster | undefined;
  const drill = new DrillRunner({
    db,
    audit,
    auditReader: new AuditReader(db),
    killSwitch: ks,
    policy,
    gatewayUrl: gateway.url,
    tokens: drillTokensFromDb(db),
    connector: mcpCanaryConnector,
    alerts: { alert: (a) => alerts.alert(a) },
    report: (r) => drillReportPoster(poster!, policy, buildDrillReport)(r),
    // Tests check what the drill reports, not its latency (bench/halt.ts measures that).
    maxTimeToHaltMs: Infinity,
  });
  const h = await startSlackHarness({
    dbPath,
    policyYaml: policyText,
    appOptions: { control: { killSwitch: ks, runs: new RunStore(db), drill } },
  });
  poster = new SlackChannelPoster(h.app.client);
  const alerts = new SlackAlertSink({ client: h.app.client, policy });
  const offEffects = wireHaltEffects({ killSwitch: ks, approvals: h.approvals, alerts, actOnRemote: true });

  return {
    h,
    db,
    audit,
    ks,
    gateway,
    drill,
    alerts,
    command: (user, command, text, channel) => sendSlashCommand(h, user, command, text, channel),
    async close() {
      offEffects();
      await h.close();
      await gateway.close();
      await gwApprovals.close();
      ks.stop();
      await audit.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** All mrkdwn/plain text of a Block Kit message, for assertions. */
export function blocksText(blocks: unknown): string {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.text === 'string') out.push(o.text);
      for (const [k, x] of Object.entries(o)) if (k !== 'text' || typeof x !== 'string') walk(x);
    }
  };
  walk(blocks);
  return out.join('\n');
}
