import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { MAX_BATCH_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';
import { isJsonContentType } from '@modelcontextprotocol/sdk/shared/mediaType.js';
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CancelledNotificationSchema,
  ErrorCode,
  JSONRPCMessageSchema,
  SUPPORTED_PROTOCOL_VERSIONS,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import type { Clock } from '../clock.ts';
import { isAnswer, isNotification, isRequest } from './jsonrpc.ts';

/**
 * The agent-facing side of MCP's Streamable HTTP transport, for one session.
 * The edge (http.ts) has already checked Host and Origin, authenticated the
 * agent, read and parsed the body and found the session; this class does the
 * transport's part: initialization, the session and protocol-version headers,
 * and carrying each POST's answers back on its own response.
 *
 * Why not the SDK's StreamableHTTPServerTransport: it answers either always
 * with an SSE stream or always with one JSON body, and goes through web
 * Request/Response objects and streams on the way. Nearly every call an agent
 * makes is answered within milliseconds with nothing to stream, and a stream
 * costs both sides a good share of the time Warden adds to a call. So a POST
 * is answered with one JSON body when its answers are ready at once; it turns
 * into an SSE stream (allowed by the spec: the server picks per POST) as soon
 * as there is something to send before the answer (progress), or when the
 * answer is not ready within `streamAfterMs` — a call held for a human — so
 * the agent sees the request accepted and keep-alives keep idle-timeouts away.
 */

export interface AgentTransportOptions {
  clock: Clock;
  newSessionId: () => string;
  /** Called once the initialize request has given the session its id. */
  onInitialized: (sessionId: string) => void;
  /** Called when the agent ends the session with DELETE (before close()). */
  onDeleted: (sessionId: string) => void;
  /** How long a POST's answers may take before its response becomes an SSE stream. */
  streamAfterMs?: number;
  /** Interval of SSE keep-alive comments. */
  keepAliveMs?: number;
}

export const STREAM_AFTER_MS = 1_000;
export const SSE_KEEPALIVE_MS = 15_000;

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  Connection: 'keep-alive',
  'X-Accel-Buffering': 'no',
};

/** One POST that carries requests: its response carries their answers. */
interface Exchange {
  res: ServerResponse;
  ids: RequestId[];
  /** The body was an array: the answers go back as one, even a single answer. */
  batch: boolean;
  answers: Map<RequestId, JSONRPCMessage>;
  /** Requests the agent cancelled: no answer will come for them (the SDK sends none). */
  cancelled: Set<RequestId>;
  streaming: boolean;
  /** Its connection closed before the answers: they are dropped as they come (see #pending). */
  gone: boolean;
  finished: boolean;
  timer: NodeJS.Timeout | undefined;
  keepAlive: NodeJS.Timeout | undefined;
}

function sseEvent(message: JSONRPCMessage): string {
  return `event: message\ndata: ${JSON.stringify(message)}\n\n`;
}

/** Writes unless the response is already over (an ended response would raise an error event). */
function write(res: ServerResponse, text: string): void {
  if (!res.writableEnded) res.write(text);
}

function json(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(value);
  res
    .writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers })
    .end(text);
}

function refuse(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  json(res, status, { jsonrpc: '2.0', error: { code, message }, id: null }, headers);
}

function accepts(req: IncomingMessage, type: string): boolean {
  // Accept is a list; a substring test is what the spec's clients are held to (as in the SDK).
  return (req.headers.accept ?? '').includes(type);
}

export class AgentTransport implements Transport {
  sessionId: string | undefined;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: Transport['onmessage'];
  readonly #options: AgentTransportOptions;
  readonly #streamAfterMs: number;
  readonly #keepAliveMs: number;
  /**
   * The exchange waiting for each request id's answer. An id stays here until
   * its answer has come (or the agent cancelled it), even if the agent's
   * connection went first: a request reusing the id meanwhile would
   * otherwise be handed the earlier call's answer.
   */
  readonly #pending = new Map<RequestId, Exchange>();
  /** The GET stream for messages not tied to a request (tools/list_changed). */
  #standalone: { res: ServerResponse; keepAlive: NodeJS.Timeout } | undefined;
  #closed = false;

  constructor(options: AgentTransportOptions) {
    this.#options = options;
    this.#streamAfterMs = options.streamAfterMs ?? STREAM_AFTER_MS;
    this.#keepAliveMs = options.keepAliveMs ?? SSE_KEEPALIVE_MS;
  }

  async start(): Promise<void> {}

