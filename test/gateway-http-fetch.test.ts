import { getEventListeners } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpFetch } from '../src/gateway/http-fetch.ts';

/** A real loopback server whose routes answer the way MCP servers do (JSON, SSE), or misbehave. */
let server: Server;
let base: string;
const seen: { method: string; headers: IncomingMessage['headers']; body: string }[] = [];
let openSse: ServerResponse | undefined;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', headers: req.headers, body });
      switch (req.url) {
        case '/json':
          res
            .writeHead(200, { 'Content-Type': 'application/json', 'Mcp-Session-Id': 'sess-1' })
            .end(JSON.stringify({ echo: body }));
          return;
        case '/accepted':
          res.writeHead(202).end();
          return;
        case '/big':
          res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ pad: 'x'.repeat(10_000) }));
          return;
        case '/sse': {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('event: message\ndata: {"n":1}\n\n');
          setTimeout(() => res.end('event: message\ndata: {"n":2}\n\n'), 20);
          return;
        }
        case '/sse-endless': {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          const timer = setInterval(() => res.write(`data: ${'y'.repeat(1_000)}\n\n`), 2);
          res.on('close', () => clearInterval(timer));
          return;
        }
        case '/sse-held':
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write('data: {"first":true}\n\n');
          openSse = res;
          return;
        case '/hang':
          return;
        case '/status-600':
          res.writeHead(600, { 'Content-Type': 'application/json' }).end('{}');
          return;
        case '/no-content-sse':
          res.writeHead(204, { 'Content-Type': 'text/event-stream' }).end();
          return;
        case '/redirect':
          res.writeHead(307, { Location: 'http://elsewhere.invalid/' }).end();
          return;
        default:
          res.writeHead(404, { 'Content-Type': 'text/plain' }).end('no such route');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function readAll(res: Response): Promise<string> {
  return new TextDecoder().decode(await res.arrayBuffer());
}

