/**
 * `warden serve` as a child process, as `npm start` runs it, on a database
 * file the test shares: a second Warden process, or one to kill -9. Its JSON
 * logs (stderr) are collected; start() resolves once it says it is running.
 *
 *   const w = await startServeChild({ dbPath, policyPath, env: { SLACK_PORT: '0', … } });
 *   w.running.gateway;        // http://127.0.0.1:PORT/mcp
 *   w.running.slackPort;      // when Slack is configured
 *   await w.kill('SIGKILL');
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServeChild {
  proc: ChildProcess;
  logs: Array<Record<string, unknown>>;
  /** The "Warden is running" log line. */
  running: { gateway: string; slackPort?: number } & Record<string, unknown>;
  waitForLog(match: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  /** Sends the signal and resolves with the exit code (null when killed by a signal). */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startServeChild(opts: {
  dbPath: string;
  policyPath: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** `compiled`: bin/warden.js → dist/ (built by the test setup), exactly what `npm start` runs. Default: the source, through tsx. */
  entry?: 'source' | 'compiled';
}): Promise<ServeChild> {
  const entry = opts.entry === 'compiled' ? ['bin/warden.js'] : ['--import', 'tsx', 'src/cli/index.ts'];
  const proc = spawn(
    process.execPath,
    [...entry, 'serve', '--policy', opts.policyPath, '--db', opts.dbPath, '--port', '0'],
    {
      cwd: ROOT,
      // No Slack settings from the outer environment: only what the test gives.
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SLACK_'))),
        LOG_LEVEL: 'info',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs: Array<Record<string, unknown>> = [];
  let buf = '';
  proc.stderr!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ msg: line });
      }
    }
  });
  proc.stdout!.resume();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const waitForLog = (match: (l: Record<string, unknown>) => boolean, what: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const started = Date.now();
      const poll = () => {
        const hit = logs.find(match);
        if (hit) return resolve(hit);
        if (proc.exitCode !== null || proc.signalCode !== null)
          return reject(
            new Error(
              `warden serve exited (${proc.exitCode ?? proc.signalCode}) before: ${what}; last logs: ${JSON.stringify(logs.slice(-3))}`,
            ),
          );
        if (Date.now() - started > timeoutMs) return reject(new Error(`timed out waiting for: ${what}`));
        setTimeout(poll, 25);
      };
      poll();
    });
  const running = (await waitForLog(
    (l) => typeof l.msg === 'string' && l.msg.startsWith('Warden is running'),
    'start-up',
  )) as ServeChild['running'];
  return {
    proc,
    logs,
    running,
    waitForLog,
    kill: (signal = 'SIGTERM') =>
      new Promise<number | null>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
      }),
  };
}
