import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  AuditLog,
  generateCheckpointKeyPair,
  listCheckpoints,
  readWitness,
  verifyChain,
  verifyCheckpoint,
} from '../src/audit/index.ts';
import { MemoryAlertSink as MemoryAlertSinkForTest } from '../src/control/alerts.ts';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { ManualClock } from './support/manual-clock.ts';
import { ControlScheduler } from '../src/control/scheduler.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { SlackAlertSink, SlackChannelPoster } from '../src/slack/alert-sink.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { storeLocation } from './support/store-under-test.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';
import { UNSTARTED_SERVERS_YAML } from './support/policies.ts';

const POLICY = `
${UNSTARTED_SERVERS_YAML}
agents:
  - agent: overdue-bot
    owner: U0OWNER
    channel: C0OWNER
    review_by: 2026-05-01
    mcp_scopes: { tickets: [read] }
  - agent: soon-bot
    owner: U0OWNER
    channel: C0OWNER
    review_by: 2026-05-20
    mcp_scopes: { tickets: [read] }
  - agent: later-bot
    owner: U0OTHER
    channel: C0OTHER
    review_by: 2026-09-01
    mcp_scopes: { tickets: [read] }
control:
  oncall_channel: C0ONCALL
  compliance_channel: C0COMPLY
  checkpoint_schedule: "0 */6 * * *"
  review_reminder_schedule: "0 9 * * 1"
`;

let dir: string;
let db: Db;
let audit: AuditLog;
let slack: SlackApiServer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-sched-'));
  db = openDb(await storeLocation(dir));
  audit = new AuditLog(db);
  slack = await startSlackApiServer({ botToken: 'xoxb-test' });
});
afterEach(async () => {
  vi.useRealTimers();
  await audit.close();
  db.close();
  await slack.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('control cron jobs (node-cron, fake timers)', () => {
  it('posts a signed audit head to the compliance channel on schedule, so truncation is visible outside the DB', async () => {
    vi.useFakeTimers({
      shouldAdvanceTime: true,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });
    vi.setSystemTime(new Date('2026-05-14T05:59:59Z'));
    for (let i = 0; i < 5; i++) await audit.append({ event: 'call.decided', agent: 'soon-bot', decision: 'allow' });
    const keys = generateCheckpointKeyPair();
    const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: slack.apiUrl }, silentLogger());
    const policy = parsePolicy(POLICY, 'p.yml');
    const scheduler = new ControlScheduler({
      db,
      policy,
      alerts: new SlackAlertSink({ client, policy }),
      checkpoints: { key: keys.privateKeyPem, poster: new SlackChannelPoster(client) },
      timezone: 'Etc/UTC',
      overdueCheckSchedule: '0 0 1 1 *',
    });
    scheduler.start();
    try {
      expect(scheduler.jobs).toEqual(['drill-overdue', 'checkpoint', 'review-reminders']);
      expect(slack.callsOf('chat.postMessage')).toHaveLength(0);
      await vi.advanceTimersByTimeAsync(1500);
      const post = await slack.waitForCall('chat.postMessage', (c) => c.args.channel === 'C0COMPLY');
      const [cp] = listCheckpoints(db);
      expect(cp).toMatchObject({ seq: 5 });
      expect(verifyCheckpoint(cp!, keys.publicKeyBase64)).toBe(true);
      expect(String(post.args.text)).toContain(`head seq \`5\``);
      expect(String(post.args.text)).toContain(cp!.head_hash);
      expect(String(post.args.text)).toContain(cp!.signature);
      expect(String(post.args.text)).toContain(`warden audit verify --checkpoint 5:${cp!.head_hash}`);
      // Recorded once Slack has answered.
      await vi.waitFor(() =>
        expect(db.prepare('SELECT posted_to FROM audit_checkpoints').get()).toEqual({ posted_to: 'slack:C0COMPLY' }),
      );
      // The posted head is what an auditor later checks the chain against.
      expect(verifyChain(db, { checkpoints: [{ seq: cp!.seq, head_hash: cp!.head_hash }] }).ok).toBe(true);
    } finally {
      await scheduler.stop();
    }
  });

  it('reminds owners of reviews due within a week, flags overdue ones, leaves later ones alone', async () => {
    vi.useFakeTimers({
      shouldAdvanceTime: true,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
    });
    // Monday 2026-05-18, just before 09:00 UTC.
    vi.setSystemTime(new Date('2026-05-18T08:59:59Z'));
    const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: slack.apiUrl }, silentLogger());
    const policy = parsePolicy(POLICY, 'p.yml');
    const alerts = new SlackAlertSink({ client, policy });
    const scheduler = new ControlScheduler({
      db,
      policy,
      alerts,
      timezone: 'Etc/UTC',
      overdueCheckSchedule: '0 0 1 1 *',
    });
    scheduler.start();
    try {
      await vi.advanceTimersByTimeAsync(1500);
      await vi.waitFor(() => expect(slack.callsOf('chat.postMessage').length).toBeGreaterThanOrEqual(3));
      await alerts.idle();
      const posts = slack
        .callsOf('chat.postMessage')
        .map((c) => ({ channel: c.args.channel, text: String(c.args.text) }));
      const overdue = posts.filter((p) => p.text.includes('overdue-bot'));
      // Overdue is a warning: owner channel and on-call.
      expect(overdue.map((p) => p.channel).sort()).toEqual(['C0ONCALL', 'C0OWNER']);
      expect(overdue[0]!.text).toMatch(/OVERDUE \(was due 2026-05-01\)/);
      const soon = posts.filter((p) => p.text.includes('soon-bot'));
      expect(soon.map((p) => p.channel)).toEqual(['C0OWNER']);
      expect(soon[0]!.text).toMatch(/due 2026-05-20 \(in 2 days\)/);
      expect(posts.some((p) => p.text.includes('later-bot'))).toBe(false);
    } finally {
      await scheduler.stop();
    }
  });
});

