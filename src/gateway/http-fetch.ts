import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';

export interface HttpFetch extends FetchLike {
  /** Closes the kept-alive connections; later requests open new ones. */
  close(): void;
}

export interface HttpFetchOptions {
  /**
   * Largest body read whole (JSON, error pages) and largest SSE stream that
   * answers a POST; beyond it the response is cut. The standalone GET stream
   * is not limited (it lives as long as the session). Default unlimited.
   */
  maxResponseBytes?: number | undefined;
  /** Called when a response is cut for exceeding the limit (before the error reaches the reader). */
  onExceeded?: (() => void) | undefined;
  /**
   * A request other than the standalone GET stream is cut after this long
   * without a byte from the server. Default 300 s, undici's own header and
   * body timeouts: without it a hung upstream would hold a socket for ever.
   */
  idleTimeoutMs?: number | undefined;
}

/** What fetch's Response can represent: 200–599. */
const MIN_STATUS = 200;
const MAX_STATUS = 599;
const NULL_BODY_STATUS = new Set([204, 205, 304]);
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/**
 * `fetch` over node:http with kept-alive connections, for the MCP SDK's
 * Streamable HTTP client transport in the stdio bridge (`warden connect`).
 * (Warden's HTTP upstreams use UpstreamHttpTransport, which skips fetch.)
 *
 * Why not the global fetch: undici costs about 0.2 ms more per request, and
 * handed the transport's one long-lived AbortSignal it keeps a listener per
 * request until garbage collection. Here each request links to the signal
 * only until its body has ended.
 *
 * The SDK only needs a small part of fetch: a method, headers and a string
 * body; a response with status, headers and a body it reads as JSON, text or
 * a stream (SSE). Other bodies are read whole (within the limit); an SSE
 * body is handed over as a stream, with back-pressure. Redirects are not
 * followed (the SDK follows same-origin ones itself). Whatever a server
 * sends, the worst outcome is a rejected promise or an errored stream.
 */
/** Stateless when not streaming; like fetch's text(), it drops a leading byte-order mark. */
const utf8 = new TextDecoder();

/**
 * A body already read whole, served from the buffer: the SDK reads these
 * with text() or json(), and a fetch Response built on the bytes would wrap
 * them in a web stream only to read them back out (tens of µs per answer).
 * `body` is null; every other reader works, clone() included.
 */
class BufferedResponse extends Response {
  override readonly text: () => Promise<string>;
  override readonly json: () => Promise<unknown>;
  override readonly arrayBuffer: () => Promise<ArrayBuffer>;
  override readonly blob: () => Promise<Blob>;
  override readonly clone: () => Response;

  constructor(bytes: Buffer, init: ResponseInit) {
    super(null, init);
    this.text = async () => utf8.decode(bytes);
    this.json = async () => JSON.parse(utf8.decode(bytes));
    this.arrayBuffer = async () => new Uint8Array(bytes).buffer;
    this.blob = async () => new Blob([bytes], { type: this.headers.get('content-type') ?? '' });
    this.clone = () =>
      new BufferedResponse(bytes, { status: this.status, statusText: this.statusText, headers: this.headers });
  }
}

