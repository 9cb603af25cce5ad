import { setTimeout as sleep } from 'node:timers/promises';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Command } from 'commander';
import { z } from 'zod';

/**
 * `warden canary-server`: a harmless stdio MCP upstream for the kill-switch
 * drill. Its one tool, `sleep`, is slow on request, reports progress and
 * stops when cancelled, so a drill can leave a call in flight and see the
 * halt cut it. Point the canary agent at it in the policy:
 *
 *   servers:
 *     canary:
 *       command: npx
 *       args: [warden, canary-server]
 *       tools: { sleep: { scope: read } }
 *   agents:
 *     - agent: warden-canary
 *       mcp_scopes: { canary: [read] }
 *
 * stdout carries JSON-RPC only.
 */
export function createCanaryServer(): McpServer {
  const server = new McpServer({ name: 'warden-canary', version: '1.0.0' });
  server.registerTool(
    'sleep',
    {
      description:
        'Wait ms milliseconds in steps (progress after each), then answer. Stops when cancelled. For kill-switch drills.',
      inputSchema: { ms: z.number().int().min(0).max(600_000), steps: z.number().int().min(1).max(600).default(1) },
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async ({ ms, steps }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        // The signal option removes its own abort listener when the step ends, so a long call does not pile them up.
        const finished = await sleep(ms / steps, true, { signal: extra.signal }).catch(() => false);
        if (!finished) return { content: [{ type: 'text', text: 'cancelled' }], isError: true };
        if (token !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: i, total: steps },
          });
        }
      }
      return { content: [{ type: 'text', text: `slept ${ms} ms` }] };
    },
  );
  return server;
}

export function registerCanaryServer(program: Command): void {
  program
    .command('canary-server')
    .description('Run the stdio MCP upstream the kill-switch drill canary calls (a cancellable `sleep` tool)')
    .action(async () => {
      const server = createCanaryServer();
      await server.connect(new StdioServerTransport());
      // Serve until the gateway closes our stdin.
      await new Promise<void>((resolve) => process.stdin.once('close', resolve));
    });
}
