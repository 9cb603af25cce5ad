import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Transport as McpTransport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CallToolResultSchema,
  ErrorCode as McpErrorCode,
  ListToolsResultSchema,
  McpError,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Progress,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { REDACTED, redactString } from '../audit/redact.ts';
import type { Logger } from '../logger.ts';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Policy, ServerPolicy, Transport } from '../policy/types.ts';
import { pinHash } from './pins.ts';
import { isNotification } from './jsonrpc.ts';
import { UpstreamHttpTransport } from './upstream-http.ts';
import type { UpstreamReadiness } from './health.ts';

/**
 * Warden's own connections to the upstream MCP servers named in the policy.
 * The agent's identity never reaches this module: stdio children get only a
 * minimal environment plus what the policy configures, and HTTP upstreams get
 * only the policy's headers.
 */

export interface UpstreamTool extends Tool {
  /** Pin hash of this definition (see pins.ts). */
  pinHash: string;
}

export interface Catalogue {
  tools: readonly UpstreamTool[];
  byName: ReadonlyMap<string, UpstreamTool>;
  names: ReadonlySet<string>;
}

export interface UpstreamCallOptions {
  /**
   * The call's controller: its signal cancels the request upstream, and the
   * per-server timeout aborts it (reason: UPSTREAM_TIMEOUT). The caller links
   * its own cancellations into it; one controller a call keeps the hot path
   * free of AbortSignal.any.
   */
  controller?: AbortController | undefined;
  /** Alternatively, a signal to follow (a controller is then made here). */
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: Progress) => void) | undefined;
  /**
   * Runs right before the request is sent, with the catalogue of the live
   * connection (which may be a fresh restart); throw to stop the call. Closes
   * the gap between a policy/pin check and a restart with new definitions.
   */
  verify?: ((catalogue: Catalogue | undefined) => void) | undefined;
}

export interface UpstreamManagerOptions {
  policy: () => Policy;
  logger: Logger;
  clock?: Clock | undefined;
  /** Called (synchronously) with every fresh tool list, before it is used for any decision. */
  onCatalogue?: ((server: string, catalogue: Catalogue) => void) | undefined;
  /** An upstream crashed, failed to start or broke protocol. */
  onFailure?: ((server: string, message: string) => void) | undefined;
  /**
   * Wraps the command of a stdio server whose policy has `sandbox:` (src/sandbox/).
   * Without it such a server is not started at all: a sandbox promised is a sandbox kept, or nothing.
   */
  sandboxStdio?: StdioSandboxer | undefined;
}

/** The command line that starts `command args` sandboxed as the server's policy says. */
export type StdioSandboxer = (
  server: ServerPolicy,
  command: string,
  args: readonly string[],
) => { command: string; args: string[] };

/** The calls the gateway makes on upstreams: what the pipeline depends on. */
export interface Upstreams {
  /** The catalogue of a live connection, without waiting; undefined when not connected. */
  cachedCatalogue(server: string): Catalogue | undefined;
  catalogue(server: string, signal?: AbortSignal): Promise<Catalogue>;
  callTool(
    server: string,
    tool: string,
    args: Record<string, unknown> | undefined,
    options: UpstreamCallOptions,
  ): Promise<CallToolResult>;
}

const CLIENT_INFO = { name: 'warden-gateway', version: '0.1.0' };
// The SDK's per-request timer is replaced by ours; this only keeps its default (60 s) out of the way.
const NO_SDK_TIMEOUT = 2_147_483_647;
const MAX_BACKOFF_MS = 30_000;
/** A background restart waits at least this, so a server that fails at once is not restarted in a tight loop. */
const MIN_RESTART_MS = 100;
const STDERR_LINE_MAX = 2_000;

/** First restart after a crash is immediate (the server was healthy); repeated failures back off. */
export function backoffMs(failures: number): number {
  if (failures <= 1) return 0;
  return Math.min(100 * 2 ** (failures - 2), MAX_BACKOFF_MS);
}

