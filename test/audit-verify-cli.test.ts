import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, createCheckpoint, generateCheckpointKeyPair, type Checkpoint } from '../src/audit/index.ts';
import { ControlScheduler } from '../src/control/scheduler.ts';
import { MemoryAlertSink } from '../src/control/alerts.ts';
import { silentLogger } from '../src/logger.ts';
import { parsePolicy } from '../src/policy/index.ts';
import { SlackChannelPoster } from '../src/slack/alert-sink.ts';
import { createSlackClient } from '../src/slack/client.ts';
import { openDb } from '../src/store/db.ts';
import { attackerConnection, removeGuard } from './support/attacker.ts';
import { storeLocation } from './support/store-under-test.ts';
import { ManualClock } from './support/manual-clock.ts';
import { ROOT, UNSTARTED_SERVERS_YAML } from './support/policies.ts';
import { startSlackApiServer, type SlackApiServer } from './support/slack-api-server.ts';

/**
 * `warden audit verify` against checkpoints kept outside the database: the
 * signing key's own (--public-key), the witness file and the compliance
 * channel. Each attack here passes a plain `audit verify`.
 */

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Nothing from the developer's shell: each test says what it sets. */
const UNSET = [
  'WARDEN_CHECKPOINT_KEY',
  'WARDEN_CHECKPOINT_WITNESS',
  'WARDEN_POLICY',
  'SLACK_BOT_TOKEN',
  'SLACK_SIGNING_SECRET',
  'SLACK_APP_TOKEN',
  'SLACK_API_URL',
];

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/cli/index.ts'), ...args],
      {
        cwd: ROOT,
        env: {
          ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !UNSET.includes(k))),
          LOG_LEVEL: 'silent',
          ...env,
        },
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

const POLICY = (control: string) => `
${UNSTARTED_SERVERS_YAML}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
control:
${control}
`;

let dir: string;
let dbPath: string;
let policyPath: string;
const keys = generateCheckpointKeyPair();

async function seed(rows: number, clock?: ManualClock): Promise<void> {
  const db = openDb(dbPath);
  const log = new AuditLog(db, clock ? { clock } : {});
  for (let i = 0; i < rows; i++)
    await log.append({ event: 'call.decided', agent: 'support-triage', decision: 'allow' });
  await log.close();
  db.close();
}

function checkpoint(clock?: ManualClock): Checkpoint {
  const db = openDb(dbPath);
  try {
    return createCheckpoint(db, keys.privateKeyPem, clock);
  } finally {
    db.close();
  }
}

/** The attacker: triggers dropped, tail cut, stored checkpoints deleted (and optionally rows re-appended). */
async function cutTail(keep: number, reappend = 0): Promise<void> {
  const raw = attackerConnection(dbPath);
  removeGuard(raw, 'audit_checkpoints', 'audit_checkpoints_no_delete');
  raw.exec(`DELETE FROM audit WHERE seq > ${keep}; DELETE FROM audit_checkpoints;`);
  raw.close();
  if (reappend > 0) await seed(reappend);
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-verify-cli-'));
  dbPath = await storeLocation(dir);
  policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, POLICY('  checkpoint_schedule: "0 */6 * * *"'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('audit verify --public-key', () => {
  it('fails (exit 1, uncovered) when no checkpoint signed by the key is left, though every row links', async () => {
    await seed(6);
    checkpoint();
    const args = ['audit', 'verify', '--db', dbPath, '--policy', policyPath, '--public-key', keys.publicKeyBase64];
    const ok = await cli(args);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK: 6 rows/);
    expect(ok.stderr).not.toMatch(/warning/);

    await cutTail(4);
    const plain = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath]);
    expect(plain.code).toBe(0);
    const keyed = await cli(args);
    expect(keyed.code).toBe(1);
    expect(keyed.stdout).toMatch(/^BROKEN at seq 1 \(uncovered\): no checkpoint signed by the trusted public key/);
  });

  it('warns when the newest checkpoint is older than control.checkpoint_schedule allows, and names the rows after it', async () => {
    const clock = new ManualClock(Date.now() - 2 * 86_400_000 - 3_600_000);
    await seed(3, clock);
    checkpoint(clock);
    await seed(2);
    const run = await cli([
      'audit',
      'verify',
      '--db',
      dbPath,
      '--policy',
      policyPath,
      '--public-key',
      keys.publicKeyPem,
    ]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(
      /warning: the newest signed checkpoint \(signed checkpoint of .*, seq 3\) is 2 days old, but control\.checkpoint_schedule '0 \*\/6 \* \* \*' takes one at least every 6h/,
    );
    expect(run.stderr).toMatch(/note: rows 4\.\.5 come after the newest signed checkpoint/);

    // Without a schedule in the policy there is nothing to be late for.
    writeFileSync(policyPath, POLICY('  oncall_channel: C0ONCALL'));
    const unscheduled = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath]);
    expect(unscheduled.stderr).not.toMatch(/warning/);
  });
});

