/**
 * A lean MCP load generator for bench/gateway.ts, run as its own process:
 *   node --import tsx bench/load/mcp-http-load.ts URL TOKEN SESSIONS CALLS_PER_SESSION TOOL
 *
 * Why not the SDK's Client: on the 2-core bench machine the SDK client
 * (fetch, web streams, zod) costs more CPU per call than the gateway it is
 * measuring, so the figure it gives is mostly its own. This one speaks the
 * same Streamable HTTP on the wire (initialize, the session header,
 * notifications/initialized, tools/call answered as SSE or JSON) over
 * keep-alive node:http, and still checks every answer: the JSON-RPC id, a
 * result that is not an error, and the echoed message.
 *
 * Protocol with the parent, one JSON line each on stdout: {"ready":true}
 * once every session is open and warm; then, after a line on stdin, the
 * result {"ok","failed","ms","cpuUs","firstError"}.
 */
import { Agent, request } from 'node:http';
import { createInterface } from 'node:readline';

const [url, token, sessionsArg, perSessionArg, tool] = process.argv.slice(2);
if (!url || !token || !tool) {
  process.stderr.write('usage: mcp-http-load URL TOKEN SESSIONS CALLS_PER_SESSION TOOL\n');
  process.exit(2);
}
const sessions = Number(sessionsArg);
const perSession = Number(perSessionArg);
const target = new URL(url);
const MESSAGE = 'hello from the bench';
const PROTOCOL_VERSION = '2025-06-18';
const WARM_CALLS = 50;
const agent = new Agent({ keepAlive: true, maxSockets: sessions + 1 });

interface Reply {
  status: number;
  sessionId: string | undefined;
  body: string;
}

function post(body: string, sessionId?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${token}`,
          'content-length': Buffer.byteLength(body),
          ...(sessionId ? { 'mcp-session-id': sessionId, 'mcp-protocol-version': PROTOCOL_VERSION } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            sessionId: res.headers['mcp-session-id'] as string | undefined,
            body: text,
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The JSON-RPC answer with this id, from a JSON body or from the SSE events of the response. */
function answerTo(
  reply: Reply,
  id: number,
): { result?: { isError?: boolean; content?: { type: string; text?: string }[] }; error?: unknown } {
  const messages = reply.body.startsWith('{')
    ? [reply.body]
    : reply.body
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim());
  for (const m of messages) {
    const parsed = JSON.parse(m) as { id?: unknown };
    if (parsed.id === id) return parsed as ReturnType<typeof answerTo>;
  }
  throw new Error(`no answer to request ${id} in a ${reply.status} response: ${reply.body.slice(0, 300)}`);
}

async function openSession(): Promise<string> {
  const init = await post(
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'bench-load', version: '1' } },
    }),
  );
  if (init.status !== 200 || !init.sessionId)
    throw new Error(`initialize failed with ${init.status}: ${init.body.slice(0, 300)}`);
  answerTo(init, 0);
  const note = await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), init.sessionId);
  if (note.status !== 202) throw new Error(`notifications/initialized got ${note.status}`);
  return init.sessionId;
}

let ok = 0;
let failed = 0;
let firstError: string | undefined;

async function calls(sessionId: string, n: number, firstId: number): Promise<void> {
  for (let id = firstId; id < firstId + n; id++) {
    try {
      const reply = await post(
        `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":${JSON.stringify(tool)},"arguments":{"message":"${MESSAGE}"}}}`,
        sessionId,
      );
      const a = answerTo(reply, id);
      const text = a.result?.content?.[0]?.text ?? '';
      if (a.error || a.result?.isError || !text.includes(MESSAGE))
        throw new Error(`call ${id} did not succeed: ${reply.body.slice(0, 300)}`);
      ok++;
    } catch (err) {
      failed++;
      firstError ??= err instanceof Error ? err.message : String(err);
    }
  }
}

const ids = await Promise.all(Array.from({ length: sessions }, openSession));
await Promise.all(ids.map((sid) => calls(sid, WARM_CALLS, 1)));
if (failed > 0) throw new Error(`warm-up failed: ${firstError}`);
ok = 0;
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
await new Promise((resolve) => createInterface({ input: process.stdin }).once('line', resolve));
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(ids.map((sid) => calls(sid, perSession, WARM_CALLS + 1)));
const ms = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ ok, failed, ms, cpuUs: cpu.user + cpu.system, firstError })}\n`);
agent.destroy();
