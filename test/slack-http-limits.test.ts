import { connect, type Socket } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createSlackApp, type SlackHttpLimits } from '../src/slack/app.ts';
import { silentLogger } from '../src/logger.ts';
import { openDb } from '../src/store/db.ts';
import { startSlackHarness, type SlackHarness } from './support/slack-harness.ts';

/**
 * What an unsigned peer can hold of Bolt's HTTP receiver: a real receiver on
 * loopback with small limits, raw sockets as the peer.
 */
let h: SlackHarness | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await h?.close();
  h = undefined;
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    sockets.push(s);
    s.on('error', reject);
  });
}

/** Resolves with what the server sent before it closed the socket. */
function closed(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (c: Buffer) => {
      text += c.toString('utf8');
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve(text));
  });
}

describe('the Slack HTTP receiver bounds what an unsigned peer can hold', () => {
  it('closes a connection whose headers do not arrive in time, with 408', async () => {
    h = await startSlackHarness({ appOptions: { httpLimits: { headersTimeoutMs: 300, timeoutCheckEveryMs: 50 } } });
    const s = await open(h.port);
    const gone = closed(s);
    // Half a request, then nothing: Node's default would wait 60 s for the rest.
    s.write('POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    expect(await gone).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection whose body does not arrive in time', async () => {
    h = await startSlackHarness({
      appOptions: { httpLimits: { headersTimeoutMs: 200, requestTimeoutMs: 400, timeoutCheckEveryMs: 50 } },
    });
    const s = await open(h.port);
    const gone = closed(s);
    s.write('POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{"a":');
    // Bolt may answer the cut request itself; either way the socket does not stay.
    await gone;
    expect(s.destroyed).toBe(true);
  });

  it('drops connections past maxConnections, and takes new ones once those close', async () => {
    const logged: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => logged.push(line) });
    h = await startSlackHarness({ appOptions: { httpLimits: { maxConnections: 2 }, logger } });
    const held = [await open(h.port), await open(h.port)];
    const extra = await open(h.port);
    // Dropped by the server with nothing sent: the peer sees its socket close.
    expect(await closed(extra)).toBe('');
    // Said once, however many are dropped.
    await closed(await open(h.port));
    expect(logged.filter((l) => l.includes('Slack HTTP receiver full'))).toHaveLength(1);
    for (const s of held) s.destroy();
    // Room again: a signed request is answered.
    let answered = false;
    for (let i = 0; i < 50 && !answered; i++) {
      const res = await fetch(`http://127.0.0.1:${h.port}/slack/events`, { method: 'POST', body: 'x' }).catch(
        () => undefined,
      );
      answered = res !== undefined;
      if (!answered) await new Promise((r) => setTimeout(r, 20));
    }
    expect(answered).toBe(true);
  });

  it('refuses limits that make no sense, naming the field', () => {
    const db = openDb(':memory:');
    // Limits are checked before anything else is touched: the services are never used.
    const build = (httpLimits: Partial<SlackHttpLimits>) => () =>
      createSlackApp({
        config: { botToken: 'xoxb-test', signingSecret: 'secret', port: 0 },
        approvals: undefined as never,
        policy: () => undefined as never,
        audit: undefined as never,
        auditReader: undefined as never,
        control: undefined as never,
        logger: silentLogger(),
        db,
        httpLimits,
      });
    try {
      expect(build({ headersTimeoutMs: 1_000, requestTimeoutMs: 500 })).toThrow(
        /httpLimits\.requestTimeoutMs: requestTimeoutMs must be at least headersTimeoutMs/,
      );
      expect(build({ maxConnections: 0 })).toThrow(/httpLimits\.maxConnections/);
    } finally {
      db.close();
    }
  });
});
