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

/** How long a bridge that cannot start waits for the client's first request, to answer it with the reason. */
const REFUSAL_WAIT_MS = 2_000;

export async function runBridge(options: BridgeOptions): Promise<void> {
  const problem = startProblem(options);
  if (problem) {
    // A client that spawned us sees only "Connection closed" if we just exit; answer its
    // initialize with the reason first, so the person configuring it reads why.
    await refuseOnStdio(options, problem);
    throw new WardenError('INVALID_INPUT', problem);
  }
  const url = new URL(options.url);
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
  http.onerror = (err) => {
    // Closing the transport aborts its SSE stream; that is our own doing, not a fault worth a warning.
    if (finished || (err instanceof Error && err.name === 'AbortError') || /AbortError/.test(describeError(err))) {
      log.debug({ err: describeError(err) }, 'gateway stream closed');
      return;
    }
    log.warn({ err: describeError(err) }, 'gateway connection error');
  };
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

function startProblem(options: BridgeOptions): string | undefined {
  if (!options.token)
    return 'WARDEN_AGENT_TOKEN is not set; create a token with `warden agents token create NAME` and export it';
  if (!isWellFormedToken(options.token))
    return 'WARDEN_AGENT_TOKEN is not a Warden agent token (expected wdn_ followed by 43 characters); create one with `warden agents token create NAME`';
  try {
    new URL(options.url);
  } catch {
    return `--url: not a URL: ${options.url}`;
  }
  return undefined;
}

/**
 * Answers the client's first request (normally `initialize`) with a JSON-RPC error carrying
 * `reason`, then returns. Returns as well when stdin ends or nothing arrives in time.
 */
async function refuseOnStdio(options: BridgeOptions, reason: string): Promise<void> {
  const stdin = options.stdin ?? process.stdin;
  const stdio = new StdioServerTransport(stdin, options.stdout ?? process.stdout);
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const timer = setTimeout(finish, REFUSAL_WAIT_MS);
  stdin.once('end', finish);
  stdio.onmessage = (message) => {
    if (!isJSONRPCRequest(message)) return;
    stdio
      .send({ jsonrpc: '2.0', id: message.id, error: { code: -32000, message: `Warden: ${reason}` } })
      .catch(() => {})
      .finally(finish);
  };
  await stdio.start();
  await done;
  clearTimeout(timer);
  stdin.off('end', finish);
  await stdio.close().catch(() => {});
}
