import type { Command } from 'commander';
import { createCheckpoint } from '../../audit/index.ts';
import { systemClock } from '../../clock.ts';
import { loadConfig } from '../../config/index.ts';
import { WardenError } from '../../errors.ts';
import { auditCommand, openExistingDb, readInlineOrFile, resolveDbPath } from './audit-shared.ts';

/** `warden audit checkpoint`: sign the current head, store it, print it (JSON) for posting elsewhere. */
export function registerAuditCheckpoint(program: Command): void {
  auditCommand(program)
    .command('checkpoint')
    .description('Sign the current head of the audit chain and print the checkpoint')
    .option('--key <key>', 'Ed25519 private key, PEM or base64 PKCS#8, or @file (default: WARDEN_CHECKPOINT_KEY)')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .action((opts: { key?: string; db?: string }) => {
      const key =
        opts.key !== undefined ? readInlineOrFile(opts.key, 'private key') : loadConfig(process.env).checkpointKey;
      if (!key)
        throw new WardenError(
          'CONFIG_INVALID',
          'WARDEN_CHECKPOINT_KEY is not set and no --key was given (make one with `warden audit keygen`)',
        );
      const db = openExistingDb(resolveDbPath(opts.db), { readonly: false });
      try {
        const cp = createCheckpoint(db, key, systemClock);
        process.stdout.write(`${JSON.stringify(cp, null, 2)}\n`);
        process.stderr.write(
          `keep this outside the database; verify later with: warden audit verify --checkpoint ${cp.seq}:${cp.head_hash}\n`,
        );
      } finally {
        db.close();
      }
    });
}
