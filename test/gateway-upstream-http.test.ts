import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolResultSchema,
  ToolListChangedNotificationSchema,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { systemClock } from '../src/clock.ts';
import { STREAM_LINGER_MS, UpstreamHttpTransport, type UpstreamHttpOptions } from '../src/gateway/upstream-http.ts';
import { startEchoHttpServer, type EchoHttpServer } from './fixtures/echo-http-server.ts';
import { startHarness, textOf, waitFor } from './support/gateway-harness.ts';
import { ManualClock } from './support/manual-clock.ts';

/**
 * Warden's client side of Streamable HTTP, against real MCP servers on
 * loopback (the SDK's own server transport, stateful and streaming; the
 * stateless JSON echo fixture) and against raw HTTP servers that misbehave.
 */

interface Upstream {
  url: string;
  seen: { method: string; headers: IncomingHttpHeaders }[];
  servers: McpServer[];
  /** Drops every connection (a crash or a proxy cut); the server keeps listening. */
  cut(): void;
  close(): Promise<void>;
}

/** A stateful upstream that answers on SSE streams and offers the GET stream. */
async function startStreamingUpstream(): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const servers: McpServer[] = [];
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http = createServer((req, res) => {
    seen.push({ method: req.method!, headers: req.headers });
    const sid = req.headers['mcp-session-id'];
    const known = typeof sid === 'string' ? sessions.get(sid) : undefined;
    if (known) return void known.handleRequest(req, res);
    const server = new McpServer({ name: 'streaming', version: '1.0.0' });
    server.registerTool('echo', { inputSchema: { message: z.string() } }, async ({ message }) => ({
      content: [{ type: 'text', text: message }],
    }));
    server.registerTool('steps', {}, async (extra) => {
      const token = extra._meta?.progressToken;
      // Spaced out like real work: progress that comes before Warden has made the call's record
      // durable is dropped (it is advisory), and an SDK client drops progress that arrives right
      // with the answer.
      for (let i = 1; i <= 2 && token !== undefined; i++) {
        await new Promise((r) => setTimeout(r, 30));
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, progress: i, total: 2 },
        });
      }
      await new Promise((r) => setTimeout(r, 30));
      return { content: [{ type: 'text', text: 'stepped' }] };
    });
    server.registerTool('big', {}, async () => ({ content: [{ type: 'text', text: 'x'.repeat(1_200_000) }] }));
    server.registerTool('hang', {}, () => new Promise(() => {}));
    servers.push(server);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, transport),
    });
    void server.connect(transport).then(() => transport.handleRequest(req, res));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    seen,
    servers,
    cut: () => http.closeAllConnections(),
    close: async () => {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

/** Raw answers, by path: what a broken or hostile upstream might send. */
let raw: HttpServer;
let rawBase: string;
const rawRoutes: Record<string, (res: ServerResponse) => void> = {
  '/500': (res) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('boom'),
  '/text': (res) => res.writeHead(200, { 'Content-Type': 'text/plain' }).end('hello'),
  '/not-jsonrpc': (res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"hello":"world"}'),
  '/big-json': (res) =>
    res
      .writeHead(200, { 'Content-Type': 'application/json' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { pad: 'x'.repeat(10_000) } })),
  '/big-sse': (res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write(
      `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { pad: 'x'.repeat(10_000) } })}\n\n`,
    );
  },
  '/hang': () => {},
  '/204': (res) => res.writeHead(204).end(),
  '/moved': (res) => res.writeHead(307, { Location: '/answer' }).end(),
  '/moved-away': (res) => res.writeHead(307, { Location: 'http://example.invalid/mcp' }).end(),
  '/answer': (res) =>
    res
      .writeHead(200, { 'Content-Type': 'application/json' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [] } })),
  // An id for resumption with no data, an event of another name, then the answer.
  '/primed': (res) =>
    res
      .writeHead(200, { 'Content-Type': 'text/event-stream' })
      .end(
        `id: p1\ndata: \n\nevent: other\ndata: {"jsonrpc":"2.0","id":1,"result":{"wrong":true}}\n\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [] } })}\n\n`,
      ),
  // Progress, then the stream ends without the answer.
  '/cut': (res) =>
    res
      .writeHead(200, { 'Content-Type': 'text/event-stream' })
      .end(
        `data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 't', progress: 1 } })}\n\n`,
      ),
  '/invalid-event': (res) =>
    res.writeHead(200, { 'Content-Type': 'text/event-stream' }).write('data: {"jsonrpc":"2.0","id":1}\n\n'),
  // The answer, then the stream is held open.
  '/linger': (res) => {
    res
      .writeHead(200, { 'Content-Type': 'text/event-stream' })
      .write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [] } })}\n\n`);
    res.on('close', () => lingerClosed++);
  },
};
let lingerClosed = 0;
/** /gets: notifications are accepted; the first two GET streams open and end at once, later GETs fail. */
let gets = 0;

let echo: EchoHttpServer;
let streaming: Upstream;

beforeAll(async () => {
  echo = await startEchoHttpServer();
  streaming = await startStreamingUpstream();
  raw = createServer((req, res) => {
    req.resume();
    if (req.url === '/401-echo')
      return void res
        .writeHead(401, { 'Content-Type': 'text/plain' })
        .end(`denied for ${String(req.headers.authorization)}`);
    if (req.url === '/gets') {
      if (req.method === 'POST') return void res.writeHead(202).end();
      if (++gets <= 2) return void res.writeHead(200, { 'Content-Type': 'text/event-stream' }).end();
      return void res.writeHead(gets === 3 ? 500 : 404).end();
    }
    (rawRoutes[req.url ?? ''] ?? ((r: ServerResponse) => r.writeHead(404).end()))(res);
  });
  await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
  rawBase = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await echo.close();
  await streaming.close();
  raw.closeAllConnections();
  await new Promise((resolve) => raw.close(resolve));
});

function transportTo(url: string, options: Partial<UpstreamHttpOptions> = {}): UpstreamHttpTransport {
  return new UpstreamHttpTransport({
    url: new URL(url),
    headers: { 'X-Upstream-Key': 'k1' },
    maxResponseBytes: 4_096,
    idleTimeoutMs: 60_000,
    clock: systemClock,
    ...options,
  });
}

const REQUEST: JSONRPCMessage = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} };

describe('UpstreamHttpTransport', () => {
  it('works with a stateful, streaming upstream: its session, progress and answers from the stream, list_changed on the GET stream, its credentials on every request', async () => {
    const transport = transportTo(streaming.url);
    const client = new Client({ name: 'warden', version: '1' });
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => void changed++);
    await client.connect(transport);
    try {
      expect(transport.sessionId).toMatch(/^[0-9a-f-]{36}$/);
      expect(await client.callTool({ name: 'echo', arguments: { message: 'hi' } })).toEqual({
        content: [{ type: 'text', text: 'hi' }],
      });
      // What reaches the client, in order (the SDK's Client itself hands progress on a microtask
      // late, after a result that came right behind it; the gateway reads it off the transport).
      const arrived: string[] = [];
      const inner = transport.onmessage!;
      transport.onmessage = (m, extra) => {
        arrived.push(
          'method' in m ? `${m.method} ${String((m.params as { progress?: number } | undefined)?.progress)}` : 'answer',
        );
        inner(m, extra);
      };
      const stepped = await client.callTool({ name: 'steps', arguments: {} }, CallToolResultSchema, {
        onprogress: () => {},
      });
      expect(stepped).toEqual({ content: [{ type: 'text', text: 'stepped' }] });
      expect(arrived).toEqual(['notifications/progress 1', 'notifications/progress 2', 'answer']);
      transport.onmessage = inner;
      // The GET stream opens in the background once initialization is done.
      await waitFor(() => streaming.seen.some((r) => r.method === 'GET'), 'the GET stream');
      await waitFor(async () => {
        await streaming.servers.at(-1)!.sendToolListChanged();
        return changed > 0;
      }, 'list_changed on the GET stream');
      const mine = streaming.seen.filter((r) => r.headers['x-upstream-key'] !== undefined);
      expect(mine.length).toBe(streaming.seen.length);
      // After initialization, every request carries the session and the protocol version.
      for (const r of mine.slice(1)) {
        expect(r.headers['mcp-session-id']).toBe(transport.sessionId);
        expect(r.headers['mcp-protocol-version']).toBeTruthy();
      }
    } finally {
      await client.close();
    }
  });

  it('works with a stateless JSON upstream that offers no GET stream, without complaint', async () => {
    const transport = transportTo(echo.url);
    const errors: Error[] = [];
    const client = new Client({ name: 'warden', version: '1' });
    await client.connect(transport);
    transport.onerror = (e) => void errors.push(e);
    try {
      expect(await client.callTool({ name: 'echo', arguments: { message: 'plain' } })).toEqual({
        content: [{ type: 'text', text: 'plain' }],
      });
      await waitFor(() => echo.seenHeaders.length >= 4, 'the GET attempt');
      await new Promise((r) => setTimeout(r, 50));
      expect(errors).toEqual([]);
    } finally {
      await client.close();
    }
  });

  it('turns a broken upstream into a rejection or an error report, never a crash', async () => {
    const send = (path: string, options: Partial<UpstreamHttpOptions> = {}) => {
      const t = transportTo(`${rawBase}${path}`, options);
      return { t, sent: t.send(REQUEST) };
    };
    await expect(send('/500').sent).rejects.toThrow('upstream answered HTTP 500: boom');
    await expect(send('/text').sent).rejects.toThrow('content type text/plain');
    await expect(send('/not-jsonrpc').sent).rejects.toThrow('not a JSON-RPC message');
    let exceeded = 0;
    await expect(send('/big-json', { onExceeded: () => void exceeded++ }).sent).rejects.toThrow(
      'upstream response exceeded 4096 bytes',
    );
    expect(exceeded).toBe(1);
    // A stream is not awaited by anyone: its problems go to onerror.
    const stream = send('/big-sse', { onExceeded: () => void exceeded++ });
    const streamErrors: Error[] = [];
    stream.t.onerror = (e) => void streamErrors.push(e);
    await stream.sent;
    await waitFor(() => streamErrors.length > 0, 'the oversized stream to be cut');
    // Cut for the oversized event, it ends without the answer: the transport says so and closes.
    await waitFor(() => streamErrors.length === 2, 'both reports');
    expect(streamErrors.map((e) => e.message).sort()).toEqual([
      'upstream ended its event stream before answering',
      'upstream sent an event over 4096 bytes',
    ]);
    expect(exceeded).toBe(2);
    await expect(send('/hang', { idleTimeoutMs: 100 }).sent).rejects.toThrow('upstream sent nothing for 100 ms');
    await stream.t.close();
  });

  it('re-opens a GET stream that drops, backing off while it keeps failing, and stops for good when the server refuses it', async () => {
    const clock = new ManualClock();
    const t = transportTo(`${rawBase}/gets`, { clock });
    const errors: string[] = [];
    t.onerror = (e) => void errors.push(e.message);
    await t.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    // Streams that end at once, empty, do not count as healthy: 1 s, then 1.5 s, then 2.25 s.
    await waitFor(() => gets === 1 && clock.pending === 1, 'the first GET to end and a retry to be planned');
    await clock.tick(999);
    expect(gets).toBe(1);
    await clock.tick(1);
    await waitFor(() => gets === 2 && clock.pending === 1, 'the second GET');
    await clock.tick(1_500);
    await waitFor(() => gets === 3 && clock.pending === 1, 'the third GET, which fails (500)');
    await clock.tick(2_250);
    await waitFor(() => gets === 4 && errors.length === 2, 'the fourth GET, refused (404)');
    expect(clock.pending).toBe(0);
    expect(errors).toEqual([
      'upstream could not open its event stream (HTTP 500)',
      'upstream refused its event stream (HTTP 404); it is not asked again in this session',
    ]);
    await t.close();
  });

  it('takes any 2xx for a notification, follows a redirect within its origin only, and skips events that carry no message', async () => {
    await expect(
      transportTo(`${rawBase}/204`).send({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    ).resolves.toBeUndefined();
    const got: JSONRPCMessage[] = [];
    const moved = transportTo(`${rawBase}/moved`);
    moved.onmessage = (m) => void got.push(m);
    await moved.send(REQUEST);
    expect(got).toEqual([{ jsonrpc: '2.0', id: 1, result: { tools: [] } }]);
    await expect(transportTo(`${rawBase}/moved-away`).send(REQUEST)).rejects.toThrow(
      'redirected to http://example.invalid/mcp, which is not followed',
    );
    const primed = transportTo(`${rawBase}/primed`);
    const errors: Error[] = [];
    primed.onerror = (e) => void errors.push(e);
    primed.onmessage = (m) => void got.push(m);
    await primed.send(REQUEST);
    await waitFor(() => got.length === 2, 'the answer on the stream');
    expect(got[1]).toEqual({ jsonrpc: '2.0', id: 1, result: { tools: [] } });
    expect(errors).toEqual([]);
    const invalid = transportTo(`${rawBase}/invalid-event`);
    invalid.onerror = (e) => void errors.push(e);
    await invalid.send(REQUEST);
    await waitFor(() => errors.length === 1, 'the invalid event to be reported');
    expect(errors[0]!.message).toBe('upstream sent an event that is not a JSON-RPC message');
    await invalid.close();
  });

  it('fails at once, and closes, when a stream ends before answering; not when the request was cancelled', async () => {
    const cut = transportTo(`${rawBase}/cut`);
    const errors: string[] = [];
    let closed = 0;
    cut.onerror = (e) => void errors.push(e.message);
    cut.onclose = () => void closed++;
    await cut.send(REQUEST);
    await waitFor(() => closed === 1, 'the transport to close');
    expect(errors).toEqual(['upstream ended its event stream before answering']);

    // The Client cancels request 1; its stream then ends without an answer, as a server may do.
    const t2 = transportTo(`${rawBase}/cut`);
    t2.onerror = (e) => void errors.push(e.message);
    t2.onclose = () => void closed++;
    await t2.send({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } });
    await t2.send(REQUEST);
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(1);
    expect(errors).toEqual(['upstream ended its event stream before answering']);
    await t2.close();
  });

  it('cuts a stream that stays open after its answer, once STREAM_LINGER_MS have passed', async () => {
    const clock = new ManualClock();
    const t = transportTo(`${rawBase}/linger`, { clock });
    const got: JSONRPCMessage[] = [];
    t.onmessage = (m) => void got.push(m);
    await t.send(REQUEST);
    await waitFor(() => got.length === 1 && clock.pending === 1, 'the answer');
    expect(lingerClosed).toBe(0);
    await clock.tick(STREAM_LINGER_MS);
    await waitFor(() => lingerClosed === 1, 'the lingering stream to be cut');
    await t.close();
  });

  it('close() ends what is in flight, tells the client once, and refuses later sends', async () => {
    const t = transportTo(`${rawBase}/hang`);
    let closed = 0;
    t.onclose = () => void closed++;
    const inFlight = t.send(REQUEST);
    await new Promise((r) => setTimeout(r, 20));
    await t.close();
    await t.close();
    await expect(inFlight).rejects.toThrow('the upstream connection is closed');
    await expect(t.send(REQUEST)).rejects.toThrow('the upstream connection is closed');
    expect(closed).toBe(1);
  });

  it("keeps the upstream's credentials out of what the agent and the alerts get when its error page echoes them", async () => {
    const SECRET = 'upstream-secret-123456';
    const h = await startHarness(`
