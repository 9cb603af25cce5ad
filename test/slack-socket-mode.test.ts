/**
 * Socket Mode end to end on loopback: the Bolt app started by createSlackApp
 * with an app token opens its connection through the local Slack Web API
 * (apps.connections.open with the xapp token, answered with a ws:// URL on the
 * same server), gets Slack's hello, and handles envelopes pushed over the
 * WebSocket exactly as it handles signed HTTP requests: it acks each envelope
 * on the socket and answers through response_url / the Web API.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ApprovalService } from '../src/approvals/index.ts';
import { AuditLog, AuditReader } from '../src/audit/index.ts';
import type { AuditRow } from '../src/audit/types.ts';
import { KillSwitch } from '../src/control/kill-switch.ts';
import { RunStore } from '../src/control/runs.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { createSlackApp, type SlackApp } from '../src/slack/app.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { SlackNotifier } from '../src/slack/notifier.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';
import { BOT_TOKEN, CHANNEL, OWNER, STRANGER, TEST_POLICY, approvalIdOf, heldCall } from './support/slack-harness.ts';
import { blockActionPayload, slashCommandFields } from './support/slack-sign.ts';

const APP_TOKEN = 'xapp-1-A0WARDEN-socket-test';

let dir: string;
let db: Db;
let audit: AuditLog;
let slack: SlackApiServer;
let approvals: ApprovalService;
let ks: KillSwitch;
let app: SlackApp;
const policy = parsePolicy(TEST_POLICY, 'test-policy.yml', {});
const logger = silentLogger();

/** Audit rows of one event about one approval (detail.approvalId binds them). */
const auditRows = (event: string, approvalId: string) =>
  (db.prepare('SELECT * FROM audit WHERE event = ? ORDER BY seq').all(event) as AuditRow[]).filter(
    (r) => (JSON.parse(r.detail ?? '{}') as { approvalId?: string }).approvalId === approvalId,
  );

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-socket-'));
  db = openDb(join(dir, 'warden.db'));
  audit = new AuditLog(db, { logger });
  slack = await startSlackApiServer({ botToken: BOT_TOKEN, appToken: APP_TOKEN });
  const client = createSlackClient({ botToken: BOT_TOKEN, apiUrl: slack.apiUrl }, logger, { timeout: 5000 });
  const notifier = new SlackNotifier({ client, logger });
  approvals = new ApprovalService({ db, audit, notifier, logger, policy: () => policy });
  ks = new KillSwitch({ db, audit, logger });
  ks.start();
  app = createSlackApp({
    // No signing secret: Socket Mode needs none (nothing arrives over HTTP).
    config: { botToken: BOT_TOKEN, signingSecret: '', appToken: APP_TOKEN, port: 0, apiUrl: slack.apiUrl },
    approvals,
    policy: () => policy,
    audit,
    logger,
    db,
    auditReader: new AuditReader(db),
    control: { killSwitch: ks, runs: new RunStore(db) },
    clientOptions: { timeout: 5000 },
  });
  expect(app.mode).toBe('socket');
  // Resolves on Slack's hello, so the socket is ready when the tests push.
  await app.start();
});

