/**
 * Slack's Socket Mode side for tests, on the local Slack Web API server's own
 * port (slack-api-server.ts attaches it): `apps.connections.open` (called with
 * the app-level token, xapp-…) mints a one-time ticket and answers
 * `ws://127.0.0.1:PORT/link?ticket=…`; the WebSocket at /link (package `ws`)
 * accepts that ticket once, sends Slack's `hello` on connect, lets a test push
 * envelopes and records the acks the app sends back.
 *
 *   const slack = await startSlackApiServer({ botToken: 'xoxb-test', appToken: 'xapp-test' });
 *   ... start the Bolt app in Socket Mode with apiUrl: slack.apiUrl ...
 *   await slack.socket.waitForConnection();
 *   const id = slack.socket.push({ type: 'slash_commands', payload: {...}, accepts_response_payload: true });
 *   const ack = await slack.socket.waitForAck(id);      // { envelope_id, payload?, at }
 *
 * Frames as Slack sends them (docs.slack.dev, "Using Socket Mode"):
 *   hello:    { type: 'hello', num_connections, debug_info, connection_info: { app_id } }
 *   envelope: { envelope_id, type: 'slash_commands' | 'interactive' | 'events_api', payload, accepts_response_payload }
 *   ack:      { envelope_id, payload? }  (from the app)
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';

export type EnvelopeType = 'slash_commands' | 'interactive' | 'events_api';

export interface EnvelopeInput {
  type: EnvelopeType;
  payload: Record<string, unknown>;
  accepts_response_payload?: boolean;
  /** Default: a fresh UUID. */
  envelope_id?: string;
}

export interface SocketAck {
  envelope_id: string;
  payload?: Record<string, unknown> | undefined;
  /** The whole frame as the app sent it. */
  raw: Record<string, unknown>;
  at: number;
}

export interface SocketModeServer {
  /** Open WebSocket connections from apps right now. */
  readonly connections: number;
  /** Every frame the app sent that carried an envelope_id. */
  acks: SocketAck[];
  /** Frames sent by apps that were not acks (or not JSON). */
  otherFrames: string[];
  /** Tickets minted by apps.connections.open. */
  readonly ticketsIssued: number;
  waitForConnection(timeoutMs?: number): Promise<void>;
  /** Sends an envelope on every open connection (Slack sends it on one; tests run one app). Returns its envelope_id. */
  push(envelope: EnvelopeInput): string;
  waitForAck(envelopeId: string, timeoutMs?: number): Promise<SocketAck>;
  /** Asks apps to reconnect, as Slack does when it recycles a connection. */
  sendDisconnect(reason?: string): void;
  reset(): void;
  close(): Promise<void>;
}

export interface AttachSocketModeOptions {
  /** The http server the Web API runs on; /link upgrades are taken from it. */
  server: Server;
  /** ws://127.0.0.1:PORT, known once the server listens. */
  wsBase: () => string;
  appId?: string;
  now?: () => number;
}

export interface SocketModeAttachment extends SocketModeServer {
  /** For the Web API's apps.connections.open: a fresh one-time URL. */
  openConnectionUrl(): string;
}

async function poll<T>(what: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = what();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function attachSocketModeServer(opts: AttachSocketModeOptions): SocketModeAttachment {
  const now = opts.now ?? Date.now;
  const appId = opts.appId ?? 'A0WARDEN';
  const wss = new WebSocketServer({ noServer: true });
  const open = new Set<WebSocket>();
  const tickets = new Set<string>();
  let ticketsIssued = 0;
  const acks: SocketAck[] = [];
  const otherFrames: string[] = [];

  wss.on('connection', (ws) => {
    open.add(ws);
    ws.on('close', () => open.delete(ws));
    ws.on('error', () => open.delete(ws));
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      let frame: unknown;
      try {
        frame = JSON.parse(text);
      } catch {
        otherFrames.push(text);
        return;
      }
      if (frame && typeof frame === 'object' && typeof (frame as { envelope_id?: unknown }).envelope_id === 'string') {
        const f = frame as { envelope_id: string; payload?: Record<string, unknown> };
        acks.push({ envelope_id: f.envelope_id, payload: f.payload, raw: frame as Record<string, unknown>, at: now() });
      } else {
        otherFrames.push(text);
      }
    });
    ws.send(
      JSON.stringify({
        type: 'hello',
        num_connections: open.size,
        debug_info: { host: 'applink-local', build_number: 1, approximate_connection_time: 18060 },
        connection_info: { app_id: appId },
      }),
    );
  });

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const ticket = url.searchParams.get('ticket');
    // Like Slack's: the URL from apps.connections.open works once.
    if (url.pathname !== '/link' || ticket === null || !tickets.delete(ticket)) {
      socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  };
  opts.server.on('upgrade', onUpgrade);

  return {
    get connections() {
      return open.size;
    },
    acks,
    otherFrames,
    get ticketsIssued() {
      return ticketsIssued;
    },
    openConnectionUrl() {
      const ticket = randomUUID();
      tickets.add(ticket);
      ticketsIssued += 1;
      return `${opts.wsBase()}/link?ticket=${ticket}`;
    },
    waitForConnection(timeoutMs = 5000) {
      return poll(
        () => (open.size > 0 ? true : undefined),
        timeoutMs,
        () => `no Socket Mode connection within ${timeoutMs} ms (tickets issued: ${ticketsIssued})`,
      ).then(() => undefined);
    },
    push(envelope) {
      if (open.size === 0) throw new Error('no Socket Mode connection to push an envelope on');
      const envelope_id = envelope.envelope_id ?? randomUUID();
      const frame = JSON.stringify({
        envelope_id,
        type: envelope.type,
        payload: envelope.payload,
        accepts_response_payload: envelope.accepts_response_payload ?? false,
      });
      for (const ws of open) ws.send(frame);
      return envelope_id;
    },
    waitForAck(envelopeId, timeoutMs = 5000) {
      return poll(
        () => acks.find((a) => a.envelope_id === envelopeId),
        timeoutMs,
        () =>
          `no ack for envelope ${envelopeId} within ${timeoutMs} ms (acks so far: ${acks.map((a) => a.envelope_id).join(', ') || 'none'})`,
      );
    },
    sendDisconnect(reason = 'refresh_requested') {
      for (const ws of open)
        ws.send(JSON.stringify({ type: 'disconnect', reason, debug_info: { host: 'applink-local' } }));
    },
    reset() {
      acks.length = 0;
      otherFrames.length = 0;
    },
    close() {
      opts.server.off('upgrade', onUpgrade);
      // Upgraded sockets are no longer the http server's: end them here.
      for (const ws of open) ws.terminate();
      open.clear();
      return new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}