export function httpFetch(options: HttpFetchOptions = {}): HttpFetch {
  const limit = options.maxResponseBytes ?? Number.POSITIVE_INFINITY;
  const onExceeded = options.onExceeded ?? (() => {});
  const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

  const fetchImpl = (input: string | URL, init?: RequestInit): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const url = typeof input === 'string' ? new URL(input) : input;
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        return reject(new TypeError(`cannot fetch ${url.protocol} URLs`));
      const method = (init?.method ?? 'GET').toUpperCase();
      const body = init?.body;
      if (body !== undefined && body !== null && typeof body !== 'string')
        return reject(new TypeError('only string request bodies are supported'));
      const headers: Record<string, string> = {};
      // The SDK passes a Headers already: read it as it is rather than copy it into another.
      const given = init?.headers;
      (given instanceof Headers ? given : new Headers(given)).forEach((value, name) => {
        headers[name] = value;
      });
      if (typeof body === 'string') headers['content-length'] = String(Buffer.byteLength(body));
      const signal = init?.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);

      const secure = url.protocol === 'https:';
      const req = (secure ? httpsRequest : httpRequest)(url, {
        method,
        headers,
        agent: secure ? agents.https : agents.http,
      });
      let res: IncomingMessage | undefined;
      let settled = false;
      const fail = (err: unknown) => {
        unlink();
        if (!settled) {
          settled = true;
          reject(err);
        }
      };
      // Rejects with `reason` (if nothing was answered yet) and ends the request and any body being read.
      const cut = (reason: unknown) => {
        fail(reason);
        const err = reason instanceof Error ? reason : new Error('aborted');
        res?.destroy(err);
        req.destroy(err);
      };
      // Until the body has ended: aborting also cuts a response being read.
      const onAbort = () => cut(signal!.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const unlink = () => signal?.removeEventListener('abort', onAbort);
      if (method !== 'GET')
        req.setTimeout(idleTimeoutMs, () => cut(new Error(`upstream sent nothing for ${idleTimeoutMs} ms`)));
      req.on('error', fail);
      req.on('response', (incoming) => {
        res = incoming;
        try {
          answer(incoming);
        } catch (err) {
          // e.g. a header value fetch's Headers refuses: the answer is unusable, not fatal.
          cut(err);
        }
      });
      req.end(body ?? undefined);

      function answer(incoming: IncomingMessage): void {
        const status = incoming.statusCode ?? 0;
        if (status < MIN_STATUS || status > MAX_STATUS)
          throw new Error(`upstream answered with HTTP status ${status}, which is not a usable answer`);
        const responseHeaders = new Headers();
        for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2)
          responseHeaders.append(incoming.rawHeaders[i]!, incoming.rawHeaders[i + 1]!);
        const init = { status, statusText: incoming.statusMessage ?? '', headers: responseHeaders };
        const nullBody = NULL_BODY_STATUS.has(status) || method === 'HEAD';
        if (nullBody) {
          // Whatever the server sent after the headers is not a body; the socket is not reused.
          unlink();
          incoming.destroy();
          settled = true;
          resolve(new Response(null, init));
          return;
        }
        const sse = (responseHeaders.get('content-type') ?? '').includes('text/event-stream');
        const max = sse && method === 'GET' ? Number.POSITIVE_INFINITY : limit;
        const tooBig = () => new Error(`upstream response exceeded ${max} bytes`);
        let seen = 0;
        if (sse) {
          settled = true;
          resolve(
            new Response(
              new ReadableStream<Uint8Array>({
                start(controller) {
                  incoming.on('data', (chunk: Buffer) => {
                    seen += chunk.length;
                    if (seen > max) {
                      onExceeded();
                      unlink();
                      controller.error(tooBig());
                      incoming.destroy();
                      return;
                    }
                    controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
                    if ((controller.desiredSize ?? 1) <= 0) incoming.pause();
                  });
                  incoming.on('end', () => {
                    unlink();
                    try {
                      controller.close();
                    } catch {
                      // Already errored or cancelled.
                    }
                  });
                  incoming.on('error', (err) => {
                    unlink();
                    try {
                      controller.error(err);
                    } catch {
                      // Already errored or cancelled.
                    }
                  });
                },
                pull() {
                  incoming.resume();
                },
                cancel() {
                  unlink();
                  incoming.destroy();
                },
              }),
              init,
            ),
          );
          return;
        }
        const chunks: Buffer[] = [];
        incoming.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen > max) {
            onExceeded();
            fail(tooBig());
            incoming.destroy();
            return;
          }
          chunks.push(chunk);
        });
        incoming.on('end', () => {
          unlink();
          if (settled) return;
          settled = true;
          resolve(new BufferedResponse(Buffer.concat(chunks), init));
        });
        incoming.on('error', fail);
      }
    });

  return Object.assign(fetchImpl, {
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
