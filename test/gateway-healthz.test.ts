import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, waitFor, type Harness } from './support/gateway-harness.ts';
import { fixtureServer, helpdeskServersYaml } from './support/policies.ts';

/**
 * GET /healthz, the load balancer's readiness probe: 200 only when the
 * database answers and every upstream is connected, 503 with the reasons
 * otherwise. No token, no secrets. Runs on PostgreSQL through
 * test/postgres/gateway-healthz.pg.test.ts.
 */

const UPSTREAM_SECRET = 'sk-upstream-secret-never-in-healthz';

const POLICY = `${helpdeskServersYaml(['tickets'])}
  broken:
    command: ${JSON.stringify(process.execPath)}
    args: ["/nonexistent/warden-healthz-upstream.js"]
    env: { API_KEY: ${JSON.stringify(UPSTREAM_SECRET)} }
    tools:
      anything: { scope: read }
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
`;

const READY_POLICY = `${helpdeskServersYaml(['tickets'])}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
`;

interface Health {
  status: number;
  body: { status: string; db: string; upstreams: Record<string, string>; reasons?: string[] };
  text: string;
}

async function health(h: Harness, init: RequestInit = {}): Promise<Health> {
  const res = await fetch(new URL('/healthz', h.gateway.url), init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text };
}

let h: Harness | undefined;
afterEach(async () => {
  await h?.close().catch(() => {});
  h = undefined;
});

describe('GET /healthz', () => {
  it('answers 200 with the database and every upstream ready, without a token', async () => {
    h = await startHarness(READY_POLICY);
    const ready = await waitFor(async () => {
      const got = await health(h!);
      return got.status === 200 ? got : undefined;
    }, 'healthz 200');
    expect(ready.body).toEqual({ status: 'ok', db: 'ok', upstreams: { tickets: 'ready' } });
  });

  it('answers 503 naming an upstream that is down, and holds no secret of it', async () => {
    h = await startHarness(POLICY);
    const down = await waitFor(async () => {
      const got = await health(h!);
      return got.body.upstreams.broken === 'down' && got.body.upstreams.tickets === 'ready' ? got : undefined;
    }, 'broken upstream reported down');
    expect(down.status).toBe(503);
    expect(down.body).toEqual({
      status: 'unavailable',
      db: 'ok',
      upstreams: { broken: 'down', tickets: 'ready' },
      reasons: ['upstream broken: down'],
    });
    expect(down.text).not.toContain(UPSTREAM_SECRET);
    expect(down.text).not.toContain('nonexistent');
  });

  it('answers 503 with db down when the database does not answer', async () => {
    h = await startHarness(READY_POLICY);
    await waitFor(async () => (await health(h!)).status === 200, 'healthz 200');
    h.db.close();
    const got = await health(h);
    expect(got.status).toBe(503);
    expect(got.body.db).toBe('down');
    expect(got.body.status).toBe('unavailable');
    expect(got.body.reasons?.[0]).toMatch(/^database: /);
  });

  it('an upstream that crashed is started again in the background: ready again without waiting for a call', async () => {
    h = await startHarness(`
servers:
  crash:
    ${fixtureServer('crash-server.ts')}
    tools:
      ping:  { scope: read }
      crash: { scope: read }
agents:
  - agent: ops
    mcp_scopes: { crash: [read] }
`);
    await waitFor(async () => (await health(h!)).status === 200, 'healthz 200');
    const client = await h.connect('ops');
    const pid = (await client.callTool({ name: 'crash__ping', arguments: {} })).content as { text: string }[];
    await client.callTool({ name: 'crash__crash', arguments: {} }).catch(() => undefined);
    await client.close();
    await waitFor(async () => (await health(h!)).status === 503, 'healthz 503 after the crash');
    // A load balancer sends no call to a replica it took out: readiness must come back on its own.
    const ready = await waitFor(async () => {
      const got = await health(h!);
      return got.status === 200 ? got : undefined;
    }, 'healthz 200 again after the crash');
    expect(ready.body.upstreams).toEqual({ crash: 'ready' });
    // A new process, started by nobody's call.
    const again = await h.connect('ops');
    const after = (await again.callTool({ name: 'crash__ping', arguments: {} })).content as { text: string }[];
    expect(after[0]!.text).not.toBe(pid[0]!.text);
    await again.close();
  });

  it('answers GET and HEAD only', async () => {
    h = await startHarness(READY_POLICY);
    const post = await fetch(new URL('/healthz', h.gateway.url), { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    const head = await fetch(new URL('/healthz', h.gateway.url), { method: 'HEAD' });
    expect([200, 503]).toContain(head.status);
    expect(await head.text()).toBe('');
  });
});
