import { createServer, request as httpRequest, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  CallToolResultSchema,
  ListToolsRequestSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { AgentTransport, SSE_KEEPALIVE_MS, STREAM_AFTER_MS } from '../src/gateway/agent-transport.ts';
import { ManualClock } from './support/manual-clock.ts';
import { waitFor } from './support/gateway-harness.ts';

/**
 * The agent-facing transport on its own: a real HTTP server on loopback that
 * hands every request to one AgentTransport, the SDK's Server connected to
 * it, and agents that are raw HTTP (to see the wire) or the SDK's Client.
 * Time is a ManualClock, so "not answered within STREAM_AFTER_MS" is exact.
 */

const AUTH = { token: 'token-id', clientId: 'agent-a', scopes: [], extra: { tokenId: 'token-id' } };
const ACCEPT = 'application/json, text/event-stream';
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
};

let clock: ManualClock;
let http: HttpServer;
let url: string;
let transport: AgentTransport;
let server: Server;
/** tools/call `wait` is answered when the test releases it; `now` at once; `progress` reports once first. */
let release: ((text: string) => void) | undefined;
const seenTokenIds: unknown[] = [];

beforeEach(async () => {
  clock = new ManualClock();
  server = new Server({ name: 't', version: '1' }, { capabilities: { tools: { listChanged: true } } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [] }));
  server.setRequestHandler(CallToolRequestSchema, async (req, extra) => {
    seenTokenIds.push(extra.authInfo?.extra?.tokenId);
    const name = req.params.name;
    if (name === 'now') return { content: [{ type: 'text', text: `now ${String(req.params.arguments?.n ?? '')}` }] };
    if (name === 'progress') {
      await extra.sendNotification({
        method: 'notifications/progress',
        params: { progressToken: req.params._meta!.progressToken!, progress: 1 },
      });
    }
    const text = await new Promise<string>((resolve) => (release = resolve));
    return { content: [{ type: 'text', text }] };
  });
  transport = new AgentTransport({
    clock,
    newSessionId: () => 'session-1',
    onInitialized: () => {},
    onDeleted: () => {},
  });
  await server.connect(transport);
  http = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      transport.handle(req, res, text ? JSON.parse(text) : undefined, AUTH);
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
});

afterEach(async () => {
  release = undefined;
  await server.close();
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
});

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body so far (all of it once `ended`). */
  body: string;
  ended: boolean;
}

/** A raw request whose response is watched as it arrives (fetch would hide an SSE stream's pieces). */
function send(method: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method, headers: { Accept: ACCEPT, 'Content-Type': 'application/json', ...headers } },
      (res) => {
        const answer: Answer = { status: res.statusCode!, headers: res.headers, body: '', ended: false };
        res.setEncoding('utf8');
        res.on('data', (c: string) => (answer.body += c));
        res.on('end', () => (answer.ended = true));
        resolve(answer);
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function ended(a: Answer): Promise<Answer> {
  await waitFor(() => a.ended, 'the response to end');
  return a;
}

async function initialized(): Promise<Record<string, string>> {
  const init = await ended(await send('POST', INIT));
  expect(init.status).toBe(200);
  expect(init.headers['content-type']).toBe('application/json');
  expect(init.headers['mcp-session-id']).toBe('session-1');
  expect(JSON.parse(init.body)).toMatchObject({ id: 1, result: { serverInfo: { name: 't' } } });
  const headers = { 'Mcp-Session-Id': 'session-1', 'Mcp-Protocol-Version': '2025-06-18' };
  expect(
    (await ended(await send('POST', { jsonrpc: '2.0', method: 'notifications/initialized' }, headers))).status,
  ).toBe(202);
  return headers;
}

const call = (id: number, name: string, extra: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: {}, ...extra },
});

/** The `data:` payloads of an SSE body. */
function events(body: string): unknown[] {
  return body
    .split('\n\n')
    .map((e) => e.split('\n').find((l) => l.startsWith('data: ')))
    .filter((l): l is string => l !== undefined)
    .map((l) => JSON.parse(l.slice(6)));
}

