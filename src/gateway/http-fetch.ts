import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';

export interface HttpFetch extends FetchLike {
  /** Closes the kept-alive connections; later requests open new ones. */
  close(): void;
}

export interface HttpFetchOptions {
  /** Largest body of one response to a POST (JSON or an SSE stream); beyond it the request is cut. Default unlimited. */
  maxPostResponseBytes?: number | undefined;
  /** Called when a response is cut for exceeding the limit (before the error reaches the reader). */
  onExceeded?: (() => void) | undefined;
}

/**
 * `fetch` over node:http with kept-alive connections, for the MCP SDK's
 * Streamable HTTP client transport (Warden's HTTP upstreams and the stdio
 * bridge).
 *
 * Why not the global fetch: on this path undici costs about 0.2 ms more per
 * request (bench/gateway.ts), and handed the transport's one long-lived
 * AbortSignal it keeps a listener per request until garbage collection.
 * Here each request links to the signal only until its body has ended.
 *
 * The SDK only needs a small part of fetch: a method, headers and a string
 * body; a response with status, headers and a body it reads as JSON, text or
 * a stream (SSE). JSON and other bodies are read whole (within the limit);
 * an SSE body is handed over as a stream, with back-pressure. Redirects are
 * not followed (the SDK asks for that anyway and reports them itself).
 */
export function httpFetch(options: HttpFetchOptions = {}): HttpFetch {
  const limit = options.maxPostResponseBytes ?? Number.POSITIVE_INFINITY;
  const onExceeded = options.onExceeded ?? (() => {});
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

  const fetchImpl = (input: string | URL, init?: RequestInit): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const url = typeof input === 'string' ? new URL(input) : input;
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return reject(new TypeError(`cannot fetch ${url.protocol} URLs`));
      const method = (init?.method ?? 'GET').toUpperCase();
      const body = init?.body;
      if (body !== undefined && body !== null && typeof body !== 'string') return reject(new TypeError('only string request bodies are supported'));
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, name) => {
        headers[name] = value;
      });
      if (typeof body === 'string') headers['content-length'] = String(Buffer.byteLength(body));
      const signal = init?.signal ?? undefined;
      if (signal?.aborted) return reject(signal.reason);

      const secure = url.protocol === 'https:';
      const req = (secure ? httpsRequest : httpRequest)(url, { method, headers, agent: secure ? agents.https : agents.http });
      let res: IncomingMessage | undefined;
      let settled = false;
      const fail = (err: unknown) => {
        unlink();
        if (!settled) {
          settled = true;
          reject(err);
        }
      };
      // Until the body has ended: aborting also cuts a response being read.
      const onAbort = () => {
        const reason: unknown = signal!.reason;
        fail(reason);
        const err = reason instanceof Error ? reason : new Error('aborted');
        res?.destroy(err);
        req.destroy(err);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const unlink = () => signal?.removeEventListener('abort', onAbort);
      req.on('error', fail);
      req.on('response', (incoming) => {
        res = incoming;
        const status = incoming.statusCode ?? 0;
        const responseHeaders = new Headers();
        for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) responseHeaders.append(incoming.rawHeaders[i]!, incoming.rawHeaders[i + 1]!);
        const init = { status, statusText: incoming.statusMessage ?? '', headers: responseHeaders };
        const max = method === 'POST' ? limit : Number.POSITIVE_INFINITY;
        const tooBig = () => new Error(`upstream response exceeded ${max} bytes`);
        let seen = 0;
        if ((responseHeaders.get('content-type') ?? '').includes('text/event-stream')) {
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
          const nullBody = status === 204 || status === 205 || status === 304 || method === 'HEAD';
          resolve(new Response(nullBody ? null : Buffer.concat(chunks), init));
        });
        incoming.on('error', fail);
      });
      req.end(body ?? undefined);
    });

  return Object.assign(fetchImpl, {
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}