describe('httpFetch (node:http fetch for the SDK transports)', () => {
  it('sends method, headers and body, and answers with status, headers and a JSON body', async () => {
    const f = httpFetch();
    try {
      const res = await f(`${base}/json`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'X-Upstream-Key': 'k1' },
        body: '{"a":1}',
      });
      expect(res.status).toBe(200);
      expect(res.ok).toBe(true);
      expect(res.headers.get('mcp-session-id')).toBe('sess-1');
      expect(await res.json()).toEqual({ echo: '{"a":1}' });
      const req = seen.at(-1)!;
      expect(req).toMatchObject({ method: 'POST', body: '{"a":1}' });
      expect(req.headers['x-upstream-key']).toBe('k1');
      expect(req.headers['content-length']).toBe('7');
      // A Headers object works too (the SDK passes one).
      const again = await f(`${base}/json`, {
        method: 'POST',
        headers: new Headers({ 'X-Upstream-Key': 'k2' }),
        body: 'x',
      });
      expect(await again.json()).toEqual({ echo: 'x' });
      expect(seen.at(-1)!.headers['x-upstream-key']).toBe('k2');
      // A body read whole is served from its bytes, by every reader.
      const whole = await f(`${base}/json`, { method: 'POST', body: 'ü' });
      expect(whole).toBeInstanceOf(Response);
      expect(await whole.text()).toBe('{"echo":"ü"}');
      expect(await whole.json()).toEqual({ echo: 'ü' });
      expect(new TextDecoder().decode(await whole.arrayBuffer())).toBe('{"echo":"ü"}');
      expect(await whole.clone().json()).toEqual({ echo: 'ü' });
      expect(await (await whole.blob()).text()).toBe('{"echo":"ü"}');
    } finally {
      f.close();
    }
  });

  it('reuses one kept-alive connection for sequential requests', async () => {
    const f = httpFetch();
    try {
      const ports = new Set<number>();
      const count = (s: { remotePort?: number | undefined }) => ports.add(s.remotePort ?? 0);
      server.on('connection', count);
      try {
        for (let i = 0; i < 5; i++) await readAll(await f(`${base}/json`, { method: 'POST', body: String(i) }));
      } finally {
        server.off('connection', count);
      }
      expect(ports.size).toBe(1);
    } finally {
      f.close();
    }
  });

  it('hands an SSE body over as a stream, event by event, before the response has ended', async () => {
    const f = httpFetch();
    try {
      const res = await f(`${base}/sse-held`, { method: 'POST', body: '{}' });
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toContain('"first":true');
      openSse!.end('data: {"second":true}\n\n');
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
      expect(rest).toContain('"second":true');
      const whole = await f(`${base}/sse`, { method: 'POST', body: '{}' });
      expect(await readAll(whole)).toBe('event: message\ndata: {"n":1}\n\nevent: message\ndata: {"n":2}\n\n');
    } finally {
      f.close();
    }
  });

  it('gives 202 and error statuses as they are, with no body where none is allowed', async () => {
    const f = httpFetch();
    try {
      const accepted = await f(`${base}/accepted`, { method: 'POST', body: '{}' });
      expect(accepted.status).toBe(202);
      expect(await readAll(accepted)).toBe('');
      const missing = await f(`${base}/nope`, { method: 'DELETE' });
      expect(missing.status).toBe(404);
      expect(missing.ok).toBe(false);
      expect(await missing.text()).toBe('no such route');
      // Not followed: the SDK reports an unfollowed redirect itself.
      const moved = await f(`${base}/redirect`, { method: 'POST', body: '{}', redirect: 'manual' });
      expect(moved.status).toBe(307);
      expect(moved.headers.get('location')).toBe('http://elsewhere.invalid/');
    } finally {
      f.close();
    }
  });

  it('cuts a body over the limit, and an SSE answer to a POST; only the standalone GET stream is not limited', async () => {
    let exceeded = 0;
    const f = httpFetch({ maxResponseBytes: 4_096, onExceeded: () => exceeded++ });
    try {
      await expect(f(`${base}/big`, { method: 'POST', body: '{}' })).rejects.toThrow(/exceeded 4096 bytes/);
      expect(exceeded).toBe(1);
      const sse = await f(`${base}/sse-endless`, { method: 'POST', body: '{}' });
      await expect(readAll(sse)).rejects.toThrow(/exceeded 4096 bytes/);
      expect(exceeded).toBe(2);
      // A whole body is limited whatever the method.
      await expect(f(`${base}/big`)).rejects.toThrow(/exceeded 4096 bytes/);
      expect(exceeded).toBe(3);
      // The standalone notification stream (a GET) lives as long as the session.
      const stream = await f(`${base}/sse-endless`);
      const reader = stream.body!.getReader();
      let got = 0;
      while (got <= 10_000) got += (await reader.read()).value?.length ?? 0;
      await reader.cancel();
      expect(exceeded).toBe(3);
      // And the fetch still works after a cut.
      expect((await f(`${base}/json`, { method: 'POST', body: 'ok' })).status).toBe(200);
    } finally {
      f.close();
    }
  });

  it('aborts with the signal’s reason, before or while the answer comes, and leaves no listener behind on a long-lived signal', async () => {
    const f = httpFetch();
    try {
      const early = new AbortController();
      early.abort(new Error('gave up early'));
      await expect(f(`${base}/json`, { method: 'POST', body: '{}', signal: early.signal })).rejects.toThrow(
        'gave up early',
      );

      const waiting = new AbortController();
      const hung = f(`${base}/hang`, { method: 'POST', body: '{}', signal: waiting.signal });
      setTimeout(() => waiting.abort(new Error('cancelled by the agent')), 20);
      await expect(hung).rejects.toThrow('cancelled by the agent');

      const streaming = new AbortController();
      const res = await f(`${base}/sse-endless`, { method: 'GET', signal: streaming.signal });
      const reader = res.body!.getReader();
      await reader.read();
      streaming.abort(new Error('closing'));
      await expect(
        (async () => {
          for (let r = await reader.read(); !r.done; r = await reader.read());
        })(),
      ).rejects.toThrow();

      // The SDK hands every request the transport's one signal.
      const shared = new AbortController();
      for (let i = 0; i < 50; i++)
        await readAll(await f(`${base}/json`, { method: 'POST', body: '{}', signal: shared.signal }));
      await readAll(await f(`${base}/sse`, { method: 'POST', body: '{}', signal: shared.signal }));
      expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    } finally {
      f.close();
    }
  });

  it('turns answers fetch cannot represent into a rejection, not a crash', async () => {
    const f = httpFetch();
    try {
      await expect(f(`${base}/status-600`, { method: 'POST', body: '{}' })).rejects.toThrow(/HTTP status 600/);
      const empty = await f(`${base}/no-content-sse`, { method: 'POST', body: '{}' });
      expect(empty.status).toBe(204);
      expect(empty.body).toBeNull();
      expect((await f(`${base}/json`, { method: 'POST', body: 'still fine' })).status).toBe(200);
    } finally {
      f.close();
    }
  });

  it('cuts a request the server leaves silent, but never the standalone GET stream', async () => {
    const f = httpFetch({ idleTimeoutMs: 50 });
    try {
      await expect(f(`${base}/hang`, { method: 'POST', body: '{}' })).rejects.toThrow(/sent nothing for 50 ms/);
      const stream = await f(`${base}/sse-held`);
      const reader = stream.body!.getReader();
      await reader.read();
      // Quiet for four idle timeouts, and still open.
      await new Promise((r) => setTimeout(r, 200));
      openSse!.end('data: {"late":true}\n\n');
      expect(new TextDecoder().decode((await reader.read()).value)).toContain('"late":true');
    } finally {
      f.close();
    }
  });

  it('refuses what it does not implement, naming it', async () => {
    const f = httpFetch();
    try {
      await expect(f('ftp://127.0.0.1/x')).rejects.toThrow(/ftp:/);
      await expect(f(`${base}/json`, { method: 'POST', body: new Uint8Array([1]) })).rejects.toThrow(
        /string request bodies/,
      );
    } finally {
      f.close();
    }
  });
});
