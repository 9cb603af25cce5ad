import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./control-gateway-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ChildGateway {
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Starts another Warden gateway process on the same database and waits for its URL. */
export async function spawnChildGateway(
  env: { dbPath: string; policyPath: string },
  timeoutMs = 20_000,
): Promise<ChildGateway> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    cwd: ROOT,
    env: {
      ...process.env,
      WARDEN_DB: env.dbPath,
      WARDEN_POLICY: env.policyPath,
      LOG_LEVEL: process.env.CHILD_LOG_LEVEL ?? 'error',
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('child gateway did not start in time')), timeoutMs);
    proc.once('exit', (code) => reject(new Error(`child gateway exited early with ${code}`)));
    createInterface({ input: proc.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { url: string }).url);
      } catch {
        reject(new Error(`unexpected child output: ${line}`));
      }
    });
  });
  return {
    url,
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.stdin?.end();
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      }),
  };
}
