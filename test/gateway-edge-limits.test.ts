import { connect, type Socket } from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway } from '../src/gateway/gateway.ts';
import type { EdgeLimits } from '../src/gateway/http.ts';
import { silentLogger } from '../src/logger.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';

/*
 * The gateway's edge under a flood, on loopback: sockets holding partial
 * headers and authenticated slow bodies from other loopback addresses
 * (127.0.0.2, .3, …: Linux routes all of 127/8 to lo) while a legitimate
 * agent on 127.0.0.1 keeps calling, and a held call streams its wait past
 * every request timeout. Limits are small so the flood is small.
 */

const LIMITS: EdgeLimits = {
  maxConnections: 400,
  maxConnectionsPerAddress: 40,
  headersTimeoutMs: 1_000,
  bodyTimeoutMs: 1_500,
  keepAliveTimeoutMs: 1_000,
  timeoutCheckEveryMs: 100,
};
const OWNER = 'U0OWNER';

let h: Harness;
let port: number;

beforeAll(async () => {
  h = await startHarness(
    `
servers:
  slow:
    ${fixtureServer('slow-server.ts')}
    tools:
      sleep: { scope: read }
agents:
  - agent: worker
    mcp_scopes: { slow: [read] }
    owner: ${OWNER}
  - agent: holder
    mcp_scopes: { slow: [read] }
    approval_required: [sleep]
    approval_timeout: 10m
    owner: ${OWNER}
`,
    { limits: LIMITS },
  );
  port = Number(new URL(h.gateway.url).port);
});

afterAll(async () => {
  await h?.close();
});

interface RawClient {
  socket: Socket;
  /** Everything the gateway sent, once the connection has closed. */
  answer: Promise<string>;
  /** What the gateway has sent so far. */
  sofar(): string;
}

/** A TCP connection from `localAddress` that sends `data` and collects the answer. */
function raw(localAddress: string, data: string, targetPort = port): RawClient {
  const socket = connect({ host: '127.0.0.1', port: targetPort, localAddress });
  const chunks: Buffer[] = [];
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
  socket.once('connect', () => socket.write(data));
  return { socket, answer, sofar: () => Buffer.concat(chunks).toString('utf8') };
}

const statusOf = (answer: string) => answer.split('\r\n', 1)[0];

/** The request.refused / auth.failed rows with this code (and remote), and how many refusals they count. */
function counted(
  event: 'request.refused' | 'auth.failed',
  code: string,
  remote?: string,
): { rows: number; count: number; agents: unknown[] } {
  const rows = h
    .rows({ event })
    .map((r) => ({
      agent: r.agent,
      detail: JSON.parse(r.detail!) as { code: string; count: number; remote: string },
    }))
    .filter((r) => r.detail.code === code && (remote === undefined || r.detail.remote === remote));
  return { rows: rows.length, count: rows.reduce((n, r) => n + r.detail.count, 0), agents: rows.map((r) => r.agent) };
}

