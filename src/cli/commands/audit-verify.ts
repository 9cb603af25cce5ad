import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import {
  parseCheckpointRef,
  readWitness,
  verifyChain,
  type CheckpointRef,
  type ExternalCheckpoint,
  type VerifyReport,
} from '../../audit/index.ts';
import { isoTime, systemClock } from '../../clock.ts';
import { loadConfig, slackReaderConfig } from '../../config/index.ts';
import { CHECKPOINT_GRACE_MS, checkpointMaxGapMs } from '../../control/scheduler.ts';
import { WardenError, describeError } from '../../errors.ts';
import { silentLogger } from '../../logger.ts';
import { formatDuration, loadPolicyFile, type Policy } from '../../policy/index.ts';
import { fetchPostedCheckpoints } from '../../slack/checkpoint-history.ts';
import { createSlackClient } from '../../slack/client.ts';
import { ExitCode } from '../exit-codes.ts';
import { auditCommand, openExistingDb, readInlineOrFile } from './audit-shared.ts';

interface VerifyCliOptions {
  db?: string;
  checkpoint: CheckpointRef[];
  publicKey?: string;
  witness?: string;
  fromSlack?: string | true;
  policy?: string;
}

/**
 * `warden audit verify`: walks the whole chain against every checkpoint it can
 * find (stored, `--checkpoint`, the witness file, the compliance channel) and
 * prints "OK: N rows, head H" (exit 0) or "BROKEN at seq N (kind): …" (exit 1).
 * What an OK does not cover is said on stderr.
 */
export function registerAuditVerify(program: Command): void {
  auditCommand(program)
    .command('verify')
    .description('Verify the audit hash chain against its checkpoints')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .option(
      '--checkpoint <seq:hash>',
      'a head kept outside the database, e.g. from the compliance channel (repeatable)',
      (v: string, acc: CheckpointRef[]) => [...acc, parseCheckpointRef(v)],
      [] as CheckpointRef[],
    )
    .option(
      '--public-key <key>',
      'require a checkpoint signed by this Ed25519 public key, and every checkpoint to be (PEM, base64 SPKI, or @file)',
    )
    .option(
      '--witness <file>',
      'check against the checkpoint witness file (default: WARDEN_CHECKPOINT_WITNESS, if set)',
    )
    .option(
      '--from-slack [channel]',
      'check against the checkpoints Warden posted to the compliance channel (default: control.compliance_channel; needs SLACK_BOT_TOKEN)',
    )
    .option('--policy <file>', 'policy for the compliance channel and checkpoint schedule (default: WARDEN_POLICY)')
    .action(async (opts: VerifyCliOptions) => {
      const config = loadConfig(process.env, { slack: false });
      const trustedPublicKey =
        opts.publicKey === undefined ? undefined : readInlineOrFile(opts.publicKey, 'public key');
      const policyPath = opts.policy ?? config.policyPath;
      let policy: Policy | undefined;
      let policyError: unknown;
      const readPolicy = (): Policy | undefined => {
        if (policy === undefined && policyError === undefined) {
          try {
            policy = loadPolicyFile(policyPath, process.env);
          } catch (err) {
            policyError = err;
          }
        }
        return policy;
      };

      const external: ExternalCheckpoint[] = [];
      const witness = opts.witness ?? config.checkpointWitness;
      if (witness && opts.witness === undefined && !existsSync(witness)) {
        // Named by the environment, not asked for: a setup that has not taken its first checkpoint yet
        // must still verify. Said out loud, since a deleted witness looks the same.
        warn(
          `the witness ${witness} (WARDEN_CHECKPOINT_WITNESS) does not exist: no checkpoint was written there yet, or it was deleted`,
        );
      } else if (witness) {
        const lines = readWitness(witness);
        external.push(...lines);
        note(`checked ${lines.length} checkpoint(s) from the witness ${witness}`);
      }
      if (opts.fromSlack !== undefined) {
        const channel = typeof opts.fromSlack === 'string' ? opts.fromSlack : readPolicy()?.control.complianceChannel;
        if (!channel) {
          throw new WardenError(
            'INVALID_INPUT',
            `--from-slack: no channel given and ${policy ? `${policyPath} sets no control.compliance_channel` : `the policy ${policyPath} could not be read (${describeError(policyError)})`}; pass --from-slack CHANNEL_ID`,
          );
        }
        // A person is waiting, not an agent's call: sleeping on Slack's Retry-After is right here.
        const client = createSlackClient(slackReaderConfig(process.env), silentLogger(), {
          rejectRateLimitedCalls: false,
          retryConfig: { retries: 5 },
        });
        const posted = await fetchPostedCheckpoints(client, channel);
        external.push(...posted.checkpoints);
        note(
          `checked ${posted.checkpoints.length} checkpoint(s) Warden posted to ${channel} (${posted.scanned} message(s) read)`,
        );
        if (posted.unreadable.length > 0)
          warn(
            `${posted.unreadable.length} message(s) from Warden in ${channel} look like checkpoints but do not read as one (ts ${posted.unreadable.join(', ')})`,
          );
      }

      const db = openExistingDb(opts.db ?? config.dbPath, { readonly: true });
      let report: VerifyReport;
      try {
        report = verifyChain(db, { checkpoints: opts.checkpoint, external, trustedPublicKey });
      } finally {
        db.close();
      }
      if (!report.ok) {
        const problem = report.firstProblem!;
        process.stdout.write(`BROKEN at seq ${problem.seq} (${problem.kind}): ${problem.message}\n`);
        process.exitCode = ExitCode.CHECK_FAILED;
        return;
      }
      process.stdout.write(`OK: ${report.count} rows, head ${report.head.hash}\n`);
      // Say what the OK does not cover, so nobody reads more into it.
      if (report.checkpointsChecked === 0) {
        note(
          'no checkpoint was checked, so a cut tail cannot be detected; pass --from-slack, --witness FILE or --checkpoint SEQ:HASH',
        );
        return;
      }
      if (trustedPublicKey === undefined && report.signedCount > 0)
        note(
          'signed checkpoints were checked against the keys they carry; pass --public-key to require your signing key',
        );
      const newest = report.newestSigned;
      if (newest && report.head.seq > newest.seq)
        note(
          `rows ${newest.seq + 1}..${report.head.seq} come after the newest signed checkpoint (${newest.label}): until the next one, nothing shows whether they were cut or rewritten`,
        );
      if (newest) {
        const current = readPolicy();
        warnIfStale(newest, current, policyPath, policyError);
      }
    });
}

