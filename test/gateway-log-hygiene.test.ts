import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scrubber } from '../src/gateway/upstream.ts';
import { fixtureServer, startHarness, textOf, waitFor, type Harness } from './support/gateway-harness.ts';

// The value Warden resolves from its own environment and hands the upstream.
const SECRET = 'sk_live_leaky_0123456789abcdef';

const lines: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, done) {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  },
});

let h: Harness;

beforeAll(async () => {
  process.env.WARDEN_TEST_LEAKY_KEY = SECRET;
  h = await startHarness(
    `
servers:
  leaky:
    ${fixtureServer('leaky-server.ts', [], 'env: { LEAKY_API_KEY: "${WARDEN_TEST_LEAKY_KEY}" }')}
    tools:
      ping: { scope: read }
agents:
  - agent: ops
    mcp_scopes: { leaky: [read] }
    owner: U0123ABCD
`,
    { logger: pino({ level: 'debug' }, sink) },
  );
});

afterAll(async () => {
  await h?.close();
  delete process.env.WARDEN_TEST_LEAKY_KEY;
});

describe('upstream output in Warden’s log', () => {
  it('masks the credentials Warden handed the upstream and secret-shaped strings, in stderr and stdout noise', async () => {
    const client = await h.connect('ops');
    const res = await client.callTool({ name: 'leaky__ping', arguments: {} });
    expect(textOf(res)).toBe('pong');
    await waitFor(() => lines.some((l) => l.includes('ping using Authorization')), 'the ping stderr line in the log');
    await waitFor(() => lines.some((l) => l.includes('upstream protocol noise')), 'the stdout junk in the log');
    const upstreamLines = lines.filter((l) => l.includes('upstream stderr') || l.includes('upstream protocol noise'));
    expect(upstreamLines.length).toBeGreaterThanOrEqual(3);
    for (const l of lines) {
      expect(l).not.toContain(SECRET);
      expect(l).not.toContain('xoxb-1234567890-abcdefghij');
    }
    expect(upstreamLines.some((l) => l.includes('[redacted]'))).toBe(true);
  });

  it('scrubber masks exact configured values (and their bearer parts) before pattern redaction', () => {
    const scrub = scrubber({
      type: 'http',
      url: 'http://x',
      headers: { authorization: 'Bearer abcdef123456', 'x-flag': 'on' },
    });
    expect(scrub('sent Bearer abcdef123456 and abcdef123456 alone; flag on')).toBe(
      'sent [redacted] and [redacted] alone; flag on',
    );
  });
});
