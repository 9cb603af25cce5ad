import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ErrorCode as McpErrorCode, ListToolsRequestSchema, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GatewayPipeline } from './pipeline.ts';

export const GATEWAY_INFO = { name: 'warden', version: '0.1.0' };

/**
 * One MCP server per agent session, bound to the agent that authenticated it.
 * It only translates: tools/list and tools/call go to the pipeline, the
 * client's cancellation arrives as `extra.signal`, and progress goes back as
 * notifications on the same request's stream.
 */
export function createSessionServer(pipeline: GatewayPipeline, agent: string, logger: Logger): Server {
  const server = new Server(GATEWAY_INFO, {
    capabilities: { tools: { listChanged: true } },
    instructions: 'Tools are provided by Warden on behalf of your organisation. A refused call comes back as an error result that says why; calls that need a human wait for their decision.',
  });

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await pipeline.listTools(agent) }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const token = request.params._meta?.progressToken;
    const onProgress =
      token === undefined
        ? undefined
        : (p: { progress: number; total?: number | undefined; message?: string | undefined }) => {
            extra
              .sendNotification({ method: 'notifications/progress', params: { progressToken: token, ...p } })
              .catch((err) => logger.debug({ err: describeError(err) }, 'progress notification not delivered'));
          };
    try {
      return await pipeline.callTool({ agent, name: request.params.name, args: request.params.arguments, signal: extra.signal, onProgress });
    } catch (err) {
      if (err instanceof McpError) throw err;
      // Never leak internals to the agent; the log has the details.
      logger.error({ err: describeError(err), agent, tool: request.params.name }, 'unexpected failure in tools/call');
      throw new McpError(McpErrorCode.InternalError, 'Warden failed internally while handling this call; it was not completed');
    }
  });

  return server;
}