/** The newest checkpoint should be no older than the schedule's longest gap: otherwise checkpoints stopped, or newer ones were removed. */
function warnIfStale(
  newest: NonNullable<VerifyReport['newestSigned']>,
  policy: Policy | undefined,
  policyPath: string,
  policyError: unknown,
): void {
  if (!policy) {
    note(`the checkpoint schedule was not checked: ${policyPath} could not be read (${describeError(policyError)})`);
    return;
  }
  const schedule = policy.control.checkpointSchedule;
  if (!schedule) return;
  const age = systemClock.now() - newest.ts;
  const allowed = checkpointMaxGapMs(schedule) + CHECKPOINT_GRACE_MS;
  if (age > allowed) {
    warn(
      `the newest signed checkpoint (${newest.label}, seq ${newest.seq}) is ${roughly(age)} old, but control.checkpoint_schedule '${schedule}' takes one at least every ${formatDuration(allowed - CHECKPOINT_GRACE_MS)}: checkpoints stopped (is \`warden serve\` running with WARDEN_CHECKPOINT_KEY?), or newer ones were removed. Checked at ${isoTime(systemClock.now())}.`,
    );
  }
}

function note(text: string): void {
  process.stderr.write(`note: ${text}\n`);
}

function warn(text: string): void {
  process.stderr.write(`warning: ${text}\n`);
}

/** An age for people: whole days, hours or minutes, rounded down. */
function roughly(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes >= 2 * 24 * 60) return `${Math.floor(minutes / (24 * 60))} days`;
  if (minutes >= 120) return `${Math.floor(minutes / 60)} hours`;
  return `${minutes} minutes`;
}
