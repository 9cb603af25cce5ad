import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { isInitializeRequest, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { AuditSink, RefusalCode } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { AlertSink } from '../control/types.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GatewayPipeline } from './pipeline.ts';
import { AgentTransport } from './agent-transport.ts';
import { findProtoKey } from './arguments.ts';
import { SessionServer } from './session.ts';
import type { TokenStore } from './tokens.ts';

/**
 * The HTTP edge: Host/Origin checks (DNS-rebinding protection), bearer-token
 * authentication, and sessions bound to the agent that opened them. The
 * transport's part of MCP is AgentTransport's; the rest is the SDK's Server.
 */

export interface HttpEdgeOptions {
  pipeline: GatewayPipeline;
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
}

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

/** The failed authentications of one (remote, code) pair within one window. */
interface AuthFailureWindow {
  key: string;
  remote: string;
  code: RefusalCode;
  openedAt: number;
  /** Failures after the first one (which was audited on its own). */
  more: number;
  agents: Set<string>;
  timer: NodeJS.Timeout;
}

export const MCP_PATH = '/mcp';
/**
 * Failed authentications are audited per (remote address, reason code) and
 * window: the first at once, the rest of the window as one counted row when
 * it closes. Unauthenticated requests cost a caller nothing, so without this
 * anyone who can reach the port could grow the audit trail without bound.
 */
export const AUTH_FAILURE_WINDOW_MS = 60_000;
/** Open windows beyond this are written out early rather than held in memory. */
const MAX_AUTH_FAILURE_WINDOWS = 1_000;
/** Agents named in one aggregated row, at most. */
const MAX_AUTH_FAILURE_AGENTS = 20;
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

class BodyTooLarge extends Error {}

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
    if (Number.isFinite(declared) && declared > limit) return reject(new BodyTooLarge());
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new BodyTooLarge());
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export class HttpEdge {
  readonly #o: HttpEdgeOptions;
  readonly #log: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #authWindows = new Map<string, AuthFailureWindow>();
  /** Audit writes of aggregated auth failures still in progress: close() waits for them. */
  readonly #authWrites = new Set<Promise<void>>();
  /** Responses that carry answers to requests (not notification streams): close() lets them finish. */
  readonly #answering = new Set<ServerResponse>();
  readonly #http: HttpServer;
  #reaper: NodeJS.Timeout | undefined;
  #offToolsChanged: (() => void) | undefined;
  /** Set once shutdown starts: no new connections, and new requests get 503. */
  #stopped: Promise<void> | undefined;

  constructor(options: HttpEdgeOptions) {
    this.#o = options;
    this.#log = options.logger.child({ module: 'gateway-http' });
    this.#http = createServer((req, res) => {
      this.#handle(req, res).catch((err) => {
        this.#log.error({ err: describeError(err) }, 'request failed');
        jsonError(res, 500, -32603, 'Internal error');
      });
    });
    // Long approval waits keep a request open; Node's default 5-minute request timeout would cut them.
    this.#http.requestTimeout = 0;
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  async listen(): Promise<{ url: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.#http.once('error', reject);
      this.#http.listen(this.#o.port, this.#o.host, () => {
        this.#http.off('error', reject);
        resolve();
      });
    });
    const { port } = this.#http.address() as AddressInfo;
    const host = this.#o.host.includes(':') ? `[${this.#o.host}]` : this.#o.host;
    const every = Math.max(1_000, Math.min(60_000, Math.floor(this.#o.sessionIdleMs / 2)));
    this.#reaper = this.#o.clock.setInterval(() => this.#reap(), every);
    this.#reaper.unref?.();
    this.#offToolsChanged = this.#o.pipeline.onToolsChanged(() => {
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
    if (this.#reaper) this.#o.clock.clearInterval(this.#reaper);
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
    await this.flushAuthFailures();
  }

  /** Writes every counted auth failure now (also done by close()); resolves when they are committed. */
  async flushAuthFailures(): Promise<void> {
    for (const w of [...this.#authWindows.values()]) this.#closeAuthWindow(w);
    await Promise.allSettled([...this.#authWrites]);
  }

  async #drainAnswers(): Promise<void> {
    if (this.#answering.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      const check = () => {
        if (this.#answering.size === 0) resolve();
      };
      for (const res of this.#answering) res.once('close', check);
      timer = this.#o.clock.setTimeout(resolve, ANSWER_DRAIN_MS);
      timer.unref?.();
    });
    if (timer) this.#o.clock.clearTimeout(timer);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    // DNS rebinding: a browser tricked into calling us carries a foreign Host or Origin.
    if (!isAllowedHost(req.headers.host, this.#o.allowedHosts)) {
      this.#log.warn({ host: req.headers.host }, 'refused request with a Host that is not allowed');
      return jsonError(res, 403, -32000, 'Forbidden: Host not allowed');
    }
    const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined;
    if (!isAllowedOrigin(origin, this.#o.allowedOrigins)) {
      this.#log.warn({ origin }, 'refused request with an Origin that is not allowed');
      return jsonError(res, 403, -32000, 'Forbidden: Origin not allowed');
    }
    if (path !== MCP_PATH) return jsonError(res, 404, -32000, `Not found: the MCP endpoint is ${MCP_PATH}`);
    if (this.#stopped)
      return jsonError(res, 503, -32000, 'Warden is shutting down; try again once it is back', { Connection: 'close' });

    const auth = this.#o.tokens.authenticate(bearer(req));
    if (!auth.ok) {
      const reason = {
        missing: 'no bearer token',
        malformed: 'a malformed bearer token',
        unknown: 'an unknown token',
        revoked: 'a revoked token',
      }[auth.reason];
      await this.#authFailed(req, `token_${auth.reason}`, `request with ${reason}`);
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
        text = await readBody(req, this.#o.maxBodyBytes);
      } catch (err) {
        if (err instanceof BodyTooLarge)
          return jsonError(
            res,
            413,
            -32000,
            `Payload too large: requests are limited to ${this.#o.maxBodyBytes} bytes`,
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
          await this.#o.audit.append({
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
        `Too many sessions: agent ${agent} already has ${this.#o.maxSessionsPerAgent} active sessions`,
      );
    }
    const mcp = new SessionServer(this.#o.pipeline, agent, this.#log, (tokenId) => this.#o.tokens.isLive(tokenId));
    const session: Session = {
      id: '',
      agent,
      transport: undefined as unknown as AgentTransport,
      mcp,
      lastSeen: this.#o.clock.now(),
      active: 0,
    };
    session.transport = new AgentTransport({
      clock: this.#o.clock,
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
    session.lastSeen = this.#o.clock.now();
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
      session.lastSeen = this.#o.clock.now();
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
    if (mine.length < this.#o.maxSessionsPerAgent) return true;
    const idle = mine.filter((s) => s.active === 0).sort((a, b) => a.lastSeen - b.lastSeen)[0];
    if (!idle) return false;
    this.#closeSession(idle, 'evicted to make room for a new session');
    return true;
  }

  #reap(): void {
    const cutoff = this.#o.clock.now() - this.#o.sessionIdleMs;
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

  /**
   * Audits a refused request: the first failure of its (remote, code) pair in
   * a window at once, with an alert; later ones in that window are counted
   * and written as one row when the window closes. The counts add up to every
   * refused request.
   */
  async #authFailed(req: IncomingMessage, code: RefusalCode, reason: string, agent?: string): Promise<void> {
    const remote = req.socket.remoteAddress ?? 'unknown';
    const now = this.#o.clock.now();
    const key = `${remote}|${code}`;
    let w = this.#authWindows.get(key);
    // Its timer is late (a busy loop, or a clock the test moves): close it here.
    if (w && now - w.openedAt >= AUTH_FAILURE_WINDOW_MS) {
      this.#closeAuthWindow(w);
      w = undefined;
    }
    if (w) {
      w.more++;
      if (agent && w.agents.size < MAX_AUTH_FAILURE_AGENTS) w.agents.add(agent);
      return;
    }
    if (this.#authWindows.size >= MAX_AUTH_FAILURE_WINDOWS)
      for (const old of [...this.#authWindows.values()]) this.#closeAuthWindow(old);
    const opened: AuthFailureWindow = {
      key,
      remote,
      code,
      openedAt: now,
      more: 0,
      agents: new Set(),
      timer: undefined as unknown as NodeJS.Timeout,
    };
    opened.timer = this.#o.clock.setTimeout(() => this.#closeAuthWindow(opened), AUTH_FAILURE_WINDOW_MS);
    opened.timer.unref?.();
    this.#authWindows.set(key, opened);

    const userAgent =
      typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'].slice(0, 200) : undefined;
    try {
      await this.#o.audit.append({
        event: 'auth.failed',
        agent,
        decision: 'deny',
        reason,
        detail: { code, remote, method: req.method, userAgent, count: 1 },
      });
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'audit write failed for auth.failed');
    }
    try {
      this.#o.alerts.alert({
        kind: 'auth_failed',
        severity: 'warning',
        agent,
        text: `Warden refused a gateway request from ${remote}: ${reason}`,
        detail: { code, remote },
      });
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'alert sink threw');
    }
  }

  /** Ends a window: writes one row counting the failures after its first, if there were any. */
  #closeAuthWindow(w: AuthFailureWindow): void {
    this.#o.clock.clearTimeout(w.timer);
    if (this.#authWindows.get(w.key) === w) this.#authWindows.delete(w.key);
    if (w.more === 0) return;
    const agents = [...w.agents];
    const to = Math.min(this.#o.clock.now(), w.openedAt + AUTH_FAILURE_WINDOW_MS);
    const write = this.#o.audit
      .append({
        event: 'auth.failed',
        agent: agents.length === 1 ? agents[0] : undefined,
        decision: 'deny',
        reason: `${w.more} more ${w.more === 1 ? 'request' : 'requests'} from ${w.remote} refused for the same cause (${w.code}) within ${AUTH_FAILURE_WINDOW_MS / 1000} s of the first`,
        detail: {
          code: w.code,
          remote: w.remote,
          count: w.more,
          window: { from: w.openedAt, to, ms: AUTH_FAILURE_WINDOW_MS },
          ...(agents.length > 1 ? { agents } : {}),
        },
      })
      .then(
        () => undefined,
        (err: unknown) =>
          this.#log.error(
            { err: describeError(err), count: w.more, code: w.code },
            'audit write failed for aggregated auth.failed',
          ),
      );
    this.#authWrites.add(write);
    void write.finally(() => this.#authWrites.delete(write));
  }
}
