import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { ApprovalService } from '../../approvals/index.ts';
import type { ApprovalRecord } from '../../approvals/types.ts';
import { AuditLog } from '../../audit/index.ts';
import { loadConfig } from '../../config/index.ts';
import { WardenError } from '../../errors.ts';
import { loadPolicyFile, parseDuration } from '../../policy/index.ts';
import { openDb } from '../../store/db.ts';

interface Opts {
  db?: string;
  policy?: string;
}

/**
 * `warden approvals list|approve|reject`: decide held calls from a terminal,
 * for a Warden without Slack or when Slack is down. The decision goes through
 * the same service, policy check and compare-and-set as a Slack click. The
 * decider is named with --as (a Slack user id the policy lists as owner or
 * approver); nothing proves that claim, so the terminal's authority is its
 * access to the database file, and the OS user is audited beside it
 * (approval.cli). The waiting gateway process sees the decision by polling
 * the shared database.
 */
export function registerApprovals(program: Command): void {
  const group = program.command('approvals').description('Held calls: list, approve or reject from the terminal');

  const withDb = (c: Command) =>
    c
      .option('--db <file>', 'SQLite database (default WARDEN_DB)')
      .option('--policy <file>', 'policy file (default WARDEN_POLICY)');

  withDb(group.command('list').description('Pending approvals, oldest first')).action(async (opts: Opts) => {
    await withService(opts, async (service) => {
      const rows = service.pending();
      process.stdout.write(rows.length === 0 ? 'no pending approvals\n' : formatPending(rows));
    });
  });

  for (const verb of ['approve', 'reject'] as const) {
    withDb(
      group
        .command(`${verb} <id>`)
        .description(
          verb === 'approve' ? 'Approve a held call (it then runs)' : 'Reject a held call (the agent gets the reason)',
        )
        .requiredOption('--as <user>', 'your Slack user id; it must be the agent’s owner or a listed approver')
        .option('--reason <text>', verb === 'reject' ? 'why (required)' : 'a note for the audit trail')
        .option(
          '--for <duration>',
          'approve only: also grant the agent this tool for a while (e.g. 30m), up to its grants.max',
        ),
    ).action(async (id: string, opts: Opts & { as: string; reason?: string; for?: string }) => {
      if (verb === 'reject' && !opts.reason?.trim())
        throw new WardenError('INVALID_INPUT', '--reason is required to reject: the agent and the audit trail get it');
      let forMs: number | undefined;
      if (opts.for !== undefined) {
        if (verb === 'reject') throw new WardenError('INVALID_INPUT', '--for: a grant comes only with approve');
        forMs = parseDuration(opts.for);
        if (forMs === undefined)
          throw new WardenError(
            'INVALID_INPUT',
            `--for: expected a duration like 15m or 1h, got ${JSON.stringify(opts.for)}`,
          );
      }
      await withService(opts, async (service, audit) => {
        const result = await service.decide(id, opts.as, verb, opts.reason?.trim(), { forMs });
        // Who sat at the terminal is for the audit trail, not for the agent's refusal text.
        await audit.append({
          event: 'approval.cli',
          callId: result.record?.callId,
          agent: result.record?.agent,
          approver: opts.as,
          decision: result.ok ? verb : 'refused',
          reason: result.ok ? `decided from the terminal as ${opts.as}` : result.message,
          detail: { approvalId: id, osUser: userInfo().username },
        });
        if (!result.ok) {
          throw new WardenError(
            result.code === 'not_found' ? 'NOT_FOUND' : result.code === 'forbidden' ? 'FORBIDDEN' : 'APPROVAL_CONFLICT',
            result.message,
          );
        }
        process.stdout.write(
          `${id}: ${result.record.status} by ${opts.as}${result.grant ? `; ${result.grant.id} lets ${result.grant.agent} call ${result.grant.server}__${result.grant.tool} without a card until ${new Date(result.grant.expiresAt).toISOString()}` : ''}\n`,
        );
      });
    });
  }
}

/** `warden grants list|revoke`: time-boxed grants in force, and ending them from a terminal. */
export function registerGrants(program: Command): void {
  const group = program.command('grants').description('Time-boxed grants: list or revoke');
  const withDb = (c: Command) =>
    c
      .option('--db <file>', 'SQLite database (default WARDEN_DB)')
      .option('--policy <file>', 'policy file (default WARDEN_POLICY)');
  withDb(group.command('list').description('Grants in force')).action(async (opts: Opts) => {
    await withService(opts, async (service) => {
      const grants = await service.grants.list();
      process.stdout.write(
        grants.length === 0
          ? 'no grants in force\n'
          : `${grants
              .map(
                (g) =>
                  `${g.id}  ${g.agent}  ${g.server}__${g.tool}  by ${g.grantedBy}  until ${new Date(g.expiresAt).toISOString()}`,
              )
              .join('\n')}\n`,
      );
    });
  });
  withDb(
    group
      .command('revoke <agent> [tool]')
      .description('End an agent’s grants (all, or one tool’s: bare or SERVER__TOOL)')
      .requiredOption('--as <user>', 'who revokes, for the audit trail'),
  ).action(async (agent: string, tool: string | undefined, opts: Opts & { as: string }) => {
    await withService(opts, async (service) => {
      const ended = await service.grants.revoke({ agent, tool }, opts.as);
      process.stdout.write(
        ended.length === 0
          ? `no grants in force for ${agent}${tool ? ` and ${tool}` : ''}\n`
          : `revoked ${ended.length} grant${ended.length === 1 ? '' : 's'}: ${ended.map((g) => `${g.server}__${g.tool}`).join(', ')}\n`,
      );
    });
  });
}

async function withService(
  opts: Opts,
  run: (service: ApprovalService, audit: AuditLog) => Promise<void>,
): Promise<void> {
  const config = loadConfig(process.env);
  const policy = loadPolicyFile(opts.policy ?? config.policyPath);
  const db = openDb(opts.db ?? config.dbPath);
  const audit = new AuditLog(db);
  const service = new ApprovalService({ db, audit, policy });
  try {
    await run(service, audit);
  } finally {
    await audit.close();
    db.close();
  }
}

function formatPending(rows: ApprovalRecord[]): string {
  const lines = rows.map(
    (r) =>
      `${r.id}  ${r.agent}  ${r.server}__${r.tool}  requested ${new Date(r.requestedAt).toISOString()}  expires ${new Date(r.expiresAt).toISOString()}\n    args ${JSON.stringify(r.args)}`,
  );
  return `${lines.join('\n')}\n`;
}
