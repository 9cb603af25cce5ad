import { unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Command } from 'commander';
import { loadConfig } from '../../config/index.ts';
import { createLogger } from '../../logger.ts';
import { describeStore } from '../../store/db.ts';
import { startWarden } from '../runtime.ts';

/**
 * `warden serve` (what `npm start` runs): the gateway, the control plane and,
 * when configured, the Slack app, until SIGINT/SIGTERM. Saving the policy
 * file (or SIGHUP) reloads it; a reload that fails keeps the last good one.
 */
const POLICY_POLL_MS = 1_000;

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('Run the Warden gateway, control plane and Slack app')
    .option('--policy <file>', 'policy file (default WARDEN_POLICY or ./examples/policy.yml)')
    .option('--db <file>', 'SQLite database (default WARDEN_DB or ./data/warden.db)')
    .option('--port <port>', 'gateway port (default WARDEN_PORT or 8787)')
    .action(async (opts: { policy?: string; db?: string; port?: string }) => {
      const config = loadConfig({
        ...process.env,
        ...(opts.policy ? { WARDEN_POLICY: opts.policy } : {}),
        ...(opts.db ? { WARDEN_DB: opts.db } : {}),
        ...(opts.port ? { WARDEN_PORT: opts.port } : {}),
      });
      const logger = createLogger({ level: config.logLevel });
      const warden = await startWarden(config, { logger });
      const agents = Object.keys(warden.policy.current().agents);
      logger.info(
        {
          gateway: warden.gateway.url,
          db: describeStore(config.dbPath),
          policy: config.policyPath,
          agents,
          slack: warden.slack ? warden.slack.mode : 'off',
          ...(warden.slackPort !== undefined ? { slackPort: warden.slackPort } : {}),
        },
        'Warden is running; issue agent tokens with `npm run warden -- agents token create NAME`',
      );

      // PolicyStore logs the outcome either way; a failed reload keeps the last good policy.
      const onHup = () => void warden.policy.reload();
      process.on('SIGHUP', onHup);
      // Editing the file is enough: polling its mtime works on every filesystem and
      // needs no signal to find the right process behind npm or a launcher.
      const onChange = (curr: Stats, prev: Stats) => {
        if (curr.mtimeMs !== prev.mtimeMs || curr.size !== prev.size) warden.policy.reload();
      };
      watchFile(config.policyPath, { interval: POLICY_POLL_MS, persistent: false }, onChange);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal }, 'shutting down');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      unwatchFile(config.policyPath, onChange);
      process.off('SIGHUP', onHup);
      await warden.close();
    });
}
