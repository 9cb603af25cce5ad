import type { Command } from 'commander';
import { parseCheckpointRef, verifyChain, type CheckpointRef } from '../../audit/index.ts';
import { ExitCode } from '../exit-codes.ts';
import { auditCommand, openExistingDb, readInlineOrFile, resolveDbPath } from './audit-shared.ts';

/**
 * `warden audit verify`: walks the whole chain (and the signed checkpoints)
 * and prints "OK: N rows, head H" (exit 0) or "BROKEN at seq N (kind): …" (exit 1).
 */
export function registerAuditVerify(program: Command): void {
  auditCommand(program)
    .command('verify')
    .description('Verify the audit hash chain and its checkpoints')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .option(
      '--checkpoint <seq:hash>',
      'a head kept outside the database, e.g. from the compliance channel (repeatable)',
      (v: string, acc: CheckpointRef[]) => [...acc, parseCheckpointRef(v)],
      [] as CheckpointRef[],
    )
    .option(
      '--public-key <key>',
      'require stored checkpoints to be signed by this Ed25519 public key (PEM, base64 SPKI, or @file)',
    )
    .action((opts: { db?: string; checkpoint: CheckpointRef[]; publicKey?: string }) => {
      const db = openExistingDb(resolveDbPath(opts.db), { readonly: true });
      try {
        const report = verifyChain(db, {
          checkpoints: opts.checkpoint,
          trustedPublicKey: opts.publicKey === undefined ? undefined : readInlineOrFile(opts.publicKey, 'public key'),
        });
        if (report.ok) {
          process.stdout.write(`OK: ${report.count} rows, head ${report.head.hash}\n`);
          // Say what the OK does not cover, so nobody reads more into it.
          if (report.checkpointsChecked === 0) {
            process.stderr.write(
              'note: no checkpoint was checked, so a cut tail cannot be detected; pass --checkpoint SEQ:HASH from the compliance channel\n',
            );
          } else if (opts.publicKey === undefined) {
            process.stderr.write(
              'note: stored checkpoints were checked against the keys they carry; pass --public-key to require your signing key\n',
            );
          }
        } else {
          const p = report.firstProblem!;
          process.stdout.write(`BROKEN at seq ${p.seq} (${p.kind}): ${p.message}\n`);
          process.exitCode = ExitCode.CHECK_FAILED;
        }
      } finally {
        db.close();
      }
    });
}