/**
 * The environment a stdio upstream starts with: the SDK adds only a short
 * list of harmless variables (HOME, PATH, USER, …; never NODE_OPTIONS or
 * secrets), and the policy supplies the rest. Nothing of Warden's own
 * environment (Slack tokens, agent tokens) is inherited.
 */
export function upstreamEnv(transport: Extract<Transport, { type: 'stdio' }>): Record<string, string> {
  return { ...transport.env };
}

/** Starting a child (node + a loader, on a busy machine) can take longer than a call may. */
function startTimeoutMs(serverPolicy: ServerPolicy): number {
  return Math.max(serverPolicy.timeoutMs, 15_000);
}

function transportBufferLimit(serverPolicy: ServerPolicy): number {
  // Room for one maximal result plus JSON-RPC framing and escaping; anything
  // larger is refused while reading instead of being buffered whole.
  return Math.max(serverPolicy.maxResultBytes * 2 + 64 * 1024, 1024 * 1024);
}

class Connection {
  client: Client | undefined;
  connecting: Promise<Client> | undefined;
  catalogue: Catalogue | undefined;
  failures = 0;
  retryAt = 0;
  /** Why the last connection ended, when we know better than "connection closed". */
  lastFault: { code: 'UPSTREAM_PAYLOAD_TOO_LARGE' | 'UPSTREAM_PROTOCOL'; message: string } | undefined;
  generation = 0;
  closed = false;
  /** Progress listeners by the progressToken we sent upstream. */
  readonly progress = new Map<string, (p: Progress) => void>();

  constructor(
    readonly name: string,
    readonly transport: Transport,
  ) {}
}

export class UpstreamManager implements Upstreams {
  readonly #opts: UpstreamManagerOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #conns = new Map<string, Connection>();
  #closed = false;
  #progressSeq = 0;
  /**
   * Set by warm(): an upstream that fails or closes is then started again in
   * the background (after its backoff), not only on the next call. A replica
   * whose /healthz says an upstream is down gets no calls from its load
   * balancer, so waiting for a call would keep it out for good.
   */
  #keepWarm = false;
  readonly #restarts = new Map<string, NodeJS.Timeout>();

  constructor(options: UpstreamManagerOptions) {
    this.#opts = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger.child({ module: 'upstream' });
  }

  cachedCatalogue(server: string): Catalogue | undefined {
    const serverPolicy = this.#opts.policy().servers[server];
    const conn = this.#conns.get(server);
    if (!serverPolicy || !conn?.client || conn.transport !== serverPolicy.transport) return undefined;
    return conn.catalogue;
  }

  /** Connects (if needed) and returns the tools the upstream offers. */
  async catalogue(server: string, signal?: AbortSignal): Promise<Catalogue> {
    const conn = await this.#ready(server, signal);
    if (!conn.catalogue) {
      if (!conn.client)
        throw new WardenError('UPSTREAM_UNAVAILABLE', `upstream "${server}" went away while listing its tools`);
      await this.#refresh(conn, conn.client);
    }
    return conn.catalogue!;
  }

