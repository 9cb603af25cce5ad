import {
  Agent as HttpAgent,
  request as httpRequest,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createParser } from 'eventsource-parser';
import { mediaTypeEssence } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { Clock } from '../clock.ts';
import { isAnswer, isNotification, isRequest } from './jsonrpc.ts';

/**
 * The client side of MCP's Streamable HTTP transport, for Warden's HTTP
 * upstreams, straight over node:http.
 *
 * Why not the SDK's StreamableHTTPClientTransport: it speaks fetch, so every
 * call builds Headers, a Request and a Response and reads the answer back
 * through a web stream. Against it, paired in one run (bench/gateway.ts
 * method, turns of 50), this saved 0.075–0.085 ms a call, about 6% of a
 * governed call. The SDK's Client (ids, progress, cancellation, timeouts)
 * still runs on top; this only moves messages.
 *
 * What it does, as the SDK's does: POSTs each message with the session id
 * and protocol version once known, following same-origin 307/308
 * redirects; takes the answer as one JSON body or as an SSE stream; after
 * `notifications/initialized` is accepted, opens the GET stream for the
 * server's own messages (tools/list_changed) if the server offers one, and
 * re-opens it with back-off whenever it drops.
 *
 * Where it differs: a POST's event stream that ends before answering what
 * it carried is not resumed (no Last-Event-ID): the transport reports it and
 * closes, so the call fails at once with a clear error (the SDK's would wait
 * for the call's timeout) and the next call starts a new session. A stream
 * still open after its answers is cut STREAM_LINGER_MS later.
 *
 * Limits, so no upstream can hurt the gateway: a JSON body, and each event
 * on a stream, are cut beyond `maxResponseBytes` (`onExceeded` is told
 * first); a POST, and a GET until its answer starts, are cut after
 * `idleTimeoutMs` of silence. Every message is validated (zod) before the
 * Client sees it.
 */

export interface UpstreamHttpOptions {
  url: URL;
  /** Sent with every request: the upstream's own credentials, from the policy. */
  headers: Record<string, string>;
  maxResponseBytes: number;
  onExceeded?: (() => void) | undefined;
  idleTimeoutMs: number;
  clock: Clock;
}

const MAX_REDIRECTS = 5;
/** GET stream re-opens: 1 s, 1.5 s, 2.25 s, … up to 30 s (or the server's `retry:`, at least 1 s). */
const GET_RETRY_FIRST_MS = 1_000;
const GET_RETRY_MAX_MS = 30_000;
/** A GET stream that carried an event or lived this long was healthy: the back-off starts over. */
const GET_HEALTHY_MS = 30_000;
/** How long a POST's event stream may stay open after its last answer before it is cut. */
export const STREAM_LINGER_MS = 5_000;
/** How much of an error page goes into the error. */
const ERROR_TEXT_MAX = 500;

/** Drops a leading byte-order mark, as fetch's text() does. */
const utf8 = new TextDecoder();

function sameOrigin(from: URL, location: string | undefined): URL | undefined {
  if (!location) return undefined;
  let to: URL;
  try {
    to = new URL(location, from);
  } catch {
    return undefined;
  }
  // Credentials never travel to another origin, nor into a URL's userinfo.
  return to.origin === from.origin && to.username === '' && to.password === '' ? to : undefined;
}

export class UpstreamHttpTransport implements Transport {
  sessionId: string | undefined;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: Transport['onmessage'];
  readonly #options: UpstreamHttpOptions;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;
  readonly #open = new Set<ClientRequest>();
  /** Requests the Client has cancelled: a stream may end without their answers. */
  readonly #cancelled = new Set<RequestId>();
  #protocolVersion: string | undefined;
  #get: ClientRequest | undefined;
  #getRetry: NodeJS.Timeout | undefined;
  #getFailures = 0;
  #closed = false;

  constructor(options: UpstreamHttpOptions) {
    this.#options = options;
    const secure = options.url.protocol === 'https:';
    this.#agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#request = secure ? httpsRequest : httpRequest;
  }

  async start(): Promise<void> {}

  setProtocolVersion(version: string): void {
    this.#protocolVersion = version;
  }

