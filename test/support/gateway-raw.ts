import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';

/**
 * An MCP session driven by hand over real HTTP, for what the SDK client will
 * not send (malformed params, prototype keys) or cannot do (drop the socket
 * of one request while the session lives on).
 */

export const PROTOCOL_VERSION = '2025-06-18';

export interface RawReply {
  status: number;
  /** JSON-RPC messages from the SSE stream or the JSON body (empty for 202). */
  messages: Array<Record<string, any>>;
  text: string;
}

export interface RawSession {
  sessionId: string;
  /** POSTs one JSON-RPC message (or raw text) and reads the whole answer. */
  post(message: unknown): Promise<RawReply>;
  /**
   * POSTs a request over node:http and resolves once the response headers
   * arrived: the caller can then `destroy()` the socket mid-answer.
   */
  start(message: unknown): Promise<{ req: ClientRequest; res: IncomingMessage; destroy(): void }>;
  /** DELETE: ends the session. */
  terminate(): Promise<number>;
}

function headers(token: string, sessionId?: string): Record<string, string> {
  return {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    Authorization: `Bearer ${token}`,
    ...(sessionId ? { 'Mcp-Session-Id': sessionId, 'Mcp-Protocol-Version': PROTOCOL_VERSION } : {}),
  };
}

export function parseReply(status: number, contentType: string | null, text: string): RawReply {
  const messages: Array<Record<string, any>> = [];
  if (contentType?.includes('text/event-stream')) {
    for (const line of text.split('\n')) if (line.startsWith('data: ')) messages.push(JSON.parse(line.slice(6)));
  } else if (text.trim()) {
    const body = JSON.parse(text);
    messages.push(...(Array.isArray(body) ? body : [body]));
  }
  return { status, messages, text };
}

export async function rawPost(url: string, token: string, body: unknown, sessionId?: string): Promise<RawReply> {
  const res = await fetch(url, {
    method: 'POST',
    headers: headers(token, sessionId),
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return parseReply(res.status, res.headers.get('content-type'), await res.text());
}

export async function openRawSession(url: string, token: string): Promise<RawSession> {
  const init = await fetch(url, {
    method: 'POST',
    headers: headers(token),
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
  const sessionId = init.headers.get('mcp-session-id');
  await init.text();
  if (init.status !== 200 || !sessionId) throw new Error(`initialize failed: HTTP ${init.status}`);
  const ack = await rawPost(url, token, { jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId);
  if (ack.status !== 202) throw new Error(`notifications/initialized: HTTP ${ack.status}`);
  const target = new URL(url);
  return {
    sessionId,
    post: (message) => rawPost(url, token, message, sessionId),
    start: (message) =>
      new Promise((resolve, reject) => {
        const req = httpRequest(
          {
            host: target.hostname,
            port: target.port,
            path: target.pathname,
            method: 'POST',
            headers: headers(token, sessionId),
          },
          (res) => {
            res.on('error', () => {});
            resolve({ req, res, destroy: () => req.destroy() });
          },
        );
        req.on('error', (err) => {
          if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(err);
        });
        req.end(JSON.stringify(message));
      }),
    async terminate() {
      const res = await fetch(url, { method: 'DELETE', headers: headers(token, sessionId) });
      await res.text();
      return res.status;
    },
  };
}