describe('audit verify --witness / WARDEN_CHECKPOINT_WITNESS', () => {
  it('audit checkpoint appends to the witness; verify checks against it and catches a cut tail with the checkpoints deleted', async () => {
    const witness = join(dir, 'witness.jsonl');
    await seed(5);
    const env = { WARDEN_CHECKPOINT_KEY: keys.privateKeyBase64, WARDEN_CHECKPOINT_WITNESS: witness };
    const cp = await cli(['audit', 'checkpoint', '--db', dbPath], env);
    expect(cp.code).toBe(0);
    expect(cp.stderr).toContain(`appended to the witness ${witness}`);
    const line = JSON.parse(readFileSync(witness, 'utf8').trim()) as Checkpoint;
    expect(line).toEqual(JSON.parse(cp.stdout));

    await cutTail(3, 4);
    const blind = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath]);
    expect(blind.code).toBe(0);
    const viaEnv = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath], {
      WARDEN_CHECKPOINT_WITNESS: witness,
    });
    expect(viaEnv.code).toBe(1);
    expect(viaEnv.stdout).toMatch(
      new RegExp(`^BROKEN at seq 5 \\(truncated\\): .*checkpoint of .* from witness ${witness}:1`),
    );
    const viaFlag = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath, '--witness', witness]);
    expect(viaFlag.code).toBe(1);

    // Named only by the environment and not there yet: verify still runs, and says so.
    const absent = join(dir, 'absent.jsonl');
    const notYet = await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath], {
      WARDEN_CHECKPOINT_WITNESS: absent,
    });
    expect(notYet.code).toBe(0);
    expect(notYet.stderr).toContain(`warning: the witness ${absent} (WARDEN_CHECKPOINT_WITNESS) does not exist`);
    const asked = await cli(['audit', 'verify', '--db', dbPath, '--witness', absent]);
    expect(asked.code).toBe(2);
    expect(asked.stderr).toMatch(/cannot use the checkpoint witness .*absent\.jsonl: ENOENT/);

    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"seq": -1}\n');
    const unreadable = await cli(['audit', 'verify', '--db', dbPath, '--witness', bad]);
    expect(unreadable.code).toBe(2);
    expect(unreadable.stderr).toContain(`witness ${bad}:1: seq:`);
  });
});

describe('audit verify --from-slack', () => {
  let slack: SlackApiServer;
  beforeAll(async () => {
    slack = await startSlackApiServer({ botToken: 'xoxb-test' });
  });
  afterAll(async () => {
    await slack.close();
  });

  /** Warden's own path: the scheduler signs the head and posts it to the compliance channel. */
  async function postCheckpoint(): Promise<Checkpoint> {
    const db = openDb(dbPath);
    try {
      const client = createSlackClient({ botToken: 'xoxb-test', apiUrl: slack.apiUrl }, silentLogger());
      const scheduler = new ControlScheduler({
        db,
        policy: parsePolicy(POLICY('  compliance_channel: C0COMPLY'), 'p.yml'),
        alerts: new MemoryAlertSink(),
        checkpoints: { key: keys.privateKeyPem, poster: new SlackChannelPoster(client) },
      });
      const cp = await scheduler.postCheckpoint();
      expect(db.prepare('SELECT posted_to FROM audit_checkpoints WHERE seq = ?').get(cp!.seq)).toEqual({
        posted_to: 'slack:C0COMPLY',
      });
      return cp!;
    } finally {
      db.close();
    }
  }

  const slackEnv = () => ({ SLACK_BOT_TOKEN: 'xoxb-test', SLACK_API_URL: slack.apiUrl });

  it('catches a cut tail, and a forged append before the last posted checkpoint, from the channel alone', async () => {
    slack.reset();
    writeFileSync(policyPath, POLICY('  compliance_channel: C0COMPLY\n  checkpoint_schedule: "0 */6 * * *"'));
    await seed(4);
    await postCheckpoint();
    await seed(4);
    const last = await postCheckpoint();
    // Look-alike text from a person is not Warden's word and is not read.
    slack.postAsUser(
      'C0COMPLY',
      'U0MALLORY',
      `:lock: *Audit checkpoint* — head seq \`2\` at ${new Date().toISOString()}`,
    );
    const verify = ['audit', 'verify', '--db', dbPath, '--policy', policyPath, '--from-slack'];
    const ok = await cli([...verify, '--public-key', keys.publicKeyBase64], slackEnv());
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^OK: 8 rows/);
    expect(ok.stderr).toContain('checked 2 checkpoint(s) Warden posted to C0COMPLY (3 message(s) read)');
    expect(slack.callsOf('conversations.history')[0]!.args).toMatchObject({ channel: 'C0COMPLY' });

    // Forged append: rows 7.. replaced by other rows, the count made to match, stored checkpoints gone.
    await cutTail(6, 2);
    expect((await cli(['audit', 'verify', '--db', dbPath, '--policy', policyPath])).code).toBe(0);
    const forged = await cli(verify, slackEnv());
    expect(forged.code).toBe(1);
    expect(forged.stdout).toMatch(
      new RegExp(`^BROKEN at seq ${last.seq} \\(truncated\\): .*from the compliance channel C0COMPLY \\(message `),
    );

    // Cut tail, nothing re-appended.
    await cutTail(5);
    const cut = await cli([...verify, 'C0COMPLY'], slackEnv());
    expect(cut.code).toBe(1);
    expect(cut.stdout).toMatch(/^BROKEN at seq 6 \(truncated\): the chain ends at seq 5 /);
  });

  it('says what it needs: a bot token, and a channel when the policy names none', async () => {
    await seed(1);
    const noToken = await cli(['audit', 'verify', '--db', dbPath, '--from-slack', 'C0COMPLY']);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/SLACK_BOT_TOKEN is required to read the compliance channel/);
    const noChannel = await cli(
      ['audit', 'verify', '--db', dbPath, '--policy', policyPath, '--from-slack'],
      slackEnv(),
    );
    expect(noChannel.code).toBe(2);
    expect(noChannel.stderr).toMatch(/--from-slack: no channel given and .* sets no control\.compliance_channel/);
    const missing = await cli(['audit', 'verify', '--db', dbPath, '--from-slack', 'C0NOPE'], {
      SLACK_BOT_TOKEN: 'xoxb-wrong',
      SLACK_API_URL: slack.apiUrl,
    });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/Slack auth.test failed: invalid_auth/);
  });
});