describe('AgentTransport', () => {
  it('answers a request that is ready at once with one JSON body, the session id and the token id travelling with it', async () => {
    const headers = await initialized();
    const a = await ended(await send('POST', call(2, 'now'), headers));
    expect(a.status).toBe(200);
    expect(a.headers['content-type']).toBe('application/json');
    expect(a.headers['mcp-session-id']).toBe('session-1');
    expect(JSON.parse(a.body)).toEqual({
      jsonrpc: '2.0',
      id: 2,
      result: { content: [{ type: 'text', text: 'now ' }] },
    });
    expect(seenTokenIds.at(-1)).toBe('token-id');
  });

  it('answers a batch with the answers in the order of its requests, whatever order they come in, and a batch of one as a batch', async () => {
    const headers = await initialized();
    // 7 waits for the test; 3 is answered at once, first.
    const answering = send('POST', [call(7, 'wait'), call(3, 'now', { arguments: { n: 'three' } })], headers);
    await waitFor(() => release, 'the first call to reach its handler');
    release!('seven');
    const a = await ended(await answering);
    expect(a.headers['content-type']).toBe('application/json');
    expect(Number(a.headers['content-length'])).toBe(Buffer.byteLength(a.body));
    const answers = JSON.parse(a.body) as { id: number; result: { content: { text: string }[] } }[];
    expect(answers.map((x) => [x.id, x.result.content[0]!.text])).toEqual([
      [7, 'seven'],
      [3, 'now three'],
    ]);
    const one = await ended(await send('POST', [call(4, 'now')], headers));
    expect(JSON.parse(one.body)).toEqual([
      { jsonrpc: '2.0', id: 4, result: { content: [{ type: 'text', text: 'now ' }] } },
    ]);
  });

  it("keeps a request's id taken after its connection drops, until its answer comes (then dropped), so a reuse cannot get that answer", async () => {
    const headers = await initialized();
    const dropped = httpRequest(url, {
      method: 'POST',
      headers: { Accept: ACCEPT, 'Content-Type': 'application/json', ...headers },
    });
    dropped.on('error', () => {});
    dropped.end(JSON.stringify(call(12, 'wait')));
    await waitFor(() => release, 'the call to reach its handler');
    dropped.destroy();
    // The timers of that response went with it.
    await waitFor(() => clock.pending === 0, 'the timers to be cleared');
    const early = await ended(await send('POST', call(12, 'now'), headers));
    expect(early.status).toBe(400);
    release!('answer of the dropped call');
    await new Promise((r) => setTimeout(r, 20));
    const reuse = await ended(await send('POST', call(12, 'now', { arguments: { n: 'reused' } }), headers));
    expect(JSON.parse(reuse.body)).toMatchObject({ id: 12, result: { content: [{ text: 'now reused' }] } });
  });

  it('turns the response into an SSE stream as soon as there is progress to send, then ends it with the answer', async () => {
    const headers = await initialized();
    const a = await send('POST', call(4, 'progress', { _meta: { progressToken: 'p4' } }), headers);
    expect(a.headers['content-type']).toBe('text/event-stream');
    await waitFor(() => events(a.body).length === 1, 'the progress event');
    expect(events(a.body)[0]).toMatchObject({
      method: 'notifications/progress',
      params: { progressToken: 'p4', progress: 1 },
    });
    expect(a.ended).toBe(false);
    release!('done');
    await ended(a);
    expect(events(a.body)[1]).toEqual({ jsonrpc: '2.0', id: 4, result: { content: [{ type: 'text', text: 'done' }] } });
  });

  it(`streams an answer not ready within ${STREAM_AFTER_MS} ms: headers at once, keep-alives while it waits, then the answer`, async () => {
    const headers = await initialized();
    let answer: Answer | undefined;
    void send('POST', call(5, 'wait'), headers).then((a) => (answer = a));
    await waitFor(() => release, 'the call to reach its handler');
    await clock.tick(STREAM_AFTER_MS - 1);
    // Nothing yet: the response is still waiting to be JSON.
    await new Promise((r) => setTimeout(r, 50));
    expect(answer).toBeUndefined();
    await clock.tick(1);
    const a = await waitFor(() => answer, 'the SSE headers');
    expect(a.headers['content-type']).toBe('text/event-stream');
    await clock.tick(SSE_KEEPALIVE_MS);
    await waitFor(() => a.body.includes(': keepalive'), 'a keep-alive comment');
    release!('late');
    await ended(a);
    expect(events(a.body)).toEqual([{ jsonrpc: '2.0', id: 5, result: { content: [{ type: 'text', text: 'late' }] } }]);
    // The timers went with the answer.
    expect(clock.pending).toBe(0);
  });

  it('answers a request still running when the session closes with an error for it, not with an empty response', async () => {
    const headers = await initialized();
    // Its headers come with the answer (JSON), so the response is awaited only after the close.
    const answering = send('POST', [call(6, 'wait'), call(8, 'now')], headers);
    await waitFor(() => release, 'the call to reach its handler');
    await transport.close();
    const a = await ended(await answering);
    expect(a.headers['content-type']).toBe('application/json');
    const answers = JSON.parse(a.body) as { id: number; error?: { code: number; message: string } }[];
    expect(answers[0]).toEqual({
      jsonrpc: '2.0',
      id: 6,
      error: { code: -32000, message: 'The session was closed before this request was answered' },
    });
    expect(answers[1]).toMatchObject({ id: 8, result: { content: [{ text: 'now ' }] } });
    expect((await ended(await send('POST', call(9, 'now'), headers))).status).toBe(404);
  });

  it('ends the response of a request the agent cancels, which gets no answer, so it does not hold the connection', async () => {
    const headers = await initialized();
    let answer: Answer | undefined;
    void send('POST', call(11, 'wait'), headers).then((a) => (answer = a));
    await waitFor(() => release, 'the call to reach its handler');
    const cancel = await ended(
      await send(
        'POST',
        { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 11, reason: 'changed my mind' } },
        headers,
      ),
    );
    expect(cancel.status).toBe(202);
    const a = await ended(await waitFor(() => answer, 'the cancelled request to be answered'));
    // An event stream with nothing in it: there is no empty JSON-RPC answer.
    expect(a.headers['content-type']).toBe('text/event-stream');
    expect(events(a.body)).toEqual([]);
    // The handler finishing later has nowhere to go, and nothing is left waiting.
    release!('too late');
    await new Promise((r) => setTimeout(r, 20));
    expect(clock.pending).toBe(0);
    const next = await ended(await send('POST', call(11, 'now'), headers));
    expect(JSON.parse(next.body)).toMatchObject({ id: 11, result: { content: [{ text: 'now ' }] } });
  });

  it('does not count a cancel the SDK ignores (id 0, bad params): that call runs on and still answers', async () => {
    const headers = await initialized();
    let answer: Answer | undefined;
    void send('POST', call(0, 'wait'), headers).then((a) => (answer = a));
    await waitFor(() => release, 'the call to reach its handler');
    expect(
      (
        await ended(
          await send('POST', { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0 } }, headers),
        )
      ).status,
    ).toBe(202);
    expect(
      (
        await ended(
          await send(
            'POST',
            { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 0, reason: 42 } },
            headers,
          ),
        )
      ).status,
    ).toBe(202);
    release!('still answered');
    const a = await ended(await waitFor(() => answer, 'the answer'));
    expect(JSON.parse(a.body)).toMatchObject({ id: 0, result: { content: [{ text: 'still answered' }] } });
  });

  it('ends a stream still waiting when the session closes with an error event for the request', async () => {
    const headers = await initialized();
    const a = await send('POST', call(13, 'progress', { _meta: { progressToken: 'p13' } }), headers);
    await waitFor(() => events(a.body).length === 1, 'the progress event');
    await transport.close();
    await ended(a);
    expect(events(a.body)[1]).toEqual({
      jsonrpc: '2.0',
      id: 13,
      error: { code: -32000, message: 'The session was closed before this request was answered' },
    });
  });

  it("hands the handlers the request's headers without the agent's secret", async () => {
    const headers = await initialized();
    let seen: Record<string, unknown> | undefined;
    server.setRequestHandler(CallToolRequestSchema, async (_req, extra) => {
      seen = extra.requestInfo?.headers;
      return { content: [] };
    });
    await ended(
      await send('POST', call(14, 'now'), {
        ...headers,
        Authorization: 'Bearer wdn_secret',
        Cookie: 'c=1',
        'X-Trace': 't1',
      }),
    );
    expect(seen).toMatchObject({ 'x-trace': 't1' });
    expect(seen).not.toHaveProperty('authorization');
    expect(seen).not.toHaveProperty('cookie');
  });

  it('carries messages not tied to a request on the GET stream, one per session', async () => {
    const headers = await initialized();
    const get = await send('GET', undefined, { ...headers, Accept: 'text/event-stream' });
    expect(get.status).toBe(200);
    expect(get.headers['content-type']).toBe('text/event-stream');
    expect((await ended(await send('GET', undefined, { ...headers, Accept: 'text/event-stream' }))).status).toBe(409);
    await server.sendToolListChanged();
    await waitFor(() => events(get.body).length === 1, 'the list_changed event');
    expect(events(get.body)[0]).toEqual({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
  });

  it('refuses what the transport cannot serve, with the status and text that say why', async () => {
    const refused = async (method: string, body: unknown, headers: Record<string, string>) => {
      const a = await ended(await send(method, body, headers));
      return { status: a.status, message: (JSON.parse(a.body) as { error: { message: string } }).error.message };
    };
    expect(await refused('POST', call(2, 'now'), {})).toEqual({
      status: 400,
      message: 'Bad Request: Server not initialized',
    });
    const headers = await initialized();
    expect(await refused('POST', INIT, {})).toEqual({
      status: 400,
      message: 'Invalid Request: Server already initialized',
    });
    expect(await refused('POST', call(2, 'now'), { ...headers, Accept: 'application/json' })).toMatchObject({
      status: 406,
    });
    expect(await refused('POST', call(2, 'now'), { ...headers, 'Content-Type': 'text/plain' })).toMatchObject({
      status: 415,
    });
    expect(await refused('POST', call(2, 'now'), { ...headers, 'Mcp-Protocol-Version': '1999-01-01' })).toMatchObject({
      status: 400,
      message: expect.stringContaining('Unsupported protocol version: 1999-01-01'),
    });
    expect(await refused('POST', call(2, 'now'), { 'Mcp-Protocol-Version': '2025-06-18' })).toEqual({
      status: 400,
      message: 'Bad Request: Mcp-Session-Id header is required',
    });
    expect(await refused('POST', call(2, 'now'), { ...headers, 'Mcp-Session-Id': 'another' })).toEqual({
      status: 404,
      message: 'Session not found',
    });
    expect(await refused('POST', { jsonrpc: '2.0', id: 2 }, headers)).toEqual({
      status: 400,
      message: 'Parse error: Invalid JSON-RPC message',
    });
    expect(await refused('PUT', call(2, 'now'), headers)).toMatchObject({ status: 405 });
    // An id may not be reused while its first request is still waiting.
    void send('POST', call(10, 'wait'), headers);
    await waitFor(() => release, 'the call to reach its handler');
    expect(await refused('POST', call(10, 'now'), headers)).toEqual({
      status: 400,
      message: 'Invalid Request: request id 10 is still being answered in this session',
    });
  });

  it("works with the SDK's own client: JSON answers, progress on a stream, list_changed on the GET stream, DELETE", async () => {
    let deleted: string | undefined;
    await server.close();
    transport = new AgentTransport({
      clock,
      newSessionId: () => 'session-2',
      onInitialized: () => {},
      onDeleted: (id) => (deleted = id),
    });
    await server.connect(transport);
    const client = new Client({ name: 'sdk', version: '1' });
    const clientTransport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(clientTransport);
    let changed = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => void changed++);
    expect(await client.callTool({ name: 'now', arguments: { n: 1 } })).toEqual({
      content: [{ type: 'text', text: 'now 1' }],
    });
    const progress: number[] = [];
    const running = client.callTool({ name: 'progress', arguments: {} }, CallToolResultSchema, {
      onprogress: (p) => progress.push(p.progress),
    });
    await waitFor(() => progress.length === 1, 'progress through the SDK client');
    release!('after progress');
    expect(await running).toEqual({ content: [{ type: 'text', text: 'after progress' }] });
    // The client opens its GET stream in the background after initialization.
    await waitFor(async () => {
      await server.sendToolListChanged();
      return changed > 0;
    }, 'list_changed through the GET stream');
    await clientTransport.terminateSession();
    expect(deleted).toBe('session-2');
    await client.close();
  });
});