  /** Starts every configured upstream in the background; a failure is logged, never thrown. */
  warm(): void {
    this.#keepWarm = true;
    for (const name of Object.keys(this.#opts.policy().servers)) {
      if (!this.#opts.policy().servers[name]!.transport) continue;
      this.catalogue(name).catch((err) =>
        this.#log.warn(
          { server: name, err: describeError(err) },
          'upstream not available at start; will retry on demand',
        ),
      );
    }
  }

  async callTool(
    server: string,
    tool: string,
    args: Record<string, unknown> | undefined,
    options: UpstreamCallOptions,
  ): Promise<CallToolResult> {
    const serverPolicy = this.#server(server);
    const controller = options.controller ?? follow(options.signal);
    const signal = controller.signal;
    const conn = await this.#ready(server, signal);
    const client = conn.client;
    if (!client)
      throw new WardenError(
        'UPSTREAM_UNAVAILABLE',
        `upstream "${server}" went away before ${tool} could be sent; try again`,
      );
    options.verify?.(conn.catalogue);
    const generation = conn.generation;
    // Our own timeout rather than the SDK's, so it can restart on progress
    // that we intercept ourselves (see #interceptProgress).
    const expire = () =>
      controller.abort(
        new WardenError(
          'UPSTREAM_TIMEOUT',
          `upstream "${server}" did not answer ${tool} within ${serverPolicy.timeoutMs} ms (timeoutMs); the call was cancelled`,
        ),
      );
    let timer = this.#clock.setTimeout(expire, serverPolicy.timeoutMs);
    let token: string | undefined;
    if (options.onProgress) {
      const onProgress = options.onProgress;
      token = `warden-${++this.#progressSeq}`;
      conn.progress.set(token, (p) => {
        // A hang is silence; a server that keeps reporting progress is working.
        this.#clock.clearTimeout(timer);
        timer = this.#clock.setTimeout(expire, serverPolicy.timeoutMs);
        onProgress(p);
      });
    }
    let result: CallToolResult;
    try {
      result = await client.request(
        {
          method: 'tools/call',
          params: { name: tool, arguments: args, ...(token ? { _meta: { progressToken: token } } : {}) },
        },
        CallToolResultSchema,
        { signal, timeout: NO_SDK_TIMEOUT },
      );
    } catch (err) {
      throw this.#mapCallError(conn, generation, serverPolicy, tool, err, signal);
    } finally {
      this.#clock.clearTimeout(timer);
      if (token) conn.progress.delete(token);
    }
    const size = Buffer.byteLength(JSON.stringify(result));
    if (size > serverPolicy.maxResultBytes) {
      throw new WardenError(
        'UPSTREAM_PAYLOAD_TOO_LARGE',
        `upstream "${server}" answered ${tool} with ${size} bytes, over this server's limit of ${serverPolicy.maxResultBytes} bytes (maxResultBytes); the result was discarded`,
        { details: { server, tool, size, limit: serverPolicy.maxResultBytes } },
      );
    }
    conn.failures = 0;
    return result;
  }

  /**
   * Each upstream the policy says how to reach, as it stands now (no I/O, for
   * /healthz): connected, connecting (or never asked yet), or down after a failure.
   */
  readiness(): Record<string, UpstreamReadiness> {
    const out: Record<string, UpstreamReadiness> = {};
    for (const [name, serverPolicy] of Object.entries(this.#opts.policy().servers)) {
      if (!serverPolicy.transport) continue;
      const conn = this.#conns.get(name);
      out[name] = conn?.client ? 'ready' : conn?.connecting || !conn || conn.failures === 0 ? 'starting' : 'down';
    }
    return out;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#restarts.values()) this.#clock.clearTimeout(timer);
    this.#restarts.clear();
    const conns = [...this.#conns.values()];
    this.#conns.clear();
    await Promise.allSettled(conns.map((c) => this.#dispose(c)));
  }

  #server(server: string): ServerPolicy {
    const serverPolicy = this.#opts.policy().servers[server];
    if (!serverPolicy) throw new WardenError('NOT_FOUND', `no upstream server "${server}" in the policy`);
    if (!serverPolicy.transport) {
      throw new WardenError(
        'UPSTREAM_UNAVAILABLE',
        `upstream "${server}" has no connection settings in the policy (servers.${server}: command or url)`,
      );
    }
    return serverPolicy;
  }

  async #ready(server: string, signal: AbortSignal | undefined): Promise<Connection> {
    if (this.#closed) throw new WardenError('UPSTREAM_UNAVAILABLE', 'the gateway is shutting down');
    const serverPolicy = this.#server(server);
    let conn = this.#conns.get(server);
    if (
      conn &&
      conn.transport !== serverPolicy.transport &&
      JSON.stringify(conn.transport) !== JSON.stringify(serverPolicy.transport)
    ) {
      // The policy now says to reach this server differently: start over.
      this.#conns.delete(server);
      void this.#dispose(conn);
      conn = undefined;
    }
    if (!conn) {
      conn = new Connection(server, serverPolicy.transport!);
      this.#conns.set(server, conn);
    }
    if (conn.client) return conn;
    if (!conn.connecting) {
      const c = conn;
      // Not tied to this caller's signal: other calls may be waiting on the same start.
      c.connecting = this.#connect(c, serverPolicy).finally(() => {
        c.connecting = undefined;
      });
    }
    await raceSignal(conn.connecting!, signal);
    return conn;
  }

  async #connect(conn: Connection, serverPolicy: ServerPolicy): Promise<Client> {
    const wait = conn.retryAt - this.#clock.now();
    if (wait > 0) {
      if (wait > serverPolicy.timeoutMs) {
        throw new WardenError(
          'UPSTREAM_UNAVAILABLE',
          `upstream "${conn.name}" failed ${conn.failures} times in a row and is backing off; next attempt in ${Math.ceil(wait / 1000)}s${conn.lastFault ? ` (last problem: ${conn.lastFault.message})` : ''}`,
        );
      }
      await this.#sleep(wait);
    }
    const generation = ++conn.generation;
    const client = new Client(CLIENT_INFO, { capabilities: {} });
    const transport = this.#makeTransport(conn, serverPolicy, generation);
    const scrub = scrubber(conn.transport);
    client.onerror = (err) => {
      // Junk on a stdio server's stdout surfaces here one line at a time; the
      // connection survives it, so note it and carry on.
      this.#log.warn({ server: conn.name, err: truncate(scrub(err.message), 300) }, 'upstream protocol noise');
    };
    client.onclose = () => this.#onClosed(conn, generation);
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      if (conn.client === client)
        await this.#refresh(conn, client).catch((err) =>
          this.#log.warn({ server: conn.name, err: describeError(err) }, 'tool list refresh failed'),
        );
    });
    try {
      await client.connect(transport, { timeout: startTimeoutMs(serverPolicy) });
      this.#interceptProgress(conn, transport);
      conn.client = client;
      conn.lastFault = undefined;
      this.#log.info({ server: conn.name, upstream: client.getServerVersion()?.name }, 'upstream connected');
      await this.#refresh(conn, client);
      return client;
    } catch (err) {
      if (conn.client === client) conn.client = undefined;
      conn.failures++;
      conn.retryAt = this.#clock.now() + backoffMs(conn.failures);
      await client.close().catch(() => {});
      // An upstream's error page may echo the credentials Warden sent it.
      const message = `could not start upstream "${conn.name}": ${scrubber(conn.transport)(describeError(err))}`;
      this.#opts.onFailure?.(conn.name, message);
      this.#restartLater(conn);
      throw new WardenError('UPSTREAM_UNAVAILABLE', message, { cause: err });
    }
  }

  #makeTransport(conn: Connection, serverPolicy: ServerPolicy, generation: number): McpTransport {
    const t = conn.transport;
    const limit = transportBufferLimit(serverPolicy);
    const markOversized = () => {
      if (conn.generation === generation) {
        conn.lastFault = {
          code: 'UPSTREAM_PAYLOAD_TOO_LARGE',
          message: `upstream "${conn.name}" sent a message over ${limit} bytes`,
        };
      }
    };
    if (t.type === 'http') {
      // A silent socket is cut only well after the call itself would have timed out (timeoutMs decides).
      return new UpstreamHttpTransport({
        url: new URL(t.url),
        headers: { ...t.headers },
        maxResponseBytes: limit,
        onExceeded: markOversized,
        idleTimeoutMs: Math.max(300_000, serverPolicy.timeoutMs + 5_000),
        clock: this.#clock,
      });
    }
    let argv = { command: t.command, args: [...t.args] };
    if (serverPolicy.sandbox) {
      if (!this.#opts.sandboxStdio)
        throw new WardenError(
          'SANDBOX_UNAVAILABLE',
          `upstream "${conn.name}" has a sandbox in the policy, but this gateway was started without sandbox support; it is not started unsandboxed`,
        );
      argv = this.#opts.sandboxStdio(serverPolicy, t.command, t.args);
    }
    const transport = new StdioClientTransport({
      command: argv.command,
      args: argv.args,
      env: upstreamEnv(t),
      cwd: t.cwd,
      stderr: 'pipe',
      maxBufferSize: limit,
    });
    // The SDK reports an over-long message through onerror before closing;
    // Protocol.connect chains this handler ahead of its own.
    transport.onerror = (err) => {
      if (/ReadBuffer exceeded/.test(err.message)) markOversized();
    };
    let pending = '';
    const scrub = scrubber(t);
    transport.stderr?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      for (let i = pending.indexOf('\n'); i >= 0; i = pending.indexOf('\n')) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        if (line.trim())
          this.#log.info({ server: conn.name, stderr: truncate(scrub(line), STDERR_LINE_MAX) }, 'upstream stderr');
      }
      if (pending.length > STDERR_LINE_MAX) {
        this.#log.info({ server: conn.name, stderr: truncate(scrub(pending), STDERR_LINE_MAX) }, 'upstream stderr');
        pending = '';
      }
    });
    return transport;
  }

  /**
   * The SDK hands notifications to handlers a microtask late but settles
   * responses at once, so a progress report sent just before the result is
   * dropped. Taking our progress notifications off the transport directly,
   * in arrival order, keeps every one.
   */
  #interceptProgress(conn: Connection, transport: McpTransport): void {
    const inner = transport.onmessage;
    transport.onmessage = (message, extra) => {
      if (isNotification(message) && message.method === 'notifications/progress') {
        const params = message.params as ({ progressToken?: unknown } & Progress) | undefined;
        const listener =
          typeof params?.progressToken === 'string' ? conn.progress.get(params.progressToken) : undefined;
        if (listener) {
          const { progressToken: _ignored, ...progress } = params!;
          void _ignored;
          listener(progress as Progress);
          return;
        }
      }
      inner?.(message, extra);
    };
  }

  async #refresh(conn: Connection, client: Client): Promise<void> {
    const serverPolicy = this.#server(conn.name);
    const tools: UpstreamTool[] = [];
    let cursor: string | undefined;
    // Bounded: a server that pages forever is not going to be listed forever.
    for (let page = 0; page < 100; page++) {
      const res = await client.request(
        { method: 'tools/list', params: cursor ? { cursor } : {} },
        ListToolsResultSchema,
        { timeout: startTimeoutMs(serverPolicy) },
      );
      for (const tool of res.tools) tools.push({ ...tool, pinHash: pinHash(tool) });
      cursor = res.nextCursor;
      if (!cursor) break;
    }
    const catalogue: Catalogue = {
      tools,
      byName: new Map(tools.map((t) => [t.name, t])),
      names: new Set(tools.map((t) => t.name)),
    };
    this.#opts.onCatalogue?.(conn.name, catalogue);
    conn.catalogue = catalogue;
  }

  /** After a failure, with warm(): one background start of `conn`'s server once its backoff has passed. */
  #restartLater(conn: Connection): void {
    if (!this.#keepWarm || this.#closed || conn.closed || this.#restarts.has(conn.name)) return;
    const timer = this.#clock.setTimeout(
      () => {
        this.#restarts.delete(conn.name);
        // Whatever connection holds the name now (a policy reload may have replaced this one):
        // one that failed meanwhile found this timer pending and scheduled none of its own.
        const current = this.#conns.get(conn.name);
        if (this.#closed || !current || current.closed || current.client || current.connecting) return;
        // A failure here schedules the next try itself (#connect's catch).
        this.catalogue(conn.name).catch((err) =>
          this.#log.debug({ server: conn.name, err: describeError(err) }, 'background upstream start failed'),
        );
      },
      Math.max(conn.retryAt - this.#clock.now(), MIN_RESTART_MS),
    );
    timer.unref?.();
    this.#restarts.set(conn.name, timer);
  }

  #onClosed(conn: Connection, generation: number): void {
    if (conn.generation !== generation) return;
    const wasConnected = conn.client !== undefined;
    conn.client = undefined;
    if (conn.closed || this.#closed || !wasConnected) return;
    conn.failures++;
    conn.retryAt = this.#clock.now() + backoffMs(conn.failures);
    const message = `upstream "${conn.name}" closed the connection${conn.lastFault ? ` (${conn.lastFault.message})` : ''}; it will be restarted on the next call`;
    this.#log.warn({ server: conn.name, failures: conn.failures }, message);
    this.#opts.onFailure?.(conn.name, message);
    this.#restartLater(conn);
  }

  #mapCallError(
    conn: Connection,
    generation: number,
    serverPolicy: ServerPolicy,
    tool: string,
    err: unknown,
    signal: AbortSignal | undefined,
  ): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof McpError) {
      if (err.code === McpErrorCode.RequestTimeout) {
        return new WardenError(
          'UPSTREAM_TIMEOUT',
          `upstream "${conn.name}" did not answer ${tool} within ${serverPolicy.timeoutMs} ms (timeoutMs); the call was cancelled`,
          {
            details: { server: conn.name, tool, timeoutMs: serverPolicy.timeoutMs },
          },
        );
      }
      if (err.code === McpErrorCode.ConnectionClosed) {
        const fault = conn.generation === generation ? conn.lastFault : undefined;
        if (fault)
          return new WardenError(
            fault.code,
            `${fault.message}; the call was abandoned and the server will be restarted`,
          );
        return new WardenError(
          'UPSTREAM_UNAVAILABLE',
          `upstream "${conn.name}" exited or closed the connection during ${tool}; it will be restarted on the next call`,
        );
      }
      // The upstream answered with a JSON-RPC error: a protocol fault to relay as is.
      return err;
    }
    if (conn.transport.type === 'http') {
      // An HTTP upstream that went away (or lost our session) gets a fresh session next time.
      if (conn.generation === generation && conn.client) {
        const client = conn.client;
        conn.client = undefined;
        conn.failures++;
        conn.retryAt = this.#clock.now() + backoffMs(conn.failures);
        void client.close().catch(() => {});
        this.#restartLater(conn);
      }
      // Only this connection's own fault: one from before a reconnect says nothing about this failure.
      const fault = conn.generation === generation ? conn.lastFault : undefined;
      if (fault) return new WardenError(fault.code, fault.message);
      return new WardenError(
        'UPSTREAM_UNAVAILABLE',
        `upstream "${conn.name}" could not be reached for ${tool}: ${scrubber(conn.transport)(describeError(err))}`,
        { cause: err },
      );
    }
    return new WardenError(
      'UPSTREAM_PROTOCOL',
      `upstream "${conn.name}" gave an unusable answer to ${tool}: ${truncate(describeError(err), 500)}`,
      { cause: err },
    );
  }

  async #dispose(conn: Connection): Promise<void> {
    conn.closed = true;
    const client = conn.client;
    conn.client = undefined;
    if (client) await client.close().catch(() => {});
    else if (conn.connecting) await conn.connecting.then((c) => c.close()).catch(() => {});
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.#clock.setTimeout(resolve, ms));
  }
}

/** A controller that aborts when `signal` does. */
function follow(signal: AbortSignal | undefined): AbortController {
  const c = new AbortController();
  if (signal?.aborted) c.abort(signal.reason);
  else signal?.addEventListener('abort', () => c.abort(signal.reason), { once: true });
  return c;
}

/** Waits for `promise`, or rejects with the signal's reason as soon as it aborts. */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function truncate(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}… (${s.length - max} more chars)` : s;
}

/**
 * What an upstream prints is not ours to trust: it may echo the credentials
 * Warden handed it (resolved `${VAR}` env and header values). Every line is
 * masked for those exact values and for anything shaped like a secret before
 * it reaches a log.
 */
export function scrubber(t: Transport): (text: string) => string {
  const values = Object.values(t.type === 'stdio' ? t.env : t.headers)
    .flatMap((v) => [v, ...v.split(/\s+/)])
    // Very short values ("1", "true") would mask ordinary words; secrets are longer.
    .filter((v) => v.length >= 6)
    .sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const v of values) out = out.split(v).join(REDACTED);
    return redactString(out);
  };
}
