import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { systemClock, type Clock } from '../../clock.ts';
import { WardenError } from '../../errors.ts';
import { copyStore, type CopyProgress } from '../../store/copy.ts';
import { describeStore, isPostgresUrl, openDb, type Db } from '../../store/db.ts';
import { commandGroup } from './shared.ts';

interface MigrateCliOptions {
  from: string;
  to: string;
  batch: string;
}

/** A long copy says where it is about once a second, and always when a table is done. */
const PROGRESS_EVERY_MS = 1_000;

/**
 * `warden store migrate --from ./data/warden.db --to postgres://…`: moves a
 * one-host store to the shared database replicas use. Every row is copied as
 * it is, so the audit chain (and `warden audit verify`) carries over; the
 * target must be new and empty. Progress goes to stderr, the summary to stdout.
 */
export function registerStoreMigrate(program: Command): void {
  commandGroup(program, 'store', 'The database: move a store to PostgreSQL')
    .command('migrate')
    .description('Copy every table of a SQLite store into a new, empty store (e.g. PostgreSQL), audit chain intact')
    .requiredOption('--from <path>', 'the SQLite database file to copy (stop the Warden using it first)')
    .requiredOption('--to <url>', 'the empty target store: postgres://user:password@host/db (or a SQLite file)')
    .option('--batch <rows>', 'rows per INSERT', '500')
    .action((opts: MigrateCliOptions) => {
      const batchRows = Number(opts.batch);
      if (!Number.isInteger(batchRows) || batchRows < 1)
        throw new WardenError('INVALID_INPUT', `--batch must be a positive whole number of rows, not ${opts.batch}`);
      if (isPostgresUrl(opts.from))
        throw new WardenError('INVALID_INPUT', '--from must be a SQLite file; the source is read with SQLite');
      if (!existsSync(opts.from)) throw new WardenError('NOT_FOUND', `--from: no Warden database at ${opts.from}`);
      migrateStore(opts.from, opts.to, batchRows, process.stdout, process.stderr, systemClock);
    });
}

function migrateStore(
  from: string,
  to: string,
  batchRows: number,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
  clock: Clock,
): void {
  // Opening applies this Warden's migrations to both, so they describe the same tables.
  let source: Db | undefined;
  let target: Db | undefined;
  try {
    source = openDb(from);
    target = openDb(to);
    let lastPrint = -Infinity;
    const onProgress = ({ table, copied, total }: CopyProgress) => {
      const now = clock.now();
      if (copied < total && now - lastPrint < PROGRESS_EVERY_MS) return;
      lastPrint = now;
      stderr.write(`${table}: ${copied}/${total} rows\n`);
    };
    const report = copyStore(source, target, { batchRows, onProgress });
    const rows = report.tables.reduce((sum, t) => sum + t.rows, 0);
    stdout.write(
      `OK: copied ${rows} rows in ${report.tables.length} tables from ${from} to ${describeStore(to)}\n` +
        `check it: warden audit verify --db '${describeStore(to)}'\n`,
    );
  } finally {
    target?.close();
    source?.close();
  }
}
