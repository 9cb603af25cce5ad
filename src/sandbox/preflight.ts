import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { WardenError } from '../errors.ts';
import type { PathKind } from './profile.ts';

/** What is at a host path, symlinks resolved: decides how each path is hidden or bound. */
export function inspectPath(path: string): { real: string; kind: PathKind } {
  try {
    const real = realpathSync(path);
    return { real, kind: statSync(real).isDirectory() ? 'dir' : 'file' };
  } catch {
    return { real: path, kind: 'missing' };
  }
}

export interface SandboxTools {
  bwrap: string;
  socat: string;
  /** util-linux: gives bwrap a parent-death signal, so a killed `warden run` cannot leave an unsupervised sandbox. */
  setpriv: string;
}

/** An executable by name on PATH, or by absolute path; undefined when there is none. */
export function findExecutable(name: string, path: string | undefined): string | undefined {
  const candidates = isAbsolute(name)
    ? [name]
    : (path ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here; try the next directory.
    }
  }
  return undefined;
}

/**
 * Everything the sandbox needs, checked before anything is written: a run
 * that cannot be isolated is refused, never started a little less isolated.
 * `WARDEN_BWRAP` names another bubblewrap binary (a test points it at nothing).
 */
export function checkSandboxTools(env: NodeJS.ProcessEnv): SandboxTools {
  const bwrapName = env.WARDEN_BWRAP ?? 'bwrap';
  const bwrap = findExecutable(bwrapName, env.PATH);
  if (bwrap === undefined)
    throw new WardenError(
      'SANDBOX_UNAVAILABLE',
      `bubblewrap (${bwrapName}) is not installed, so the agent cannot be sandboxed; on Debian: apt-get install -y bubblewrap`,
      { details: { missing: 'bwrap', package: 'bubblewrap' } },
    );
  const socat = findExecutable('socat', env.PATH);
  if (socat === undefined)
    throw new WardenError(
      'SANDBOX_UNAVAILABLE',
      'socat is not installed, so the sandbox has no way to reach Warden; on Debian: apt-get install -y socat',
      { details: { missing: 'socat', package: 'socat' } },
    );
  const setpriv = findExecutable('setpriv', env.PATH);
  if (setpriv === undefined)
    throw new WardenError(
      'SANDBOX_UNAVAILABLE',
      'setpriv is not installed, so a sandbox could outlive its supervisor; on Debian: apt-get install -y util-linux',
      { details: { missing: 'setpriv', package: 'util-linux' } },
    );
  // The cheapest proof that namespaces work here: the same unshares as a run, around `true`.
  const probe = spawnSync(bwrap, ['--unshare-all', '--unshare-net', '--ro-bind', '/', '/', '--', 'true'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (probe.status !== 0) {
    const why = (probe.stderr || probe.error?.message || `exit ${probe.status}`).trim().split('\n')[0];
    throw new WardenError(
      'SANDBOX_UNAVAILABLE',
      `bubblewrap cannot create the sandbox's namespaces here (${why}); user namespaces must be enabled (sysctl kernel.unprivileged_userns_clone=1 on Debian, or run where bwrap works; package bubblewrap)`,
      { details: { missing: 'user namespaces', package: 'bubblewrap' } },
    );
  }
  return { bwrap, socat, setpriv };
}

/**
 * Warden's installation directory (the checkout or package holding src/ or dist/ and
 * node_modules): kept readable inside sandboxes, its database and policy still hidden.
 */
export const WARDEN_INSTALL_DIR = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
