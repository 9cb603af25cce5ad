import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, checkpointText, createCheckpoint, generateCheckpointKeyPair } from '../src/audit/index.ts';
import { silentLogger } from '../src/logger.ts';
import { fetchPostedCheckpoints } from '../src/slack/checkpoint-history.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';

let slack: SlackApiServer;
let dir: string;
let db: Db;

beforeAll(async () => {
  slack = await startSlackApiServer({ botToken: 'xoxb-test' });
});
afterAll(async () => {
  await slack.close();
});
beforeEach(() => {
  slack.reset();
  dir = mkdtempSync(join(tmpdir(), 'warden-cp-history-'));
  db = openDb(join(dir, 'warden.db'));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('fetchPostedCheckpoints (conversations.history)', () => {
  it("pages through the whole channel and keeps only Warden's own checkpoint messages", async () => {
    const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: slack.apiUrl }, silentLogger());
    const keys = generateCheckpointKeyPair();
    const log = new AuditLog(db);
    await log.append({ event: 'call.decided', agent: 'a', decision: 'allow' });
    const first = createCheckpoint(db, keys.privateKeyPem);
    await client.chat.postMessage({ channel: 'C0COMPLY', text: checkpointText(first) });
    // Enough chatter that the checkpoints sit on different pages (200 a page).
    for (let i = 0; i < 250; i++) slack.postAsUser('C0COMPLY', 'U0HUMAN', `message ${i}`);
    // A person's copy of a checkpoint is not Warden's word.
    slack.postAsUser('C0COMPLY', 'U0MALLORY', checkpointText({ ...first, seq: 0 }));
    await log.append({ event: 'call.decided', agent: 'a', decision: 'allow' });
    const second = createCheckpoint(db, keys.privateKeyPem);
    await client.chat.postMessage({ channel: 'C0COMPLY', text: checkpointText(second) });
    // Warden's own message that starts like a checkpoint but is cut short.
    const torn = await client.chat.postMessage({ channel: 'C0COMPLY', text: checkpointText(second).split('\n')[0]! });
    await client.chat.postMessage({ channel: 'C0OTHER', text: checkpointText(second) });
    await log.close();

    const posted = await fetchPostedCheckpoints(client, 'C0COMPLY');
    expect(posted.scanned).toBe(254);
    expect(posted.checkpoints.map((c) => c.checkpoint)).toEqual([second, first]);
    expect(posted.checkpoints[0]!.source).toMatch(/^the compliance channel C0COMPLY \(message \d+\.\d{6}\)$/);
    expect(posted.unreadable).toEqual([torn.ts]);
    expect(slack.callsOf('conversations.history').map((c) => c.args.cursor === undefined)).toEqual([true, false]);
  });

  it('a channel Slack does not know is a clear error naming the method and what to do', async () => {
    const strict = await startSlackApiServer({ botToken: 'xoxb-test', channels: ['C0COMPLY'] });
    try {
      const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: strict.apiUrl }, silentLogger());
      await expect(fetchPostedCheckpoints(client, 'C0NOPE')).rejects.toThrow(
        /Slack conversations.history failed: channel_not_found \(invite Warden to the compliance channel/,
      );
    } finally {
      await strict.close();
    }
  });
});
