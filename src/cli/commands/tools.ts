import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { commandGroup, formatColumns } from './shared.ts';
import { AuditLog } from '../../audit/log.ts';
import { loadConfig } from '../../config/index.ts';
import { approveToolPin, PinStore } from '../../gateway/pins.ts';
import { openDb } from '../../store/db.ts';

/**
 * `warden tools list` and `warden tools approve SERVER TOOL`: the pins the
 * gateway keeps of upstream tool definitions. A tool whose definition changed
 * is blocked until someone looks at the change and approves it here.
 */
export function registerTools(program: Command): void {
  const tools = commandGroup(program, 'tools', 'Pinned upstream tool definitions');

  tools
    .command('list')
    .description('List pinned tools and whether each is approved or blocked')
    .argument('[server]', 'only this server')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .action((server: string | undefined, opts: { db?: string }) => {
      const db = openDb(opts.db ?? loadConfig(process.env).dbPath);
      try {
        const rows = new PinStore(db).list(server);
        if (rows.length === 0) {
          process.stdout.write(
            'no pinned tools yet (the gateway pins each tool the first time it lists an upstream)\n',
          );
          return;
        }
        const head = ['SERVER', 'TOOL', 'STATUS', 'PINNED HASH', 'PENDING HASH', 'UPDATED', 'APPROVED BY'];
        const body = rows.map((r) => [
          r.server,
          r.tool,
          r.status === 'blocked' ? 'BLOCKED (definition changed)' : 'approved',
          r.hash.slice(0, 12),
          r.pendingHash ? r.pendingHash.slice(0, 12) : '-',
          new Date(r.updatedAt).toISOString(),
          r.approvedBy ?? (r.status === 'approved' ? 'first seen' : '-'),
        ]);
        process.stdout.write(formatColumns(head, body));
        const blocked = rows.filter((r) => r.status === 'blocked');
        if (blocked.length)
          process.stdout.write(
            `\n${blocked.length} blocked; review the change, then: warden tools approve <server> <tool>\n`,
          );
      } finally {
        db.close();
      }
    });

  tools
    .command('approve')
    .description("Accept a blocked tool's new definition so agents may call it again")
    .argument('<server>', 'upstream server name')
    .argument('<tool>', 'tool name on that server (not namespaced)')
    .option('--db <path>', 'database file (default: WARDEN_DB)')
    .action(async (server: string, tool: string, opts: { db?: string }) => {
      const db = openDb(opts.db ?? loadConfig(process.env).dbPath);
      const audit = new AuditLog(db);
      try {
        const actor = `cli:${userInfo().username}`;
        const approved = approveToolPin(db, server, tool, actor);
        await audit.append({
          event: 'pin.approved',
          server,
          tool,
          decision: 'approved',
          approver: actor,
          detail: { previousHash: approved.previousHash, hash: approved.hash },
        });
        process.stdout.write(
          `approved ${server}/${tool}: new definition ${approved.hash.slice(0, 12)} replaces ${approved.previousHash.slice(0, 12)}\n`,
        );
      } finally {
        await audit.close();
        db.close();
      }
    });
}
