import type { Command } from 'commander';
import { formatRows, parseQuery, runQuery, type OutputFormat } from '../../audit/index.ts';
import { systemClock } from '../../clock.ts';
import { WardenError } from '../../errors.ts';
import { auditCommand, openExistingDb, resolveDbPath } from './audit-shared.ts';

/** `warden audit query 'agent:x since:7d'`: the same language as Slack's /audit. */
export function registerAuditQuery(program: Command): void {
  auditCommand(program)
    .command('query')
    .description('Search the audit trail, e.g. warden audit query agent:support-triage decision:denied since:7d')
    .argument('[terms...]', 'query terms (key:value …); quote them or not')
    .option('--format <format>', 'table | json | csv (overrides format: in the query)')
    .option('--before <seq>', 'cursor: only rows older than this seq (from the previous page)')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .action((terms: string[], opts: { format?: string; before?: string; db?: string }) => {
      const q = parseQuery(terms.join(' '), systemClock.now());
      const format = (opts.format ?? q.format ?? 'table').toLowerCase();
      if (format !== 'table' && format !== 'json' && format !== 'csv') {
        throw new WardenError('INVALID_INPUT', `--format must be table, json or csv; got "${opts.format}"`);
      }
      let before: number | undefined;
      if (opts.before !== undefined) {
        if (!/^\d+$/.test(opts.before) || Number(opts.before) < 1)
          throw new WardenError('INVALID_INPUT', `--before must be a row number (seq), got "${opts.before}"`);
        before = Number(opts.before);
      }
      const db = openExistingDb(resolveDbPath(opts.db), { readonly: true });
      try {
        const page = runQuery(db, q, { before });
        process.stdout.write(formatRows(page.rows, format as OutputFormat));
        if (format === 'json') process.stdout.write('\n');
        // Stderr, so piping csv/json stays clean.
        if (page.nextCursor !== undefined) process.stderr.write(`more rows: add --before ${page.nextCursor}\n`);
      } finally {
        db.close();
      }
    });
}
