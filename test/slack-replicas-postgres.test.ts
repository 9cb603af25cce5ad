import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEAD, SLACK_CONTROL_POLICY } from './support/control-slack.ts';
import { freshPgDatabase } from './support/postgres.ts';
import { startServeChild, type ServeChild } from './support/serve-child.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';
import { BOT_TOKEN, SIGNING_SECRET } from './support/slack-harness.ts';
import { FORM, formBody, signRequest, SlackRequestSender, slashCommandFields } from './support/slack-sign.ts';

/*
 * Slack in HTTP mode with two replicas behind a load balancer on one
 * PostgreSQL: the replay guard is the database's, so one signed request is
 * handled by one replica only, whichever it reaches first.
 */

let dir: string;
let slack: SlackApiServer;
const children: ServeChild[] = [];
let senders: SlackRequestSender[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-slack-replicas-'));
  const policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, SLACK_CONTROL_POLICY);
  slack = await startSlackApiServer({ botToken: BOT_TOKEN });
  const url = await freshPgDatabase();
  const env = {
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: SIGNING_SECRET,
    SLACK_API_URL: slack.apiUrl,
    SLACK_PORT: '0',
  };
  children.push(...(await Promise.all([0, 1].map(() => startServeChild({ dbPath: url, policyPath, env })))));
  senders = children.map((child) => {
    const port = child.running.slackPort;
    if (typeof port !== 'number') throw new Error('a replica did not start its Slack receiver');
    return new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET);
  });
}, 120_000);

afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  await slack?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Slack HTTP mode on two replicas sharing PostgreSQL', () => {
  it('the same signed request sent to both replicas is handled by one (200) and refused by the other (401)', async () => {
    const [a, b] = senders as [SlackRequestSender, SlackRequestSender];
    const first = await a.command({
      command: '/agents',
      text: 'status',
      user: LEAD,
      channel: 'C0TEST',
      responseUrl: slack.responseUrl(),
    });
    expect(first.status).toBe(200);
    expect((await b.replay(first.request)).status).toBe(401);

    // The other way round.
    const second = await b.command({
      command: '/agents',
      text: 'status',
      user: LEAD,
      channel: 'C0TEST',
      responseUrl: slack.responseUrl(),
    });
    expect(second.status).toBe(200);
    expect((await a.replay(second.request)).status).toBe(401);

    // Never sent before, reaching both replicas at the same instant: one handles it, the other refuses it.
    const fresh = signRequest(
      SIGNING_SECRET,
      formBody(
        slashCommandFields({
          command: '/agents',
          text: 'status',
          user: LEAD,
          channel: 'C0TEST',
          responseUrl: slack.responseUrl(),
        }),
      ),
      FORM,
    );
    const raced = await Promise.all([a.send(fresh), b.send(fresh)]);
    expect(raced.map((r) => r.status).sort()).toEqual([200, 401]);
  }, 60_000);
});
