import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ONCALL_USER,
  LEAD,
  SLACK_CONTROL_POLICY,
  startControlSlack,
  type ControlSlack,
} from './support/control-slack.ts';
import { BOT_TOKEN, SIGNING_SECRET } from './support/slack-harness.ts';
import { SlackRequestSender } from './support/slack-sign.ts';
import { startServeChild, type ServeChild } from './support/serve-child.ts';

/*
 * A captured signed `/agents resume all` must not undo a halt when it is
 * replayed into another Warden process on the same database, nor after that
 * process restarts: the seen signatures live in the database.
 */

let c: ControlSlack;
let policyPath: string;
const children: ServeChild[] = [];

async function secondWarden(): Promise<{ child: ServeChild; sender: SlackRequestSender }> {
  const child = await startServeChild({
    dbPath: c.h.dbPath,
    policyPath,
    env: {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: SIGNING_SECRET,
      SLACK_API_URL: c.h.slack.apiUrl,
      SLACK_PORT: '0',
    },
  });
  children.push(child);
  const port = child.running.slackPort;
  if (typeof port !== 'number') throw new Error('the second Warden did not start its Slack receiver');
  return { child, sender: new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET) };
}

beforeAll(async () => {
  c = await startControlSlack();
  policyPath = join(c.h.dir, 'policy.yml');
  writeFileSync(policyPath, SLACK_CONTROL_POLICY);
});

afterAll(async () => {
  for (const child of children) await child.kill('SIGKILL');
  await c?.close();
});

describe('replayed signed Slack requests across processes and restarts', () => {
  it('a captured /agents resume all replayed into a second Warden, and into it again after a restart, is refused and the halt holds', async () => {
    const halted = await c.command(ONCALL_USER, '/agents', 'halt all incident 42');
    expect(halted.status).toBe(200);
    await halted.next();
    expect(c.ks.check('worker')).toMatchObject({ scope: 'org' });

    // The genuine resume, accepted once: this is what an attacker captures.
    const url = c.h.slack.responseUrl();
    const resume = await c.h.sender.command({
      command: '/agents',
      text: 'resume all',
      user: LEAD,
      channel: 'C0TEST',
      responseUrl: url,
    });
    expect(resume.status).toBe(200);
    await c.h.slack.waitForCall('response_url', (x) => x.args.responseUrlId === url.slice(url.lastIndexOf('/') + 1));
    expect(c.ks.check('worker')).toBeNull();

    // The emergency again.
    await (await c.command(ONCALL_USER, '/agents', 'halt all incident 43')).next();
    expect(c.ks.check('worker')).toMatchObject({ scope: 'org', reason: 'incident 43' });

    const first = await secondWarden();
    expect((await first.sender.replay(resume.request)).status).toBe(401);
    // And into the process that accepted it.
    expect((await c.h.sender.replay(resume.request)).status).toBe(401);
    expect(c.ks.check('worker')).toMatchObject({ scope: 'org', reason: 'incident 43' });

    // The second Warden restarts: its memory is the database, not the process.
    await first.child.kill('SIGTERM');
    const second = await secondWarden();
    expect((await second.sender.replay(resume.request)).status).toBe(401);
    expect(c.ks.check('worker')).toMatchObject({ scope: 'org', reason: 'incident 43' });
    expect(c.ks.check('support-triage')).toMatchObject({ scope: 'org' });

    // A fresh signed request still gets through to the restarted process.
    const status = await second.sender.command({
      command: '/agents',
      text: 'status',
      user: LEAD,
      channel: 'C0TEST',
      responseUrl: c.h.slack.responseUrl(),
    });
    expect(status.status).toBe(200);
  });
});
