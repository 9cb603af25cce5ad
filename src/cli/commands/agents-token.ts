import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { formatColumns } from './shared.ts';
import { AuditLog } from '../../audit/log.ts';
import { loadConfig } from '../../config/index.ts';
import { createAgentToken, listAgentTokens, revokeAgentTokens, rotateAgentToken } from '../../gateway/tokens.ts';
import { loadPolicyFile } from '../../policy/index.ts';
import type { Policy } from '../../policy/types.ts';
import { openDb, type Db } from '../../store/db.ts';
import { agentsCommand } from './agents-control.ts';

/**
 * `warden agents token create|rotate|revoke|list`. The secret is printed
 * once, on stdout alone (so `$(warden agents token create x)` captures just
 * it); only its sha256 is stored. Every change is audited, never the token.
 */

interface Opts {
  db?: string;
  policy?: string;
}

interface Ctx {
  db: Db;
  audit: AuditLog;
  policy: () => Policy;
  actor: string;
  close(): Promise<void>;
}

function open(opts: Opts): Ctx {
  const config = loadConfig(process.env);
  const db = openDb(opts.db ?? config.dbPath);
  const audit = new AuditLog(db);
  let policy: Policy | undefined;
  return {
    db,
    audit,
    // Loaded only by verbs that need it: revoking must work even for an agent removed from the policy.
    policy: () => (policy ??= loadPolicyFile(opts.policy ?? config.policyPath)),
    actor: `cli:${userInfo().username}`,
    async close() {
      await audit.close();
      db.close();
    },
  };
}

async function record(
  ctx: Ctx,
  agent: string,
  action: 'created' | 'rotated' | 'revoked',
  detail: Record<string, unknown> = {},
): Promise<void> {
  await ctx.audit.append({
    event: `token.${action}` as const,
    agent,
    decision: action,
    detail: { actor: ctx.actor, ...detail },
  });
}

const printSecret = (token: string, agent: string, note: string) => {
  process.stdout.write(`${token}\n`);
  process.stderr.write(
    `${note} for agent ${agent}. It is shown only now: store it where the agent reads WARDEN_AGENT_TOKEN.\n`,
  );
};

export function registerAgentsToken(program: Command): void {
  const token = agentsCommand(program)
    .command('token')
    .description('Agent tokens: how agents authenticate to the gateway');
  const common = (c: Command) =>
    c
      .option('--db <path>', 'database file (default: WARDEN_DB)')
      .option('--policy <path>', 'policy file (default: WARDEN_POLICY)');

  common(token.command('create').argument('<agent>', 'agent name, as in the policy'))
    .description('Create a token for an agent and print it once')
    .action(async (agent: string, opts: Opts) => {
      const ctx = open(opts);
      try {
        const secret = createAgentToken(ctx.db, agent, { policy: ctx.policy() });
        await record(ctx, agent, 'created');
        printSecret(secret, agent, 'Created a token');
      } finally {
        await ctx.close();
      }
    });

  common(token.command('rotate').argument('<agent>', 'agent name, as in the policy'))
    .description("Revoke the agent's tokens and print a new one")
    .action(async (agent: string, opts: Opts) => {
      const ctx = open(opts);
      try {
        const { token: secret, revoked } = rotateAgentToken(ctx.db, agent, { policy: ctx.policy() });
        await record(ctx, agent, 'rotated', { revoked });
        printSecret(secret, agent, `Revoked ${revoked} token(s) and created a new one`);
      } finally {
        await ctx.close();
      }
    });

  common(token.command('revoke').argument('<agent>', 'agent name'))
    .description('Revoke every token of an agent (its next request is refused)')
    .action(async (agent: string, opts: Opts) => {
      const ctx = open(opts);
      try {
        const revoked = revokeAgentTokens(ctx.db, agent);
        await record(ctx, agent, 'revoked', { revoked });
        process.stdout.write(`revoked ${revoked} token(s) of ${agent}\n`);
      } finally {
        await ctx.close();
      }
    });

  common(token.command('list').argument('[agent]', 'only this agent'))
    .description('List tokens (ids and dates, never secrets)')
    .action(async (agent: string | undefined, opts: Opts) => {
      const ctx = open(opts);
      try {
        const rows = listAgentTokens(ctx.db, agent);
        const head = ['ID', 'AGENT', 'CREATED', 'STATUS'];
        const body = rows.map((r) => [
          r.id,
          r.agent,
          new Date(r.createdAt).toISOString(),
          r.revokedAt === null ? 'active' : `revoked ${new Date(r.revokedAt).toISOString()}`,
        ]);
        process.stdout.write(formatColumns(head, body));
      } finally {
        await ctx.close();
      }
    });
}
