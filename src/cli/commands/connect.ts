import type { Command } from 'commander';
import { loadConfig } from '../../config/index.ts';
import { runBridge } from '../../gateway/bridge.ts';
import { createLogger } from '../../logger.ts';

/**
 * `warden connect --agent NAME [--url URL]` (or WARDEN_URL): for MCP clients that only speak
 * stdio. The token comes from WARDEN_AGENT_TOKEN, never argv, so it does not
 * show up in `ps`. stdout carries JSON-RPC only; logs go to stderr.
 */
export function registerConnect(program: Command): void {
  program
    .command('connect')
    .description('Bridge a stdio MCP client to the Warden gateway (token from WARDEN_AGENT_TOKEN)')
    .requiredOption('--agent <name>', 'the agent this token belongs to (the gateway checks it)')
    .option('--url <url>', 'gateway endpoint (default: WARDEN_URL, else http://WARDEN_HOST:WARDEN_PORT/mcp)')
    .action(async (opts: { agent: string; url?: string }) => {
      // Checked by runBridge, which answers the client's initialize with the reason before exiting.
      const token = process.env.WARDEN_AGENT_TOKEN ?? '';
      const config = loadConfig(process.env);
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      const url =
        opts.url ?? process.env.WARDEN_URL ?? `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${config.port}/mcp`;
      const logger = createLogger({ level: config.logLevel, name: 'warden-connect' });
      await runBridge({ url, token, agent: opts.agent, logger });
    });
}
