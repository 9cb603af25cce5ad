import type { Readable, Writable } from 'node:stream';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  isInitializeRequest,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { isWellFormedToken } from './tokens.ts';
import { httpFetch } from './http-fetch.ts';

/**
 * `warden connect`: a stdio MCP endpoint for clients that only speak stdio,
 * relaying every message unchanged to the gateway over Streamable HTTP. It
 * holds no policy: the gateway decides everything. stdout carries JSON-RPC
 * only; logs go to the logger (stderr).
 */
export interface BridgeOptions {
  /** Gateway endpoint, e.g. http://127.0.0.1:8787/mcp */
  url: string;
  /** The agent token (from WARDEN_AGENT_TOKEN, never argv). */
  token: string;
  /** Sent as X-Warden-Agent; the gateway refuses a token of another agent. */
  agent?: string | undefined;
  logger: Logger;
  stdin?: Readable | undefined;
  stdout?: Writable | undefined;
}

export async function runBridge(options: BridgeOptions): Promise<void> {
  if (!isWellFormedToken(options.token)) {
    throw new WardenError(
      'INVALID_INPUT',
      'WARDEN_AGENT_TOKEN is not a Warden agent token (expected wdn_ followed by 43 characters); create one with `warden agents token create NAME`',
    );
  }
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new WardenError('INVALID_INPUT', `--url: not a URL: ${options.url}`);
  }
  const log = options.logger.child({ module: 'connect', agent: options.agent });
  const headers: Record<string, string> = { Authorization: `Bearer ${options.token}` };
  if (options.agent) headers['X-Warden-Agent'] = options.agent;
  // Kept-alive node:http connections, and no abort listeners piling up on the transport's signal (see httpFetch).
  const fetch = httpFetch();
  const http = new StreamableHTTPClientTransport(url, { requestInit: { headers }, fetch });
  const stdio = new StdioServerTransport(options.stdin ?? process.stdin, options.stdout ?? process.stdout);

  let initializeId: RequestId | undefined;
  let finished = false;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const shutdown = async (why: string) => {
    if (finished) return;
    finished = true;
    log.info({ why }, 'bridge closing');
    // Ends the gateway session too, so it does not linger until the idle reaper.
    await http.terminateSession().catch(() => {});
    await http.close().catch(() => {});
    fetch.close();
    await stdio.close().catch(() => {});
    finish();
  };

  const answerError = (message: JSONRPCMessage, text: string) => {
    if (!isJSONRPCRequest(message)) return;
    // The client is waiting for this id: tell it why instead of letting it hang.
    void stdio.send({ jsonrpc: '2.0', id: message.id, error: { code: -32000, message: text } }).catch(() => {});
  };

  stdio.onmessage = (message) => {
    if (isJSONRPCRequest(message) && isInitializeRequest(message)) initializeId = message.id;
    http.send(message).catch((err) => {
      const text = `Warden gateway at ${url.origin}: ${describeError(err)}`;
      log.warn({ err: describeError(err) }, 'could not forward to the gateway');
      answerError(message, text);
    });
  };
  http.onmessage = (message) => {
    if (initializeId !== undefined && isJSONRPCResultResponse(message) && message.id === initializeId) {
      initializeId = undefined;
      // Later HTTP requests must carry the negotiated version header.
      const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
      if (typeof version === 'string') http.setProtocolVersion(version);
    }
    void stdio.send(message).catch((err) => log.warn({ err: describeError(err) }, 'could not write to stdout'));
  };
  http.onerror = (err) => log.warn({ err: describeError(err) }, 'gateway connection error');
  stdio.onerror = (err) => log.warn({ err: describeError(err) }, 'stdin error');
  http.onclose = () => void shutdown('gateway connection closed');
  stdio.onclose = () => void shutdown('stdin closed');

  await http.start();
  await stdio.start();
  // StdioServerTransport does not report end of input; the client closing stdin ends the bridge.
  (options.stdin ?? process.stdin).once('end', () => void shutdown('stdin ended'));
  log.info({ url: url.origin + url.pathname }, 'bridge started');
  await done;
}