describe('the gateway edge under a flood', () => {
  it('partial headers and slow bodies are cut and counted while a legitimate agent keeps working, and a held call streaming its wait is not cut', async () => {
    const token = h.token('worker');
    // 100 sockets from one address, each holding a request's first line and no more: past the
    // cap of 40, each new one pushes out the oldest (429), and the last 40 time out (408).
    const partial = Array.from({ length: 100 }, () => raw('127.0.0.2', 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    // And 60 from the legitimate agents' own address, filling its cap before they connect.
    const beside = Array.from({ length: 60 }, () => raw('127.0.0.1', 'POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n'));
    await Promise.all(beside.map((b) => new Promise((resolve) => b.socket.once('connect', resolve))));
    // Authenticated slow bodies: whole headers, then a byte every 200 ms of a 1,000-byte body.
    const slow = Array.from({ length: 5 }, () =>
      raw(
        '127.0.0.3',
        [
          'POST /mcp HTTP/1.1',
          `Host: 127.0.0.1:${port}`,
          `Authorization: Bearer ${token}`,
          'Content-Type: application/json',
          'Accept: application/json, text/event-stream',
          'Content-Length: 1000',
          '',
          '{',
        ].join('\r\n'),
      ),
    );
    const drip = setInterval(() => {
      for (const s of slow) if (!s.socket.destroyed) s.socket.write(' ');
    }, 200);

    let holder: Client | undefined;
    let agent: Client | undefined;
    try {
      // The legitimate agents, from 127.0.0.1, while the flood holds its sockets.
      agent = await h.connect('worker');
      holder = await h.connect('holder');
      const progress: unknown[] = [];
      const heldSince = Date.now();
      const held = holder.request(
        {
          method: 'tools/call',
          params: { name: 'slow__sleep', arguments: { ms: 600, steps: 3 }, _meta: { progressToken: 7 } },
        },
        CallToolResultSchema,
        { timeout: 60_000, onprogress: (p) => progress.push(p) },
      );
      for (let i = 0; i < 5; i++) {
        const result = await agent.callTool({ name: 'slow__sleep', arguments: { ms: 50 } });
        expect(result.isError).toBeFalsy();
      }

      const answers = await Promise.all(partial.map((p) => p.answer));
      const statuses = answers.map(statusOf);
      expect(statuses.filter((s) => s === 'HTTP/1.1 429 Too Many Requests')).toHaveLength(60);
      expect(statuses.filter((s) => s === 'HTTP/1.1 408 Request Timeout')).toHaveLength(40);
      expect(answers.find((a) => a.startsWith('HTTP/1.1 429'))).toMatch(/Too many connections from 127\.0\.0\.2/);
      expect(answers.find((a) => a.startsWith('HTTP/1.1 408'))).toMatch(/headers must arrive within 1 s/);

      // On the agents' own address the flood made way for them: pushed out or timed out, never in their way.
      const besideStatuses = (await Promise.all(beside.map((b) => b.answer))).map(statusOf);
      for (const status of besideStatuses) expect(status).toMatch(/^HTTP\/1\.1 (429|408) /);
      expect(besideStatuses.filter((st) => st.startsWith('HTTP/1.1 429')).length).toBeGreaterThan(20);

      const slowAnswers = await Promise.all(slow.map((s) => s.answer));
      for (const a of slowAnswers) {
        expect(statusOf(a)).toBe('HTTP/1.1 408 Request Timeout');
        expect(a).toMatch(/whole request must arrive within 1\.5 s/);
      }

      // Still working after the flood, on a fresh connection too.
      expect((await agent.callTool({ name: 'slow__sleep', arguments: { ms: 10 } })).isError).toBeFalsy();

      // The held call waits past every request timeout (and Node's check of them); approving it still delivers its answer.
      await waitFor(
        () => Date.now() - heldSince > LIMITS.bodyTimeoutMs + 5 * LIMITS.timeoutCheckEveryMs || undefined,
        'the held call outlasting the body timeout',
      );
      const pending = await waitFor(() => h.approvals.pending({ agent: 'holder' })[0], 'the held call');
      expect((await h.approvals.decide(pending.id, OWNER, 'approve')).ok).toBe(true);
      const result = await held;
      expect(result.isError).toBeFalsy();
      expect(textOf(result)).not.toMatch(/timeout|abandoned/i);
      // Its progress came down the same long-lived response.
      expect(progress.length).toBeGreaterThan(0);
    } finally {
      clearInterval(drip);
      await agent?.close();
      await holder?.close();
    }

    // Every refusal is on the trail, aggregated: the counts add up.
    await waitFor(async () => {
      await h.flush();
      return (
        counted('request.refused', 'too_many_connections_from_address', '127.0.0.2').count === 60 &&
        counted('request.refused', 'headers_timeout', '127.0.0.2').count === 40 &&
        counted('request.refused', 'too_many_connections_from_address', '127.0.0.1').count +
          counted('request.refused', 'headers_timeout', '127.0.0.1').count ===
          60 &&
        counted('request.refused', 'body_timeout').count === 5
      );
    }, 'the refusals counted in the trail');
    expect(counted('request.refused', 'body_timeout').agents[0]).toBe('worker');
    // Aggregated, not a row per refusal.
    expect(counted('request.refused', 'too_many_connections_from_address', '127.0.0.2').rows).toBeLessThan(10);
  });

  it('at the total cap the oldest connection without a request makes room (503), and with none such the new one is refused 503; an oversized Authorization header is answered 431 and recorded', async () => {
    const gw = await startGateway({
      policy: h.policy,
      db: h.db,
      audit: h.audit,
      approvals: h.approvals,
      halt: h.killSwitch,
      alerts: h.alerts,
      logger: silentLogger(),
      connectUpstreamsAtStart: false,
      // Timeouts long enough that nothing here ends by one.
      limits: { ...LIMITS, maxConnections: 3, headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000 },
    });
    const gwPort = Number(new URL(gw.url).port);
    const held: RawClient[] = [];
    const token = h.token('worker');
    // Whole headers, then a body that is slow to come: busy with a real request, not to be pushed out.
    const busy = [
      'POST /mcp HTTP/1.1',
      `Host: 127.0.0.1:${gwPort}`,
      `Authorization: Bearer ${token}`,
      'Content-Type: application/json',
      'Content-Length: 1000',
      // Node answers 100 Continue once it has the headers: the sign this one is past them.
      'Expect: 100-continue',
      '',
      '{',
    ].join('\r\n');
    const opened = async (c: RawClient) => {
      held.push(c);
      await new Promise((resolve) => c.socket.once('connect', resolve));
      return c;
    };
    const openedBusy = async (address: string) => {
      const c = await opened(raw(address, busy, gwPort));
      await waitFor(() => c.sofar().startsWith('HTTP/1.1 100 Continue') || undefined, 'its headers read');
    };
    try {
      const partial = await opened(raw('127.0.0.4', 'GET /mcp HTTP/1.1\r\n', gwPort));
      await openedBusy('127.0.0.5');
      await openedBusy('127.0.0.6');
      // Full: the one that has sent no request yet is pushed out; the newcomer is served (401: no token).
      const fourth = raw(
        '127.0.0.7',
        `GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:${gwPort}\r\nConnection: close\r\n\r\n`,
        gwPort,
      );
      const pushed = await partial.answer;
      expect(statusOf(pushed)).toBe('HTTP/1.1 503 Service Unavailable');
      expect(pushed).toMatch(/Too many connections: Warden holds at most 3 at once/);
      expect(statusOf(await fourth.answer)).toBe('HTTP/1.1 401 Unauthorized');
      // Full again, with both busy: now the newcomer itself is refused.
      await openedBusy('127.0.0.9');
      const sixth = raw('127.0.0.10', `GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:${gwPort}\r\n\r\n`, gwPort);
      expect(statusOf(await sixth.answer)).toBe('HTTP/1.1 503 Service Unavailable');
    } finally {
      for (const c of held) c.socket.destroy();
      await gw.close();
    }
    // On the harness's gateway: this one is still letting go of the three above.
    const big = raw(
      '127.0.0.8',
      `POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${'A'.repeat(20_000)}\r\n\r\n`,
      port,
    );
    expect(statusOf(await big.answer)).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    await h.flush();
    expect(counted('request.refused', 'too_many_connections', '127.0.0.4').count).toBe(1);
    expect(counted('request.refused', 'too_many_connections', '127.0.0.10').count).toBe(1);
    const tooLarge = h.rows({ event: 'auth.failed' }).filter((r) => JSON.parse(r.detail!).code === 'headers_too_large');
    expect(tooLarge).toHaveLength(1);
    expect(JSON.parse(tooLarge[0]!.detail!)).toMatchObject({ remote: '127.0.0.8', count: 1 });
    expect(tooLarge[0]!.reason).toMatch(/headers too large/);
  });

  it('refuses limits that cannot hold, naming the field', async () => {
    const start = (limits: Partial<EdgeLimits>) =>
      startGateway({
        policy: h.policy,
        db: h.db,
        audit: h.audit,
        approvals: h.approvals,
        halt: h.killSwitch,
        alerts: h.alerts,
        logger: silentLogger(),
        connectUpstreamsAtStart: false,
        limits,
      });
    await expect(start({ headersTimeoutMs: 20_000, bodyTimeoutMs: 10_000 })).rejects.toThrow(
      /limits\.bodyTimeoutMs: bodyTimeoutMs must be at least headersTimeoutMs/,
    );
    await expect(start({ maxConnectionsPerAddress: 0 })).rejects.toThrow(/limits\.maxConnectionsPerAddress/);
  });
});