describe('control plane and policy reloads', () => {
  it('restarts the cron jobs when the policy file is reloaded, so a changed schedule takes effect', async () => {
    const { writeFileSync } = await import('node:fs');
    const { PolicyStore } = await import('../src/policy/index.ts');
    const { createControlPlane } = await import('../src/control/plane.ts');
    const { MemoryAlertSink } = await import('../src/control/alerts.ts');
    const file = join(dir, 'policy.yml');
    writeFileSync(file, POLICY);
    const store = new PolicyStore(file, { logger: silentLogger(), env: {} });
    const plane = createControlPlane({
      db,
      audit,
      policy: store,
      alerts: new MemoryAlertSink(),
      anomalies: false,
      timezone: 'Etc/UTC',
    });
    plane.start();
    try {
      expect(plane.scheduler.jobs).toEqual(['drill-overdue', 'review-reminders']);
      writeFileSync(file, POLICY.replace('  review_reminder_schedule: "0 9 * * 1"\n', ''));
      expect(store.reload()).toEqual({ ok: true });
      await expect.poll(() => plane.scheduler.jobs).toEqual(['drill-overdue']);
    } finally {
      await plane.stop();
    }
    expect(plane.scheduler.jobs).toEqual([]);
  });
});

describe('checkpoints every N rows, and the witness file', () => {
  const ROWS_POLICY = `
${UNSTARTED_SERVERS_YAML}
agents:
  - agent: soon-bot
    mcp_scopes: { tickets: [read] }
control:
  checkpoint_every_rows: 5
`;

  it('takes a checkpoint once 5 rows follow the last one, and appends each to the witness without Slack', async () => {
    const clock = new ManualClock(Date.parse('2026-05-14T06:00:00Z'));
    const witness = join(dir, 'witness.jsonl');
    const keys = generateCheckpointKeyPair();
    const scheduler = new ControlScheduler({
      db,
      policy: parsePolicy(ROWS_POLICY, 'p.yml'),
      alerts: new MemoryAlertSinkForTest(),
      checkpoints: { key: keys.privateKeyPem, witness },
      clock,
      timezone: 'Etc/UTC',
      overdueCheckSchedule: '0 0 1 1 *',
    });
    scheduler.start();
    try {
      expect(scheduler.jobs).toEqual(['drill-overdue', 'checkpoint-rows']);
      for (let i = 0; i < 4; i++) await audit.append({ event: 'call.decided', agent: 'soon-bot', decision: 'allow' });
      await clock.tick(1000);
      expect(listCheckpoints(db)).toEqual([]);
      await audit.append({ event: 'call.decided', agent: 'soon-bot', decision: 'allow' });
      await clock.tick(1000);
      await vi.waitFor(() => expect(listCheckpoints(db).map((cp) => cp.seq)).toEqual([5]));
      for (let i = 0; i < 4; i++) await audit.append({ event: 'call.decided', agent: 'soon-bot', decision: 'allow' });
      await clock.tick(3000);
      expect(listCheckpoints(db).map((cp) => cp.seq)).toEqual([5]);
      for (let i = 0; i < 3; i++) await audit.append({ event: 'call.decided', agent: 'soon-bot', decision: 'allow' });
      await clock.tick(1000);
      await vi.waitFor(() => expect(listCheckpoints(db).map((cp) => cp.seq)).toEqual([5, 12]));
      // The witness holds exactly what the database holds, each verifiable with the key.
      const lines = readWitness(witness);
      expect(lines.map((l) => l.checkpoint)).toEqual(listCheckpoints(db));
      for (const line of lines) expect(verifyCheckpoint(line.checkpoint, keys.publicKeyBase64)).toBe(true);
    } finally {
      await scheduler.stop();
    }
    expect(clock.pending).toBe(0);
  });

  it('refuses checkpoint_every_rows that is not a positive whole number, naming the field', () => {
    expect(() =>
      parsePolicy(ROWS_POLICY.replace('checkpoint_every_rows: 5', 'checkpoint_every_rows: 0'), 'p.yml'),
    ).toThrow(/control\.checkpoint_every_rows/);
  });

  it('says once, not on every policy reload, that checkpoints have no key, or nowhere outside the database to go', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const scheduler = new ControlScheduler({
      db,
      policy: parsePolicy(ROWS_POLICY, 'p.yml'),
      alerts: new MemoryAlertSinkForTest(),
      logger: pino({ level: 'warn' }, stream),
      overdueCheckSchedule: '0 0 1 1 *',
    });
    scheduler.start();
    await scheduler.restart();
    await scheduler.restart();
    await scheduler.stop();
    expect(lines.filter((l) => l.includes('no checkpoint key is configured'))).toHaveLength(1);

    // With a key but nowhere outside the database to put checkpoints: said once too.
    lines.length = 0;
    const dbOnly = new ControlScheduler({
      db,
      policy: parsePolicy(ROWS_POLICY, 'p.yml'),
      alerts: new MemoryAlertSinkForTest(),
      checkpoints: { key: generateCheckpointKeyPair().privateKeyPem },
      logger: pino({ level: 'warn' }, stream),
      overdueCheckSchedule: '0 0 1 1 *',
    });
    dbOnly.start();
    await dbOnly.restart();
    await dbOnly.stop();
    expect(lines.filter((l) => l.includes('checkpoints are kept only in the database'))).toHaveLength(1);
  });
});

describe('a missing checkpoint key', () => {
  it('is warned about once per process, not again on every policy reload', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const policy = parsePolicy(POLICY, 'p.yml');
    const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: slack.apiUrl }, silentLogger());
    const scheduler = new ControlScheduler({ db, policy, alerts: new SlackAlertSink({ client, policy }), logger });
    scheduler.start();
    await scheduler.restart();
    await scheduler.restart();
    await scheduler.stop();
    const warnings = lines.filter((l) => l.includes('no checkpoint key is configured'));
    expect(warnings).toHaveLength(1);
  });
});
