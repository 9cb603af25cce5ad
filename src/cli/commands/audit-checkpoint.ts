import type { Command } from 'commander';
import { appendWitness, createCheckpoint } from '../../audit/index.ts';
import { systemClock } from '../../clock.ts';
import { loadConfig } from '../../config/index.ts';
import { WardenError } from '../../errors.ts';
import { auditCommand, openExistingDb, readInlineOrFile, resolveDbPath } from './audit-shared.ts';

/** `warden audit checkpoint`: sign the current head, store it (and in the witness file), print it (JSON) for posting elsewhere. */
export function registerAuditCheckpoint(program: Command): void {
  auditCommand(program)
    .command('checkpoint')
    .description('Sign the current head of the audit chain and print the checkpoint')
    .option('--key <key>', 'Ed25519 private key, PEM or base64 PKCS#8, or @file (default: WARDEN_CHECKPOINT_KEY)')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .action((opts: { key?: string; db?: string }) => {
      const config = loadConfig(process.env);
      const key = opts.key !== undefined ? readInlineOrFile(opts.key, 'private key') : config.checkpointKey;
      if (!key)
        throw new WardenError(
          'CONFIG_INVALID',
          'WARDEN_CHECKPOINT_KEY is not set and no --key was given (make one with `warden audit keygen`)',
        );
      const db = openExistingDb(resolveDbPath(opts.db), { readonly: false });
      try {
        const cp = createCheckpoint(db, key, systemClock);
        if (config.checkpointWitness) appendWitness(config.checkpointWitness, cp);
        process.stdout.write(`${JSON.stringify(cp, null, 2)}\n`);
        if (config.checkpointWitness)
          process.stderr.write(`appended to the witness ${config.checkpointWitness} (WARDEN_CHECKPOINT_WITNESS)\n`);
        process.stderr.write(
          `keep this outside the database; verify later with: warden audit verify --checkpoint ${cp.seq}:${cp.head_hash}\n`,
        );
      } finally {
        db.close();
      }
    });
}