servers:
  web:
    url: ${rawBase}/401-echo
    headers: { Authorization: "Bearer ${SECRET}" }
    tools:
      echo: { scope: read }
agents:
  - agent: support-triage
    mcp_scopes: { web: [read] }
`);
    try {
      const c = await h.connect('support-triage');
      const result = await c.callTool({ name: 'web__echo', arguments: { message: 'x' } });
      expect(result.isError).toBe(true);
      const said = [textOf(result), ...h.alerts.alerts.map((a) => JSON.stringify(a))].join('\n');
      expect(said).toContain('HTTP 401');
      expect(said).not.toContain(SECRET);
    } finally {
      await h.close();
    }
  });

  it("through the gateway: an agent gets a streaming upstream's progress and answers, a refusal for an oversized event, and a clear error at once when the upstream drops mid-call, then service again", async () => {
    const h = await startHarness(`
servers:
  stream:
    url: ${streaming.url}
    timeout_ms: 60000
    tools:
      echo:  { scope: read }
      steps: { scope: read }
      big:   { scope: read }
      hang:  { scope: read }
agents:
  - agent: support-triage
    mcp_scopes: { stream: [read] }
`);
    try {
      const c = await h.connect('support-triage');
      const progress: number[] = [];
      const stepped = await c.callTool({ name: 'stream__steps', arguments: {} }, CallToolResultSchema, {
        onprogress: (p) => progress.push(p.progress),
      });
      expect(textOf(stepped)).toBe('stepped');
      expect(progress.length).toBe(2);
      const big = await c.callTool({ name: 'stream__big', arguments: {} });
      expect(big.isError).toBe(true);
      expect(textOf(big)).toContain('UPSTREAM_PAYLOAD_TOO_LARGE');
      const before = streaming.seen.length;
      const hung = c.callTool({ name: 'stream__hang', arguments: {} });
      await waitFor(() => streaming.seen.length > before, 'the hanging call to reach the upstream');
      const started = Date.now();
      streaming.cut();
      const dropped = await hung;
      // At once, not after timeout_ms.
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(dropped.isError).toBe(true);
      expect(textOf(dropped)).toMatch(/closed the connection|could not be reached/);
      expect(textOf(await c.callTool({ name: 'stream__echo', arguments: { message: 'back' } }))).toBe('back');
    } finally {
      await h.close();
    }
  });
});
