import { existsSync, readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { commandGroup } from './shared.ts';
import { loadConfig } from '../../config/index.ts';
import { WardenError } from '../../errors.ts';
import { isPostgresUrl, openDb, type Db } from '../../store/db.ts';

/** The `warden audit` group; each audit-*.ts module adds its subcommand to it. */
export function auditCommand(program: Command): Command {
  return commandGroup(program, 'audit', 'Audit trail: query, verify, checkpoints');
}

/** --db wins over WARDEN_DB (config default ./data/warden.db). */
export function resolveDbPath(opt: string | undefined): string {
  return opt ?? loadConfig(process.env).dbPath;
}

/**
 * Opens an existing database. Readers open read-only so inspecting evidence
 * can never change it; a missing file is bad input, not an empty trail.
 */
export function openExistingDb(path: string, opts: { readonly: boolean }): Db {
  if (!isPostgresUrl(path) && !existsSync(path))
    throw new WardenError('NOT_FOUND', `no Warden database at ${path} (set WARDEN_DB or pass --db PATH)`);
  return openDb(path, { readonly: opts.readonly });
}

/** A key given inline, or `@path` to read it from a file. */
export function readInlineOrFile(value: string, what: string): string {
  if (!value.startsWith('@')) return value;
  const file = value.slice(1);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new WardenError(
      'INVALID_INPUT',
      `cannot read ${what} from ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
}
