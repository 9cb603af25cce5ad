import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { isInitializeRequest, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { HealthReport } from './health.ts';
import type { AlertSink } from '../control/types.ts';
import { z } from 'zod';
import { BodyTooLargeError, WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GatewayPipeline } from './pipeline.ts';
import { AgentTransport } from './agent-transport.ts';
import { findProtoKey } from './arguments.ts';
import { RefusalRecorder, type AuthFailureCode, type EdgeRefusal } from './refusals.ts';
import { SessionServer } from './session.ts';
import type { TaskRegistry } from './tasks.ts';
import type { TokenStore } from './tokens.ts';

/**
 * The HTTP edge: Host/Origin checks (DNS-rebinding protection), bearer-token
 * authentication, and sessions bound to the agent that opened them. The
 * transport's part of MCP is AgentTransport's; the rest is the SDK's Server.
 */

export interface HttpEdgeOptions {
  pipeline: GatewayPipeline;
  /** Tasks outlive sessions, so they are kept here for all of them. */
  tasks: TaskRegistry;
  tokens: TokenStore;
  audit: AuditSink;
  alerts: AlertSink;
  logger: Logger;
  clock: Clock;
  host: string;
  port: number;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  sessionIdleMs: number;
  maxSessionsPerAgent: number;
  maxBodyBytes: number;
  limits: EdgeLimits;
  /** What GET /healthz answers (src/gateway/health.ts). */
  health: () => HealthReport;
}

/**
 * What one client may hold of the gateway. Unauthenticated clients cost
 * nothing to open sockets with, so connections are capped in all and per
 * remote address, and every request must arrive (headers, then the whole
 * body) within a bounded time. None of these applies to a response: once a
 * request is whole, Node stops timing it, so a held call streaming progress
 * for an hour is not cut, and the socket's own idle timeout stays off.
 */
export const edgeLimitsSchema = z
  .object({
    maxConnections: z.number().int().positive(),
    maxConnectionsPerAddress: z.number().int().positive(),
    /** All request headers within this (Node's headersTimeout). */
    headersTimeoutMs: z.number().int().positive(),
    /** The whole request, headers and body, within this (Node's requestTimeout). */
    bodyTimeoutMs: z.number().int().positive(),
    /** A kept-alive connection with no request is closed after this. */
    keepAliveTimeoutMs: z.number().int().positive(),
    /** How often Node checks the two request timeouts: the slack in enforcing them. */
    timeoutCheckEveryMs: z.number().int().positive(),
  })
  .refine((l) => l.bodyTimeoutMs >= l.headersTimeoutMs, {
    message: 'bodyTimeoutMs must be at least headersTimeoutMs (it counts from the same start)',
    path: ['bodyTimeoutMs'],
  });

export type EdgeLimits = z.infer<typeof edgeLimitsSchema>;

/** Validated limits, or CONFIG_INVALID naming each bad field. */
export function parseEdgeLimits(input: unknown): EdgeLimits {
  const limits = edgeLimitsSchema.safeParse(input);
  if (!limits.success) {
    const problems = limits.error.issues.map((i) => `limits.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new WardenError('CONFIG_INVALID', `invalid gateway limits: ${problems}`);
  }
  return limits.data;
}

export const DEFAULT_EDGE_LIMITS: EdgeLimits = {
  maxConnections: 1024,
  // Agents on one host (loopback) share an address: generous enough for many held calls at once.
  maxConnectionsPerAddress: 256,
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  timeoutCheckEveryMs: 1_000,
};

interface Session {
  id: string;
  agent: string;
  transport: AgentTransport;
  mcp: SessionServer;
  lastSeen: number;
  active: number;
  /** Why the session is ending, once we know: the reason its running calls are abandoned with. */
  closing?: string | undefined;
}

export const MCP_PATH = '/mcp';
/** The load balancer's readiness probe: no auth, no secrets. */
export const HEALTH_PATH = '/healthz';
/** After the pipeline has answered running calls, how long close() lets those answers finish reaching the agents. */
const ANSWER_DRAIN_MS = 2_000;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1']);

/** The hostname of a Host header value: `[::1]:8787` → `::1`, `localhost:80` → `localhost`. */
export function hostOf(hostHeader: string): string {
  const h = hostHeader.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(1, end) : h;
  }
  const colon = h.lastIndexOf(':');
  return colon >= 0 && h.indexOf(':') === colon ? h.slice(0, colon) : h;
}

/** Host header: loopback names, or one of the configured hosts (bare name or name:port). */
export function isAllowedHost(hostHeader: string | undefined, allowed: readonly string[]): boolean {
  if (!hostHeader) return false;
  const full = hostHeader.trim().toLowerCase();
  const name = hostOf(full);
  if (LOOPBACK_HOSTS.has(name)) return true;
  return allowed.some((a) => {
    const x = a.trim().toLowerCase();
    return x === full || x === name;
  });
}

/** Origin header: absent (not a browser), a loopback origin, or exactly a configured one. */
export function isAllowedOrigin(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  const o = origin.trim().toLowerCase();
  if (allowed.some((a) => a.trim().toLowerCase().replace(/\/$/, '') === o)) return true;
  let url: URL;
  try {
    url = new URL(o);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  return LOOPBACK_HOSTS.has(url.hostname.replace(/^\[|\]$/g, ''));
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : '';
}

function jsonError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

/** The JSON-RPC request ids in a POST body (one message or a batch). */
function requestIdsOf(body: unknown): RequestId[] {
  const messages = Array.isArray(body) ? body : [body];
  const ids: RequestId[] = [];
  // Not validated yet (the transport does that): only what can be a request's id is kept.
  for (const m of messages) {
    if (typeof m !== 'object' || m === null || typeof (m as { method?: unknown }).method !== 'string') continue;
    const id = (m as { id?: unknown }).id;
    if (typeof id === 'string' || typeof id === 'number') ids.push(id);
  }
  return ids;
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return reject(new BodyTooLargeError(limit));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new BodyTooLargeError(limit));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
    // The body timeout (or the client) destroyed the socket mid-body: settle, so nothing waits on it.
    req.on('close', () => {
      if (!req.complete) reject(new WardenError('INVALID_INPUT', 'the request ended before its body was complete'));
    });
  });
}

/** The oldest member of an insertion-ordered set. */
function first<T>(set: Set<T> | undefined): T | undefined {
  if (!set) return undefined;
  for (const item of set) return item;
  return undefined;
}

/** A whole HTTP/1.1 answer written straight to a socket (no request object exists yet, or any more). */
function rawAnswer(status: number, statusText: string, message: string, headers: Record<string, string> = {}): string {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null });
  const lines = [
    `HTTP/1.1 ${status} ${statusText}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

export class HttpEdge {
  readonly #options: HttpEdgeOptions;
  readonly #log: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #limits: EdgeLimits;
  readonly #refusals: RefusalRecorder;
  /** Open connections within the limits, in all and per remote address. */
  #connections = 0;
  readonly #perAddress = new Map<string, number>();
  /** Sockets counted in the two above (released once, on close or eviction). */
  readonly #counted = new WeakSet<Socket>();
  /**
   * Counted connections that have not yet sent a whole request's headers,
   * oldest first, in all and per address: the ones a new connection may push
   * out at a limit, so sockets held open with partial headers can never keep
   * a client that sends its request promptly out, even from the same address.
   */
  readonly #waiting = new Set<Socket>();
  readonly #waitingByAddress = new Map<string, Set<Socket>>();
  /** Each socket's remote address, kept from its start (a destroyed socket no longer knows it). */
  readonly #remotes = new WeakMap<Duplex, string>();
  /** Sockets answered over a limit at connection time: whatever they send is ignored. */
  readonly #refusedSockets = new WeakSet<Duplex>();
  /** The request each socket is on (and its agent once known), to tell a slow body from slow headers. */
  readonly #current = new WeakMap<Duplex, { req: IncomingMessage; agent?: string | undefined }>();
  /** Responses that carry answers to requests (not notification streams): close() lets them finish. */
  readonly #answering = new Set<ServerResponse>();
  readonly #http: HttpServer;
  #reaper: NodeJS.Timeout | undefined;
  #offToolsChanged: (() => void) | undefined;
  /** Set once shutdown starts: no new connections, and new requests get 503. */
  #stopped: Promise<void> | undefined;

  constructor(options: HttpEdgeOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: 'gateway-http' });
    this.#limits = parseEdgeLimits(options.limits);
    this.#refusals = new RefusalRecorder({
      audit: options.audit,
      alerts: options.alerts,
      clock: options.clock,
      logger: this.#log,
    });
    this.#http = createServer(
      {
        headersTimeout: this.#limits.headersTimeoutMs,
        // Counts only until the request is whole: a long approval wait or a
        // progress stream in the response is not cut by it.
        requestTimeout: this.#limits.bodyTimeoutMs,
        keepAliveTimeout: this.#limits.keepAliveTimeoutMs,
        connectionsCheckingInterval: this.#limits.timeoutCheckEveryMs,
      },
      (req, res) => {
        if (this.#refusedSockets.has(req.socket)) {
          req.socket.destroy();
          return;
        }
        this.#current.set(req.socket, { req });
        this.#unwait(req.socket as Socket);
        this.#handle(req, res).catch((err) => {
          // The body timeout or the client ended it: there is nobody to answer.
          if (req.socket.destroyed) return;
          this.#log.error({ err: describeError(err) }, 'request failed');
          jsonError(res, 500, -32603, 'Internal error');
        });
      },
    );
    this.#http.on('connection', (socket: Socket) => this.#admit(socket));
    this.#http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async listen(): Promise<{ url: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#options.port, this.#options.host, () => {
        this.#http.off('error', reject);
        resolve();
      });
    });
    const { port } = this.#http.address() as AddressInfo;
    const host = this.#options.host.includes(':') ? `[${this.#options.host}]` : this.#options.host;
    const every = Math.max(1_000, Math.min(60_000, Math.floor(this.#options.sessionIdleMs / 2)));
    this.#reaper = this.#options.clock.setInterval(() => this.#reap(), every);
    this.#reaper.unref?.();
    this.#offToolsChanged = this.#options.pipeline.onToolsChanged(() => {
      for (const s of this.#sessions.values()) void s.mcp.server.sendToolListChanged().catch(() => {});
    });
    return { url: `http://${host}:${port}${MCP_PATH}`, port };
  }

  /**
   * First step of shutdown: stop listening and refuse new requests, while the
   * connections of requests already running stay open so their answers (the
   * pipeline's refusals) can still be delivered.
   */
  stopAccepting(): void {
    if (this.#stopped) return;
    if (this.#reaper) this.#options.clock.clearInterval(this.#reaper);
    this.#stopped = new Promise<void>((resolve) => this.#http.close(() => resolve()));
  }

  /**
   * Last step of shutdown, after the pipeline has answered the running calls:
   * lets those answers finish (bounded), closes every session and connection,
   * and writes the auth failures still being counted.
   */
  async close(): Promise<void> {
    this.stopAccepting();
    this.#offToolsChanged?.();
    await this.#drainAnswers();
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) s.closing ??= 'Warden is shutting down';
    await Promise.allSettled(sessions.map((s) => s.mcp.server.close()));
    this.#http.closeAllConnections();
    await this.#stopped;
    await this.flushRefusals();
  }

  /** Writes every counted refusal now (also done by close()); resolves when they are committed. */
  async flushRefusals(): Promise<void> {
    await this.#refusals.flush();
  }

  /**
   * Every new connection. Within the limits it is counted until it closes.
   * At a limit, the oldest connection there that has not yet sent its
   * request headers is answered (429 for one address holding too many, 503
   * when the gateway is full) and closed to make room; when every one there
   * is busy with a real request, the new connection is answered so instead.
   * Either way the refusal is counted in the trail.
   */
  #admit(socket: Socket): void {
    const remote = socket.remoteAddress ?? 'unknown';
    this.#remotes.set(socket, remote);
    const full = this.#connections >= this.#limits.maxConnections;
    const crowded = !full && (this.#perAddress.get(remote) ?? 0) >= this.#limits.maxConnectionsPerAddress;
    if (full || crowded) {
      const victim = full ? first(this.#waiting) : first(this.#waitingByAddress.get(remote));
      const victimRemote = victim ? (this.#remotes.get(victim) ?? 'unknown') : remote;
      const answer: { status: number; statusText: string; message: string; refusal: EdgeRefusal } = full
        ? {
            status: 503,
            statusText: 'Service Unavailable',
            message: `Too many connections: Warden holds at most ${this.#limits.maxConnections} at once; try again shortly`,
            refusal: {
              event: 'request.refused',
              code: 'too_many_connections',
              remote: victimRemote,
              reason: victim
                ? `connection closed to make room: the gateway holds ${this.#limits.maxConnections} connections and this one had not sent its request`
                : `connection refused: the gateway already holds ${this.#limits.maxConnections} connections`,
              limit: { maxConnections: this.#limits.maxConnections },
            },
          }
        : {
            status: 429,
            statusText: 'Too Many Requests',
            message: `Too many connections from ${remote}: at most ${this.#limits.maxConnectionsPerAddress} at once`,
            refusal: {
              event: 'request.refused',
              code: 'too_many_connections_from_address',
              remote,
              reason: victim
                ? `connection closed to make room: ${remote} holds ${this.#limits.maxConnectionsPerAddress} connections and this one had not sent its request`
                : `connection refused: ${remote} already holds ${this.#limits.maxConnectionsPerAddress} connections`,
              limit: { maxConnectionsPerAddress: this.#limits.maxConnectionsPerAddress },
            },
          };
      const refused = victim ?? socket;
      this.#release(refused);
      this.#refusedSockets.add(refused);
      refused.end(rawAnswer(answer.status, answer.statusText, answer.message, { 'Retry-After': '1' }));
      // A client that never closes its side must not keep the socket either.
      refused.setTimeout(1_000, () => refused.destroy());
      void this.#refusals.record(answer.refusal);
      if (!victim) return;
    }
    this.#connections++;
    this.#perAddress.set(remote, (this.#perAddress.get(remote) ?? 0) + 1);
    this.#counted.add(socket);
    this.#waiting.add(socket);
    const mine = this.#waitingByAddress.get(remote) ?? new Set<Socket>();
    this.#waitingByAddress.set(remote, mine);
    mine.add(socket);
    socket.once('close', () => this.#release(socket));
  }

  /** The socket has sent a whole request's headers: it is serving, no longer one to push out. */
  #unwait(socket: Socket): void {
    if (!this.#waiting.delete(socket)) return;
    const remote = this.#remotes.get(socket) ?? 'unknown';
    const mine = this.#waitingByAddress.get(remote);
    mine?.delete(socket);
    if (mine?.size === 0) this.#waitingByAddress.delete(remote);
  }

  /** Stops counting a connection (closed, or pushed out); once only. */
  #release(socket: Socket): void {
    this.#unwait(socket);
    if (!this.#counted.delete(socket)) return;
    this.#connections--;
    const remote = this.#remotes.get(socket) ?? 'unknown';
    const left = (this.#perAddress.get(remote) ?? 1) - 1;
    if (left <= 0) this.#perAddress.delete(remote);
    else this.#perAddress.set(remote, left);
  }

  /**
   * Node found a request it will not hand over: headers too large (431),
   * headers or body not in time (408), or unparseable (400). There is no
   * request object, so the answer goes straight to the socket. A 431 is
   * counted as a failed authentication (the token could not be checked), a
   * timeout as a refused request.
   */
  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const remote = this.#remotes.get(socket) ?? 'unknown';
    const answering = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
    const canAnswer = !this.#refusedSockets.has(socket) && socket.writable && !answering?.headersSent;
    if (err.code === 'ECONNRESET' || !canAnswer) {
      socket.destroy();
      return;
    }
    let answer: string;
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      answer = rawAnswer(
        431,
        'Request Header Fields Too Large',
        'Request headers too large: is the Authorization header a Warden agent token (Bearer wdn_…)?',
      );
      void this.#refusals.record({
        event: 'auth.failed',
        code: 'headers_too_large',
        remote,
        reason: 'request with headers too large to read (an oversized Authorization header?)',
      });
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      const current = this.#current.get(socket);
      const inBody = current !== undefined && !current.req.complete;
      const ms = inBody ? this.#limits.bodyTimeoutMs : this.#limits.headersTimeoutMs;
      answer = rawAnswer(
        408,
        'Request Timeout',
        inBody
          ? `Request timeout: the whole request must arrive within ${ms / 1000} s`
          : `Request timeout: the request headers must arrive within ${ms / 1000} s`,
      );
      void this.#refusals.record({
        event: 'request.refused',
        code: inBody ? 'body_timeout' : 'headers_timeout',
        remote,
        agent: current?.agent,
        reason: inBody
          ? `request body not complete within ${ms / 1000} s`
          : `request headers not complete within ${ms / 1000} s`,
        limit: inBody ? { bodyTimeoutMs: ms } : { headersTimeoutMs: ms },
      });
    } else {
      answer = rawAnswer(400, 'Bad Request', 'Bad Request: not a well-formed HTTP request');
      this.#log.debug({ remote, code: err.code }, 'refused an unparseable request');
    }
    socket.end(answer);
    // Whatever the client still sends is not read: close once the answer is out.
    socket.once('finish', () => socket.destroy());
  }

  async #drainAnswers(): Promise<void> {
    if (this.#answering.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.#answering.size === 0) resolve();
      };
      for (const res of this.#answering) res.once('close', check);
      timer = this.#options.clock.setTimeout(resolve, ANSWER_DRAIN_MS);
      timer.unref?.();
    });
    if (timer) this.#options.clock.clearTimeout(timer);
  }

  #health(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: `${HEALTH_PATH} answers GET only` }));
      return;
    }
    // A replica shutting down is out of the pool at once, before its database or upstreams close.
    const report: HealthReport = this.#stopped
      ? { httpStatus: 503, body: { ...this.#options.health().body, status: 'unavailable', reasons: ['shutting down'] } }
      : this.#options.health();
    if (report.httpStatus !== 200) this.#log.debug({ reasons: report.body.reasons }, 'health check: not ready');
    res.writeHead(report.httpStatus, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : JSON.stringify(report.body));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    // Before the Host check: a load balancer probes each replica by its
    // address, not by the name agents use, and the answer holds nothing an
    // attacker could use (states and upstream names, no URL or credential).
    if (path === HEALTH_PATH) return this.#health(req, res);
    // DNS rebinding: a browser tricked into calling us carries a foreign Host or Origin.
    if (!isAllowedHost(req.headers.host, this.#options.allowedHosts)) {
      this.#log.warn({ host: req.headers.host }, 'refused request with a Host that is not allowed');
      return jsonError(res, 403, -32000, 'Forbidden: Host not allowed');
    }
    const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
    if (!isAllowedOrigin(origin, this.#options.allowedOrigins)) {
      this.#log.warn({ origin }, 'refused request with an Origin that is not allowed');
      return jsonError(res, 403, -32000, 'Forbidden: Origin not allowed');
    }
    if (path !== MCP_PATH) return jsonError(res, 404, -32000, `Not found: the MCP endpoint is ${MCP_PATH}`);
    if (this.#stopped)
      return jsonError(res, 503, -32000, 'Warden is shutting down; try again once it is back', { Connection: 'close' });

    const auth = this.#options.tokens.authenticate(bearer(req));
    if (!auth.ok) {
      const reason = {
        missing: 'no bearer token',
        malformed: 'a malformed bearer token',
        unknown: 'an unknown token',
        revoked: `a revoked token of agent ${auth.agent}`,
      }[auth.reason];
      await this.#authFailed(req, `token_${auth.reason}`, `request with ${reason}`, auth.agent);
      const challenge =
        auth.reason === 'missing'
          ? 'Bearer realm="warden"'
          : 'Bearer realm="warden", error="invalid_token", error_description="The agent token is not valid"';
      return jsonError(
        res,
        401,
        -32001,
        'Unauthorized: a valid Warden agent token is required (Authorization: Bearer wdn_…)',
        { 'WWW-Authenticate': challenge },
      );
    }
    const agent = auth.agent;
    const current = this.#current.get(req.socket);
    if (current?.req === req) current.agent = agent;
    // Travels with each message to its handler (SDK AuthInfo), so a call can
    // check again, before it is forwarded, that this very token still stands.
    // The token's id, never its secret.
    const authInfo: AuthInfo = { token: auth.tokenId, clientId: agent, scopes: [], extra: { tokenId: auth.tokenId } };
    const claimed = req.headers['x-warden-agent'];
    if (typeof claimed === 'string' && claimed !== agent) {
      await this.#authFailed(req, 'agent_mismatch', `token of agent ${agent} presented as agent ${claimed}`, agent);
      return jsonError(res, 403, -32000, `Forbidden: this token does not belong to agent "${claimed}"`);
    }

    const sid = req.headers['mcp-session-id'];
    let body: unknown;
    if (req.method === 'POST') {
      let text: string;
      try {
        text = await readBody(req, this.#options.maxBodyBytes);
      } catch (err) {
        if (err instanceof BodyTooLargeError)
          return jsonError(
            res,
            413,
            -32000,
            `Payload too large: requests are limited to ${this.#options.maxBodyBytes} bytes`,
          );
        throw err;
      }
      try {
        body = JSON.parse(text);
      } catch {
        return jsonError(res, 400, -32700, 'Parse error: the body is not JSON');
      }
      // A key can only be `__proto__` if the text spells it out or uses a \u escape: most bodies skip the walk.
      const protoKey = text.includes('__proto__') || text.includes('\\u') ? findProtoKey(body) : null;
      if (protoKey) {
        const reason = `${protoKey} is a key named "__proto__"; Warden does not accept such keys anywhere in a request`;
        this.#log.warn({ agent, path: protoKey }, 'refused a request carrying a __proto__ key');
        try {
          await this.#options.audit.append({
            event: 'request.refused',
            agent,
            decision: 'deny',
            reason,
            detail: { code: 'prototype_key', path: protoKey },
          });
        } catch (err) {
          this.#log.error({ err: describeError(err) }, 'audit write failed for request.refused');
        }
        return jsonError(res, 400, -32600, `Invalid Request: ${reason}`);
      }
    }

    if (typeof sid === 'string' && sid !== '') {
      const session = this.#sessions.get(sid);
      if (!session) return jsonError(res, 404, -32001, 'Session not found: initialize a new session');
      if (session.agent !== agent) {
        // Someone holds another agent's session id: refuse and make noise.
        await this.#authFailed(
          req,
          'session_mismatch',
          `agent ${agent} presented a session of agent ${session.agent}`,
          agent,
        );
        return jsonError(res, 403, -32000, 'Forbidden: this session belongs to a different agent');
      }
      return this.#serve(session, req, res, body, authInfo);
    }

    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return jsonError(
        res,
        400,
        -32000,
        'Bad Request: send an initialize request first, then the Mcp-Session-Id header it returns',
      );
    }
    if (!this.#makeRoom(agent)) {
      return jsonError(
        res,
        429,
        -32000,
        `Too many sessions: agent ${agent} already has ${this.#options.maxSessionsPerAgent} active sessions`,
      );
    }
    const mcp = new SessionServer(this.#options.pipeline, this.#options.tasks, agent, this.#log, (tokenId) =>
      this.#options.tokens.isLive(tokenId),
    );
    const session: Session = {
      id: '',
      agent,
      transport: undefined as unknown as AgentTransport,
      mcp,
      lastSeen: this.#options.clock.now(),
      active: 0,
    };
    session.transport = new AgentTransport({
      clock: this.#options.clock,
      newSessionId: () => randomUUID(),
      onInitialized: (id) => {
        session.id = id;
        this.#sessions.set(id, session);
        this.#log.info({ agent, session: id }, 'session opened');
      },
      onDeleted: (id) => {
        // DELETE: the agent ended its session on purpose.
        session.closing ??= 'the agent ended its session';
        this.#sessions.delete(id);
      },
    });
    // Set before connect: the SDK chains it ahead of its own close handling,
    // so running calls are abandoned with our reason before the SDK aborts
    // them with none. Every way a session ends (DELETE, idle eviction, making
    // room, shutdown) comes through here.
    session.transport.onclose = () => {
      if (session.id) this.#sessions.delete(session.id);
      const n = mcp.abortCalls(new WardenError('CALL_ABANDONED', session.closing ?? 'the agent session ended'));
      if (n > 0)
        this.#log.info(
          { agent, session: session.id, calls: n, why: session.closing },
          'session ended with calls running: abandoned them',
        );
    };
    await mcp.server.connect(session.transport);
    return this.#serve(session, req, res, body, authInfo);
  }

  #serve(session: Session, req: IncomingMessage, res: ServerResponse, body: unknown, authInfo: AuthInfo): void {
    session.lastSeen = this.#options.clock.now();
    session.active++;
    // The requests this POST carries are answered on its response stream; if
    // that connection goes away first, nobody is left to receive the answers.
    const ids = requestIdsOf(body);
    // A request reusing an id still being answered is refused by the transport; it must not touch that call.
    const tracked = ids.length > 0 && session.transport.clashingId(ids) === undefined;
    if (tracked) {
      session.mcp.expect(ids);
      this.#answering.add(res);
    }
    res.once('close', () => {
      this.#answering.delete(res);
      session.active--;
      session.lastSeen = this.#options.clock.now();
      if (!tracked || res.writableFinished) return;
      const n = session.mcp.abortCalls(
        new WardenError('CALL_ABANDONED', "the agent's connection closed before the answer was sent"),
        ids,
      );
      if (n > 0)
        this.#log.info(
          { agent: session.agent, session: session.id, calls: n },
          'agent connection closed with calls running: abandoned them',
        );
    });
    session.transport.handle(req, res, body, authInfo);
  }

  /** Keeps one agent from piling up sessions: evicts its longest-idle one, or refuses. */
  #makeRoom(agent: string): boolean {
    const mine = [...this.#sessions.values()].filter((s) => s.agent === agent);
    if (mine.length < this.#options.maxSessionsPerAgent) return true;
    const idle = mine.filter((s) => s.active === 0).sort((a, b) => a.lastSeen - b.lastSeen)[0];
    if (!idle) return false;
    this.#closeSession(idle, 'evicted to make room for a new session');
    return true;
  }

  #reap(): void {
    const cutoff = this.#options.clock.now() - this.#options.sessionIdleMs;
    for (const s of [...this.#sessions.values()]) {
      if (s.active === 0 && s.lastSeen < cutoff) this.#closeSession(s, 'idle');
    }
  }

  #closeSession(s: Session, why: string): void {
    this.#sessions.delete(s.id);
    s.closing ??= `Warden closed the agent's session (${why})`;
    this.#log.info({ agent: s.agent, session: s.id, why }, 'session closed');
    void s.mcp.server.close().catch(() => {});
  }

  /** Audits a failed authentication (aggregated per remote, code and window: see RefusalRecorder). */
  async #authFailed(req: IncomingMessage, code: AuthFailureCode, reason: string, agent?: string): Promise<void> {
    await this.#refusals.record({
      event: 'auth.failed',
      code,
      remote: this.#remotes.get(req.socket) ?? req.socket.remoteAddress ?? 'unknown',
      reason,
      agent,
      method: req.method,
      userAgent: typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'].slice(0, 200) : undefined,
    });
  }
}