  /** Resolves once the upstream has taken the message (its answer, if any, arrives through onmessage). */
  send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the upstream connection is closed'));
    if (isNotification(message) && message.method === 'notifications/cancelled') {
      const id = (message.params as { requestId?: RequestId } | undefined)?.requestId;
      if (id !== undefined) this.#cancelled.add(id);
    }
    return new Promise<void>((resolve, reject) =>
      this.#post(this.#options.url, JSON.stringify(message), message, 0, resolve, reject),
    );
  }

  #post(
    url: URL,
    body: string,
    message: JSONRPCMessage,
    hops: number,
    resolve: () => void,
    reject: (err: Error) => void,
  ): void {
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };
    const req = this.#start('POST', url, {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'content-length': Buffer.byteLength(body),
    });
    req.setTimeout(this.#options.idleTimeoutMs, () =>
      req.destroy(new Error(`upstream sent nothing for ${this.#options.idleTimeoutMs} ms`)),
    );
    req.on('error', (err) => {
      if (!settled) settle(err);
      else if (!this.#closed) this.onerror?.(err);
    });
    req.on('response', (res) => {
      this.#noteSession(res);
      const status = res.statusCode ?? 0;
      if (status === 307 || status === 308) {
        res.resume();
        settled = true;
        const to = sameOrigin(url, res.headers.location);
        if (to && hops < MAX_REDIRECTS) return this.#post(to, body, message, hops + 1, resolve, reject);
        return reject(
          new Error(
            `upstream redirected to ${String(res.headers.location)}, which is not followed (another origin, or too many redirects); set the server's url to where it should go`,
          ),
        );
      }
      if (status < 200 || status > 299) {
        void readText(res, ERROR_TEXT_MAX).then((text) =>
          settle(new Error(`upstream answered HTTP ${status}${text ? `: ${text}` : ''}`)),
        );
        return;
      }
      const expected = isRequest(message) ? [message.id] : [];
      if (expected.length === 0) {
        // A notification or an answer of ours: accepted (202, or any 2xx), nothing comes back.
        res.resume();
        settle();
        if (isNotification(message) && message.method === 'notifications/initialized') this.#openGet();
        return;
      }
      const type = mediaTypeEssence(res.headers['content-type']);
      if (type === 'text/event-stream') {
        // Accepted: the answers come on the stream.
        settle();
        this.#readStream(res, expected);
        return;
      }
      if (type !== 'application/json') {
        res.resume();
        settle(
          new Error(
            `upstream answered with content type ${String(res.headers['content-type'])}, neither JSON nor an event stream`,
          ),
        );
        return;
      }
      this.#readJson(res).then(
        (messages) => {
          settle();
          for (const m of messages) this.#deliver(m);
        },
        (err: Error) => settle(err),
      );
    });
    req.end(body);
  }

  /** Ends every request and the GET stream; the Client is told through onclose. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#getRetry) this.#options.clock.clearTimeout(this.#getRetry);
    this.#getRetry = undefined;
    const gone = new Error('the upstream connection is closed');
    for (const req of this.#open) req.destroy(gone);
    this.#open.clear();
    this.#agent.destroy();
    this.onclose?.();
  }

  #start(method: 'POST' | 'GET', url: URL, extra: OutgoingHttpHeaders): ClientRequest {
    const headers: OutgoingHttpHeaders = { ...this.#options.headers, ...extra };
    if (this.sessionId) headers['mcp-session-id'] = this.sessionId;
    if (this.#protocolVersion) headers['mcp-protocol-version'] = this.#protocolVersion;
    const req = this.#request(url, { method, headers, agent: this.#agent });
    this.#open.add(req);
    req.once('close', () => this.#open.delete(req));
    return req;
  }

  #noteSession(res: IncomingMessage): void {
    const sid = res.headers['mcp-session-id'];
    if (typeof sid === 'string' && sid !== '') this.sessionId = sid;
  }

  /** A whole JSON body: one message or a batch, each validated. */
  #readJson(res: IncomingMessage): Promise<JSONRPCMessage[]> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.#options.maxResponseBytes) {
          this.#options.onExceeded?.();
          res.destroy();
          reject(new Error(`upstream response exceeded ${this.#options.maxResponseBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', reject);
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(utf8.decode(Buffer.concat(chunks)));
        } catch {
          return reject(new Error('upstream answered with a body that is not JSON'));
        }
        const messages: JSONRPCMessage[] = [];
        for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
          const valid = JSONRPCMessageSchema.safeParse(m);
          if (!valid.success)
            return reject(new Error('upstream answered with something that is not a JSON-RPC message'));
          messages.push(valid.data);
        }
        resolve(messages);
      });
    });
  }

  /**
   * An SSE stream: each `message` event is one message; problems go to
   * onerror (nobody awaits a stream). `expected`: the ids of the requests a
   * POST carried, whose answers must come before the stream ends. Resolves
   * when the stream is over, with whether it carried any message and the
   * server's `retry:` hint.
   */
  #readStream(
    res: IncomingMessage,
    expected: readonly RequestId[],
  ): Promise<{ carried: boolean; retryMs: number | undefined }> {
    const waiting = new Set(expected);
    let carried = false;
    let retryMs: number | undefined;
    let linger: NodeJS.Timeout | undefined;
    let cut = false;
    const tooBig = () => {
      cut = true;
      this.#options.onExceeded?.();
      res.destroy(new Error(`upstream sent an event over ${this.#options.maxResponseBytes} bytes`));
    };
    const parser = createParser({
      maxBufferSize: this.#options.maxResponseBytes,
      onRetry: (ms) => (retryMs = ms),
      onError: (err) => {
        if (err.type === 'max-buffer-size-exceeded' && !cut) tooBig();
      },
      onEvent: (event) => {
        if (cut) return;
        // The parser's own limit covers an event still arriving; this one an event that came whole.
        if (
          event.data.length * 3 > this.#options.maxResponseBytes &&
          Buffer.byteLength(event.data) > this.#options.maxResponseBytes
        )
          return tooBig();
        // A priming event (an id for resumption, no data) carries no message.
        if (event.data === '' || (event.event !== undefined && event.event !== 'message')) return;
        let data: unknown;
        try {
          data = JSON.parse(event.data);
        } catch {
          return this.onerror?.(new Error('upstream sent an event that is not JSON'));
        }
        const valid = JSONRPCMessageSchema.safeParse(data);
        if (!valid.success) return this.onerror?.(new Error('upstream sent an event that is not a JSON-RPC message'));
        carried = true;
        if (isAnswer(valid.data)) waiting.delete(valid.data.id);
        this.#deliver(valid.data);
        if (expected.length > 0 && waiting.size === 0 && !linger) {
          // All answered: the stream should end now; one that lingers would hold a socket for nothing.
          linger = this.#options.clock.setTimeout(() => res.destroy(), STREAM_LINGER_MS);
          linger.unref?.();
        }
      },
    });
    return new Promise((resolve) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (!cut) parser.feed(chunk);
      });
      res.on('error', (err) => {
        if (!this.#closed && waiting.size === 0) this.onerror?.(err);
      });
      res.on('close', () => {
        if (linger) this.#options.clock.clearTimeout(linger);
        for (const id of waiting) if (this.#cancelled.delete(id)) waiting.delete(id);
        if (waiting.size > 0 && !this.#closed) {
          // Not resumed: fail the calls now, and let the next one start afresh.
          this.onerror?.(new Error('upstream ended its event stream before answering'));
          void this.close();
        }
        resolve({ carried, retryMs });
      });
    });
  }

  #deliver(message: JSONRPCMessage): void {
    if (isAnswer(message)) this.#cancelled.delete(message.id);
    try {
      this.onmessage?.(message);
    } catch (err) {
      this.onerror?.(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The GET stream, for messages the server sends on its own; a server without one answers 405. */
  #openGet(): void {
    if (this.#closed || this.#get) return;
    const req = this.#start('GET', this.#options.url, { accept: 'text/event-stream' });
    this.#get = req;
    // Until its answer starts; the stream itself lives as long as the session.
    req.setTimeout(this.#options.idleTimeoutMs, () =>
      req.destroy(
        new Error(`upstream did not answer its event stream request within ${this.#options.idleTimeoutMs} ms`),
      ),
    );
    const lost = (why: Error | undefined, retryMs?: number) => {
      if (this.#get !== req) return;
      this.#get = undefined;
      if (this.#closed) return;
      if (why) this.onerror?.(why);
      this.#getFailures++;
      const base = Math.max(retryMs ?? GET_RETRY_FIRST_MS, GET_RETRY_FIRST_MS);
      const delay = Math.min(base * 1.5 ** (this.#getFailures - 1), GET_RETRY_MAX_MS);
      this.#getRetry = this.#options.clock.setTimeout(() => {
        this.#getRetry = undefined;
        this.#openGet();
      }, delay);
      this.#getRetry.unref?.();
    };
    req.on('error', (err) => lost(err));
    req.on('response', (res) => {
      req.setTimeout(0);
      const status = res.statusCode ?? 0;
      const stream = status === 200 && mediaTypeEssence(res.headers['content-type']) === 'text/event-stream';
      if (!stream) {
        res.resume();
        // 405 is how a server says it offers no stream; another refusal of the request itself means the same, said less well.
        if (status === 405 || (status >= 400 && status < 500 && status !== 408 && status !== 429)) {
          this.#get = undefined;
          if (status !== 405)
            this.onerror?.(
              new Error(`upstream refused its event stream (HTTP ${status}); it is not asked again in this session`),
            );
          return;
        }
        return lost(new Error(`upstream could not open its event stream (HTTP ${status})`));
      }
      const opened = this.#options.clock.monotonic();
      void this.#readStream(res, []).then(({ carried, retryMs }) => {
        if (carried || this.#options.clock.monotonic() - opened >= GET_HEALTHY_MS) this.#getFailures = 0;
        lost(undefined, retryMs);
      });
    });
    req.end();
  }
}

/** Up to `max` characters of a body, for an error message (the rest is not read); never rejects. */
function readText(res: IncomingMessage, max: number): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const done = () => resolve(text.slice(0, max).trim());
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      text += chunk;
      if (text.length >= max) {
        res.destroy();
        done();
      }
    });
    res.on('error', done);
    res.on('end', done);
  });
}