afterAll(async () => {
  await app?.stop();
  await approvals?.close();
  ks?.stop();
  await audit?.close();
  await slack?.close();
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('Socket Mode connection', () => {
  it('opens through apps.connections.open on the configured API URL with the app token, never the bot token', async () => {
    const opens = slack.callsOf('apps.connections.open');
    expect(opens).toHaveLength(1);
    expect(opens[0]!.token).toBe(APP_TOKEN);
    expect(opens[0]!.response).toMatchObject({
      ok: true,
      url: expect.stringMatching(/^ws:\/\/127\.0\.0\.1:\d+\/link\?ticket=/),
    });
    expect(slack.socket.connections).toBe(1);
    // The bot's own calls (auth.test at start) keep using the bot token.
    expect(slack.callsOf('auth.test').map((c) => c.token)).toEqual([BOT_TOKEN]);
    expect(slack.calls.filter((c) => c.method !== 'apps.connections.open').every((c) => c.token !== APP_TOKEN)).toBe(
      true,
    );
  });
});

describe('slash command over the socket', () => {
  it('/agents status: the envelope is acked on the socket, the status answers ephemerally through response_url', async () => {
    await ks.halt({ scope: 'agent', agent: 'no-channel-bot', reason: 'parked for the socket test', actor: 'cli:test' });
    const responseUrl = slack.responseUrl();
    const responseUrlId = responseUrl.slice(responseUrl.lastIndexOf('/') + 1);
    const envelopeId = slack.socket.push({
      type: 'slash_commands',
      payload: slashCommandFields({ command: '/agents', text: 'status', user: OWNER, channel: CHANNEL, responseUrl }),
      accepts_response_payload: true,
    });

    const ack = await slack.socket.waitForAck(envelopeId);
    // Bolt's bare ack(): the envelope id and an empty payload.
    expect(ack.raw).toEqual({ envelope_id: envelopeId, payload: {} });

    const reply = await slack.waitForCall('response_url', (c) => c.args.responseUrlId === responseUrlId);
    expect(reply.args.response_type).toBe('ephemeral');
    expect(reply.args.text).toBe('2 agent(s), 1 halted, 0 review(s) overdue');
    const sections = (reply.args.blocks as Array<{ type: string; text?: { text: string } }>)
      .filter((b) => b.type === 'section')
      .map((b) => b.text!.text);
    expect(sections.find((t) => t.startsWith('*support-triage*'))).toMatch(new RegExp(`owner <@${OWNER}>`));
    expect(sections.find((t) => t.startsWith('*no-channel-bot*'))).toMatch(/halted/i);
    // Only one ack per envelope.
    expect(slack.socket.acks.filter((a) => a.envelope_id === envelopeId)).toHaveLength(1);
  });
});

describe('approval card clicks over the socket', () => {
  async function hold() {
    const before = slack.callsOf('chat.postMessage').length;
    const outcome = approvals.request(heldCall({ policy }));
    await slack.waitForCall('chat.postMessage', () => slack.callsOf('chat.postMessage').length > before);
    const card = slack.callsOf('chat.postMessage')[before]!;
    expect(card.args.channel).toBe(CHANNEL);
    const id = approvalIdOf(card);
    await vi.waitFor(() => expect(approvals.get(id)?.messageTs).toBeDefined());
    return { outcome, id, ts: card.response!.ts as string };
  }

  it('approve by the owner: acked, outcome approved, card redrawn, decision audited', async () => {
    const { outcome, id, ts } = await hold();
    const envelopeId = slack.socket.push({
      type: 'interactive',
      payload: blockActionPayload({
        user: OWNER,
        actionId: 'approval_approve',
        value: id,
        channel: CHANNEL,
        messageTs: ts,
      }),
    });
    expect((await slack.socket.waitForAck(envelopeId)).raw).toEqual({ envelope_id: envelopeId, payload: {} });
    expect(await outcome).toMatchObject({ status: 'approved', approver: OWNER });
    const update = await slack.waitForCall('chat.update', (u) => u.args.ts === ts);
    expect(update.args).toMatchObject({ channel: CHANNEL, ts });
    expect(JSON.stringify(update.args.blocks)).toContain(`*Approved* by <@${OWNER}>`);
    expect(JSON.stringify(update.args.blocks)).not.toContain('approval_approve');
    expect(slack.message(CHANNEL, ts)!.text).toBe(
      `Approved by <@${OWNER}>: support-triage → tickets__send_customer_email`,
    );
    await audit.flush();
    expect(auditRows('approval.decided', id)).toMatchObject([{ decision: 'approved', approver: OWNER }]);
  });

  it('approve by a stranger: acked, refused ephemerally, audited, nothing decided', async () => {
    const { id, ts } = await hold();
    const updatesBefore = slack.callsOf('chat.update').length;
    const envelopeId = slack.socket.push({
      type: 'interactive',
      payload: blockActionPayload({
        user: STRANGER,
        actionId: 'approval_approve',
        value: id,
        channel: CHANNEL,
        messageTs: ts,
      }),
    });
    await slack.socket.waitForAck(envelopeId);
    const eph = await slack.waitForCall('chat.postEphemeral', (c) => c.args.user === STRANGER);
    expect(eph.args).toMatchObject({ channel: CHANNEL, user: STRANGER });
    expect(eph.args.text).toContain('not the owner or an approver of support-triage');
    await audit.flush();
    expect(auditRows('approval.refused', id)).toMatchObject([
      { approver: STRANGER, decision: 'approve', agent: 'support-triage' },
    ]);
    expect(approvals.get(id)?.status).toBe('pending');
    expect(auditRows('approval.decided', id)).toHaveLength(0);
    expect(slack.callsOf('chat.update')).toHaveLength(updatesBefore);
  });
});

describe('an envelope Slack sends again (no ack seen in time, or another replica got it first)', () => {
  it('is acked again but handled once: one ephemeral answer, one audit row', async () => {
    const refusedBefore = (
      db.prepare("SELECT count(*) AS n FROM audit WHERE event = 'approval.refused'").get() as {
        n: number;
      }
    ).n;
    const { id, ts } = await hold2();
    const payload = blockActionPayload({
      user: STRANGER,
      actionId: 'approval_reject',
      value: id,
      channel: CHANNEL,
      messageTs: ts,
    });
    const envelopeId = slack.socket.push({ type: 'interactive', payload });
    await slack.socket.waitForAck(envelopeId);
    const ephemerals = () => slack.callsOf('chat.postEphemeral').filter((c) => c.args.user === STRANGER).length;
    await vi.waitFor(() => expect(ephemerals()).toBeGreaterThan(0));
    const after = ephemerals();
    // The same envelope again, as a redelivery: same envelope_id.
    slack.socket.push({ type: 'interactive', payload, envelope_id: envelopeId });
    await vi.waitFor(() => expect(slack.socket.acks.filter((a) => a.envelope_id === envelopeId)).toHaveLength(2));
    await audit.flush();
    expect(ephemerals()).toBe(after);
    expect(
      (db.prepare("SELECT count(*) AS n FROM audit WHERE event = 'approval.refused'").get() as { n: number }).n,
    ).toBe(refusedBefore + 1);
  });

  async function hold2() {
    const before = slack.callsOf('chat.postMessage').length;
    void approvals.request(heldCall({ policy })).catch(() => {});
    await slack.waitForCall('chat.postMessage', () => slack.callsOf('chat.postMessage').length > before);
    const card = slack.callsOf('chat.postMessage')[before]!;
    const id = approvalIdOf(card);
    await vi.waitFor(() => expect(approvals.get(id)?.messageTs).toBeDefined());
    return { id, ts: card.response!.ts as string };
  }
});

describe('stop()', () => {
  it('closes the socket and the client does not reconnect', async () => {
    const tickets = slack.socket.ticketsIssued;
    await app.stop();
    await vi.waitFor(() => expect(slack.socket.connections).toBe(0));
    // The client's reconnect delay is its 5 s ping timeout; wait past it.
    await new Promise((r) => setTimeout(r, 5_500));
    expect(slack.socket.ticketsIssued).toBe(tickets);
    expect(slack.socket.connections).toBe(0);
    expect(slack.callsOf('apps.connections.open')).toHaveLength(1);
  }, 15_000);
});
