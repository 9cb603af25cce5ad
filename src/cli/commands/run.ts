import type { Command } from 'commander';
import { AuditLog } from '../../audit/log.ts';
import { loadConfig } from '../../config/index.ts';
import { KillSwitch } from '../../control/kill-switch.ts';
import { createLogger } from '../../logger.ts';
import { loadPolicyFile } from '../../policy/index.ts';
import { runAgent } from '../../sandbox/index.ts';
import { openDb } from '../../store/db.ts';

/**
 * `warden run --agent NAME [--workspace DIR] -- CMD [ARGS…]`: the agent itself
 * as a governed process (src/sandbox/). The command's stdout and stderr are
 * its own; Warden logs to stderr only. Exit code: the command's.
 */
export function registerRun(program: Command): void {
  program
    .command('run')
    .description('Run an agent command in the sandbox its policy describes, with a run-scoped Warden token')
    .requiredOption('--agent <name>', 'the agent to run as (its policy decides the sandbox)')
    .option('--workspace <dir>', 'the only directory the agent may write, besides its private temp (default: cwd)')
    .argument('<command...>', 'the agent command and its arguments, after --')
    .action(async (command: string[], opts: { agent: string; workspace?: string }) => {
      const config = loadConfig(process.env);
      const policy = loadPolicyFile(config.policyPath, process.env);
      const logger = createLogger({ level: config.logLevel, name: 'warden-run' });
      const db = openDb(config.dbPath);
      const audit = new AuditLog(db, { logger });
      const killSwitch = new KillSwitch({ db, audit, logger });
      try {
        const outcome = await runAgent({
          agent: opts.agent,
          command,
          workspace: opts.workspace,
          policy,
          db,
          audit,
          killSwitch,
          gateway: { host: config.host, port: config.port },
          wardenFiles: [config.dbPath, `${config.dbPath}-wal`, `${config.dbPath}-shm`, config.policyPath],
          env: process.env,
          logger,
        });
        process.exitCode = outcome.exitCode;
      } finally {
        killSwitch.stop();
        await audit.close();
        db.close();
      }
    });
}
