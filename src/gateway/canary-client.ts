import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CanaryCallResult, CanaryConnection, CanaryConnector } from '../control/drill.ts';

/**
 * The drill's agent: a real MCP client over Streamable HTTP, so a drill goes
 * through exactly the path production agents use (auth, policy, halt check,
 * upstream forwarding). It lives at the MCP edge, not in control/, because
 * services never import transports: drill.ts only sees `CanaryConnection`.
 */
export const mcpCanaryConnector: CanaryConnector = {
  async connect(url: string, token: string): Promise<CanaryConnection> {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    const client = new Client({ name: 'warden-drill-canary', version: '1.0.0' });
    await client.connect(transport);
    return {
      async listTools() {
        const res = await client.listTools();
        return res.tools.map((t) => t.name);
      },
      async callTool(name, args, opts): Promise<CanaryCallResult> {
        try {
          const res = await client.callTool({ name, arguments: args }, undefined, {
            signal: opts?.signal,
            timeout: opts?.timeoutMs ?? 120_000,
            // The slow call reports progress; keep it alive on progress rather than a fixed deadline.
            resetTimeoutOnProgress: true,
            onprogress: () => {},
          });
          const text = Array.isArray(res.content)
            ? res.content
                .map((c) => (c && typeof c === 'object' && 'text' in c && typeof c.text === 'string' ? c.text : ''))
                .join(' ')
            : '';
          return res.isError ? { kind: 'error', text } : { kind: 'ok', text };
        } catch (err) {
          return { kind: 'error', text: err instanceof Error ? err.message : String(err), protocol: true };
        }
      },
      async close() {
        await client.close().catch(() => {});
      },
    };
  },
};
