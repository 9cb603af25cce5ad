import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../clock.ts';
import type { CanaryRun } from '../control/drill.ts';
import { RunStore } from '../control/runs.ts';
import { runAgent, type RunAgentOptions } from './supervisor.ts';

/**
 * A drill's canary process: `sleep` under `warden run` as the canary agent,
 * in a throwaway workspace, inside the drilling process. The drill halts and
 * expects this to end as `halted`.
 */
export function canaryRunStarter(
  deps: Omit<RunAgentOptions, 'agent' | 'command' | 'workspace' | 'signals' | 'abort'>,
): (agent: string) => CanaryRun {
  return (agent) => {
    const workspace = mkdtempSync(join(tmpdir(), 'warden-canary-run-'));
    const abort = new AbortController();
    const outcome = runAgent({
      ...deps,
      agent,
      command: ['sleep', '3600'],
      workspace,
      signals: [],
      abort: abort.signal,
    });
    const ended = outcome
      .then((o) => ({ cause: o.cause as string, exitCode: o.exitCode }))
      .finally(() => rmSync(workspace, { recursive: true, force: true }));
    const clock = deps.clock ?? systemClock;
    const runs = new RunStore(deps.db, { clock });
    let settled = false;
    void outcome.finally(() => {
      settled = true;
    });
    // Running = its row has the sandbox's pid (set once bwrap reports it).
    const started = new Promise<void>((resolve, reject) => {
      const poll = (): void => {
        if (runs.open(agent).some((run) => run.pid !== null && run.workspace === workspace)) resolve();
        else if (settled) reject(new Error('the canary run ended before it started'));
        else clock.setTimeout(poll, 10);
      };
      outcome.catch(reject);
      poll();
    });
    return { started, ended, stop: () => abort.abort() };
  };
}