  /** The first of these request ids that cannot be taken now: still being answered, or repeated within them. */
  clashingId(ids: readonly RequestId[]): RequestId | undefined {
    return ids.find((id, i) => this.#pending.has(id) || ids.indexOf(id) !== i);
  }

  /** Serves one HTTP request of this session; `body` is the parsed POST body. */
  handle(req: IncomingMessage, res: ServerResponse, body: unknown, authInfo: AuthInfo): void {
    if (this.#closed) return refuse(res, 404, -32001, 'Session not found');
    switch (req.method) {
      case 'POST':
        return this.#post(req, res, body, authInfo);
      case 'GET':
        return this.#get(req, res);
      case 'DELETE':
        return this.#delete(req, res);
      default:
        return refuse(res, 405, -32000, 'Method not allowed.', { Allow: 'GET, POST, DELETE' });
    }
  }

  #post(req: IncomingMessage, res: ServerResponse, body: unknown, authInfo: AuthInfo): void {
    if (!accepts(req, 'application/json') || !accepts(req, 'text/event-stream')) {
      return refuse(res, 406, -32000, 'Not Acceptable: Client must accept both application/json and text/event-stream');
    }
    if (!isJsonContentType(req.headers['content-type'])) {
      return refuse(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
    }
    const raw = Array.isArray(body) ? body : [body];
    if (raw.length > MAX_BATCH_SIZE)
      return refuse(res, 400, -32600, `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages`);
    const messages: JSONRPCMessage[] = [];
    for (const m of raw) {
      const parsed = JSONRPCMessageSchema.safeParse(m);
      if (!parsed.success) return refuse(res, 400, -32700, 'Parse error: Invalid JSON-RPC message');
      messages.push(parsed.data);
    }

    // Its params are the SDK Server's to check; the edge opens a session only for a valid one.
    if (messages.some((m) => isRequest(m) && m.method === 'initialize')) {
      if (this.sessionId !== undefined) return refuse(res, 400, -32600, 'Invalid Request: Server already initialized');
      if (messages.length > 1)
        return refuse(res, 400, -32600, 'Invalid Request: Only one initialization request is allowed');
      this.sessionId = this.#options.newSessionId();
      this.#options.onInitialized(this.sessionId);
    } else {
      const problem = this.#sessionProblem(req);
      if (problem) return problem(res);
    }

    // The handlers learn who is calling from authInfo (the token's id); the secret itself stays here.
    const { authorization: _secret, cookie: _cookie, ...headers } = req.headers;
    const extra = { authInfo, requestInfo: { headers } };
    const ids = messages.filter(isRequest).map((m) => m.id);
    if (ids.length === 0) {
      // Only notifications or answers to our requests: accepted, nothing to answer.
      res.writeHead(202).end();
      this.#deliver(messages, extra);
      return;
    }
    const clash = this.clashingId(ids);
    if (clash !== undefined) {
      return refuse(
        res,
        400,
        -32600,
        `Invalid Request: request id ${JSON.stringify(clash)} is still being answered in this session`,
      );
    }
    const ex: Exchange = {
      res,
      ids,
      batch: Array.isArray(body),
      answers: new Map(),
      cancelled: new Set(),
      streaming: false,
      gone: false,
      finished: false,
      timer: undefined,
      keepAlive: undefined,
    };
    for (const id of ids) this.#pending.set(id, ex);
    ex.timer = this.#options.clock.setTimeout(() => this.#stream(ex), this.#streamAfterMs);
    // The agent went away first (the edge aborts its calls): their answers are dropped as they come.
    res.once('close', () => {
      if (ex.finished) return;
      ex.gone = true;
      this.#stopTimers(ex);
    });
    this.#deliver(messages, extra);
  }

  #deliver(messages: readonly JSONRPCMessage[], extra: MessageExtraInfo): void {
    for (const m of messages) this.onmessage?.(m, extra);
    // A cancelled request gets no answer: the response that waits for it must
    // end anyway, or it would hold the agent's connection for the session's life.
    for (const m of messages) {
      if (!isNotification(m) || m.method !== 'notifications/cancelled') continue;
      // Only what the SDK itself acts on (a valid notice, a truthy id); else the call runs on and answers.
      const notice = CancelledNotificationSchema.safeParse(m);
      const id = notice.success ? notice.data.params.requestId : undefined;
      const ex = id ? this.#pending.get(id) : undefined;
      if (!ex || ex.answers.has(id!)) continue;
      if (ex.gone) {
        this.#pending.delete(id!);
        continue;
      }
      ex.cancelled.add(id!);
      this.#finishIfSettled(ex);
    }
  }

  #get(req: IncomingMessage, res: ServerResponse): void {
    if (!accepts(req, 'text/event-stream'))
      return refuse(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    const problem = this.#sessionProblem(req);
    if (problem) return problem(res);
    if (this.#standalone) return refuse(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    res.writeHead(200, { ...SSE_HEADERS, 'mcp-session-id': this.sessionId! });
    res.flushHeaders();
    const standalone = { res, keepAlive: this.#keepAlive(res) };
    this.#standalone = standalone;
    res.once('close', () => {
      this.#options.clock.clearInterval(standalone.keepAlive);
      if (this.#standalone === standalone) this.#standalone = undefined;
    });
  }

  #delete(req: IncomingMessage, res: ServerResponse): void {
    const problem = this.#sessionProblem(req);
    if (problem) return problem(res);
    this.#options.onDeleted(this.sessionId!);
    res.writeHead(200).end();
    this.close().catch((err: unknown) => this.onerror?.(err instanceof Error ? err : new Error(String(err))));
  }

  /** What is wrong with a request after initialization, as the response that says so. */
  #sessionProblem(req: IncomingMessage): ((res: ServerResponse) => void) | undefined {
    if (this.sessionId === undefined) return (res) => refuse(res, 400, -32000, 'Bad Request: Server not initialized');
    const sid = req.headers['mcp-session-id'];
    if (!sid) return (res) => refuse(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    if (sid !== this.sessionId) return (res) => refuse(res, 404, -32001, 'Session not found');
    const version = req.headers['mcp-protocol-version'];
    if (typeof version === 'string' && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      const text = `Bad Request: Unsupported protocol version: ${version} (supported versions: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')})`;
      return (res) => refuse(res, 400, -32000, text);
    }
    return undefined;
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const answer = isAnswer(message);
    const id = answer ? message.id : options?.relatedRequestId;
    if (id === undefined) {
      if (answer) throw new Error('An answer must belong to a request');
      if (this.#standalone) write(this.#standalone.res, sseEvent(message));
      return;
    }
    const ex = this.#pending.get(id);
    // Not (or no longer) ours to answer: nothing to deliver.
    if (!ex || ex.cancelled.has(id)) return;
    if (!answer) {
      // Progress is advisory: not for a connection that is gone, nor piled up for an agent not reading.
      if (ex.gone || ex.res.writableNeedDrain) return;
      // Something to say before the answer: this POST becomes a stream.
      this.#stream(ex);
      write(ex.res, sseEvent(message));
      return;
    }
    if (ex.gone) {
      this.#pending.delete(id);
      return;
    }
    ex.answers.set(id, message);
    if (ex.streaming) write(ex.res, sseEvent(message));
    this.#finishIfSettled(ex);
  }

  /** Every request of the exchange answered or cancelled: its response can end. */
  #finishIfSettled(ex: Exchange): void {
    if (ex.answers.size + ex.cancelled.size === ex.ids.length) this.#finish(ex);
  }

  /** Turns an exchange's response into an SSE stream (once), sending the answers it already has. */
  #stream(ex: Exchange): void {
    if (ex.streaming || ex.res.headersSent) return;
    ex.streaming = true;
    if (ex.timer) this.#options.clock.clearTimeout(ex.timer);
    ex.res.writeHead(200, { ...SSE_HEADERS, 'mcp-session-id': this.sessionId! });
    ex.res.flushHeaders();
    for (const a of ex.answers.values()) write(ex.res, sseEvent(a));
    ex.keepAlive = this.#keepAlive(ex.res);
  }

  #finish(ex: Exchange): void {
    ex.finished = true;
    this.#stopTimers(ex);
    for (const id of ex.ids) if (this.#pending.get(id) === ex) this.#pending.delete(id);
    // Already ended by someone else (the edge's own error page): nothing more to say.
    if (ex.gone || ex.res.writableEnded) return;
    if (ex.streaming || ex.res.headersSent) {
      ex.res.end();
      return;
    }
    const answers = ex.ids.filter((id) => ex.answers.has(id)).map((id) => ex.answers.get(id)!);
    if (answers.length === 0) {
      // All cancelled: JSON has no empty answer, but an event stream may be empty.
      ex.res.writeHead(200, { ...SSE_HEADERS, 'mcp-session-id': this.sessionId! }).end();
      return;
    }
    json(ex.res, 200, ex.batch ? answers : answers[0], { 'mcp-session-id': this.sessionId! });
  }

  #stopTimers(ex: Exchange): void {
    if (ex.timer) this.#options.clock.clearTimeout(ex.timer);
    if (ex.keepAlive) this.#options.clock.clearInterval(ex.keepAlive);
    ex.timer = ex.keepAlive = undefined;
  }

  #keepAlive(res: ServerResponse): NodeJS.Timeout {
    // Only when the line is idle anyway: an agent that does not read gets no pile of them.
    const t = this.#options.clock.setInterval(() => {
      if (!res.writableNeedDrain) write(res, ': keepalive\n\n');
    }, this.#keepAliveMs);
    t.unref?.();
    return t;
  }

  /**
   * Ends the session's streams. A request still without its answer gets an
   * error saying so, rather than a response that ends with nothing in it.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const ex of new Set(this.#pending.values())) {
      if (ex.gone) {
        this.#finish(ex);
        continue;
      }
      for (const id of ex.ids) {
        if (ex.answers.has(id) || ex.cancelled.has(id)) continue;
        const unanswered: JSONRPCMessage = {
          jsonrpc: '2.0',
          id,
          error: {
            code: ErrorCode.ConnectionClosed,
            message: 'The session was closed before this request was answered',
          },
        };
        ex.answers.set(id, unanswered);
        if (ex.streaming) write(ex.res, sseEvent(unanswered));
      }
      this.#finish(ex);
    }
    if (this.#standalone) {
      this.#options.clock.clearInterval(this.#standalone.keepAlive);
      this.#standalone.res.end();
      this.#standalone = undefined;
    }
    this.onclose?.();
  }
}
