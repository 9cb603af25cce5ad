import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, isJSONRPCRequest, type RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { AlertSink } from '../control/types.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { GatewayPipeline } from './pipeline.ts';
import { findProtoKey } from './arguments.ts';
import { SessionServer } from './session.ts';
import type { TokenStore } from './tokens.ts';

/**
 * The HTTP edge: Host/Origin checks (DNS-rebinding protection), bearer-token
 * authentication, and sessions bound to the agent that opened them. Everything
 * MCP is left to the SDK's StreamableHTTPServerTransport.
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
  transport: StreamableHTTPServerTransport;
  mcp: SessionServer;
  lastSeen: number;
  active: number;
  /** Why the session is ending, once we know: the reason its running calls are abandoned with. */
  closing?: string | undefined;
}

export const MCP_PATH = '/mcp';
const AUTH_ALERT_EVERY_MS = 60_000;
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

function jsonError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

class BodyTooLarge extends Error {}

/** The JSON-RPC request ids in a POST body (one message or a batch). */
function requestIdsOf(body: unknown): RequestId[] {
  const messages = Array.isArray(body) ? body : [body];
  const ids: RequestId[] = [];
  for (const m of messages) if (isJSONRPCRequest(m)) ids.push(m.id);
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
  readonly #lastAuthAlert = new Map<string, number>();
  readonly #http: HttpServer;
  #reaper: NodeJS.Timeout | undefined;
  #offToolsChanged: (() => void) | undefined;

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

  async close(): Promise<void> {
    if (this.#reaper) this.#o.clock.clearInterval(this.#reaper);
    this.#offToolsChanged?.();
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const s of sessions) s.closing ??= 'Warden is shutting down';
    await Promise.allSettled(sessions.map((s) => s.mcp.server.close()));
    await new Promise<void>((resolve) => {
      this.#http.close(() => resolve());
      this.#http.closeAllConnections();
    });
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

    const auth = this.#o.tokens.authenticate(bearer(req));
    if (!auth.ok) {
      const reason = {
        missing: 'no bearer token',
        malformed: 'a malformed bearer token',
        unknown: 'an unknown token',
        revoked: 'a revoked token',
      }[auth.reason];
      await this.#authFailed(req, auth.reason, `request with ${reason}`);
      const challenge = auth.reason === 'missing' ? 'Bearer realm="warden"' : 'Bearer realm="warden", error="invalid_token", error_description="The agent token is not valid"';
      return jsonError(res, 401, -32001, 'Unauthorized: a valid Warden agent token is required (Authorization: Bearer wdn_…)', { 'WWW-Authenticate': challenge });
    }
    const agent = auth.agent;
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
        if (err instanceof BodyTooLarge) return jsonError(res, 413, -32000, `Payload too large: requests are limited to ${this.#o.maxBodyBytes} bytes`);
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
          await this.#o.audit.append({ event: 'request.refused', agent, decision: 'deny', reason, detail: { code: 'prototype_key', path: protoKey } });
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
        await this.#authFailed(req, 'session_mismatch', `agent ${agent} presented a session of agent ${session.agent}`, agent);
        return jsonError(res, 403, -32000, 'Forbidden: this session belongs to a different agent');
      }
      return this.#serve(session, req, res, body);
    }

    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      return jsonError(res, 400, -32000, 'Bad Request: send an initialize request first, then the Mcp-Session-Id header it returns');
    }
    if (!this.#makeRoom(agent)) {
      return jsonError(res, 429, -32000, `Too many sessions: agent ${agent} already has ${this.#o.maxSessionsPerAgent} active sessions`);
    }
    const mcp = new SessionServer(this.#o.pipeline, agent, this.#log);
    const session: Session = { id: '', agent, transport: undefined as unknown as StreamableHTTPServerTransport, mcp, lastSeen: this.#o.clock.now(), active: 0 };
    session.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session.id = id;
        this.#sessions.set(id, session);
        this.#log.info({ agent, session: id }, 'session opened');
      },
      onsessionclosed: (id) => {
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
      if (n > 0) this.#log.info({ agent, session: session.id, calls: n, why: session.closing }, 'session ended with calls running: abandoned them');
    };
    await mcp.server.connect(session.transport);
    return this.#serve(session, req, res, body);
  }

  async #serve(session: Session, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    session.lastSeen = this.#o.clock.now();
    session.active++;
    // The requests this POST carries are answered on its response stream; if
    // that connection goes away first, nobody is left to receive the answers.
    const ids = requestIdsOf(body);
    if (ids.length > 0) session.mcp.expect(ids);
    res.once('close', () => {
      session.active--;
      session.lastSeen = this.#o.clock.now();
      if (ids.length === 0 || res.writableFinished) return;
      const n = session.mcp.abortCalls(new WardenError('CALL_ABANDONED', "the agent's connection closed before the answer was sent"), ids);
      if (n > 0) this.#log.info({ agent: session.agent, session: session.id, calls: n }, 'agent connection closed with calls running: abandoned them');
    });
    await session.transport.handleRequest(req, res, body);
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

  async #authFailed(req: IncomingMessage, code: string, reason: string, agent?: string): Promise<void> {
    const remote = req.socket.remoteAddress ?? 'unknown';
    const userAgent = typeof req.headers['user-agent'] === 'string' ? req.headers['user-agent'].slice(0, 200) : undefined;
    try {
      await this.#o.audit.append({
        event: 'auth.failed',
        agent,
        decision: 'deny',
        reason,
        detail: { code, remote, method: req.method, userAgent },
      });
    } catch (err) {
      this.#log.error({ err: describeError(err) }, 'audit write failed for auth.failed');
    }
    const key = `${remote}|${code}`;
    const now = this.#o.clock.now();
    if (now - (this.#lastAuthAlert.get(key) ?? -Infinity) < AUTH_ALERT_EVERY_MS) return;
    if (this.#lastAuthAlert.size > 1_000) this.#lastAuthAlert.clear();
    this.#lastAuthAlert.set(key, now);
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
}
