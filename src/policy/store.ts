import type { Logger } from '../logger.ts';
import { WardenError, describeError } from '../errors.ts';
import { loadPolicyFile } from './load.ts';
import type { Policy } from './types.ts';

export type ReloadResult = { ok: true } | { ok: false; error: WardenError };

/**
 * Holds the policy in force. The first load throws (an invalid file stops
 * start-up); a later reload that fails keeps the last good policy, because
 * falling back to "no policy" would either stop every agent or, worse, guess.
 */
export class PolicyStore {
  readonly path: string;
  readonly #logger: Logger;
  readonly #env: NodeJS.ProcessEnv;
  #policy: Policy;
  readonly #listeners = new Set<(policy: Policy, previous: Policy) => void>();

  constructor(path: string, opts: { logger: Logger; env?: NodeJS.ProcessEnv }) {
    this.path = path;
    this.#logger = opts.logger;
    this.#env = opts.env ?? process.env;
    this.#policy = loadPolicyFile(path, this.#env);
    this.#logger.info({ policy: path, ...counts(this.#policy) }, 'policy loaded');
  }

  current(): Policy {
    return this.#policy;
  }

  reload(): ReloadResult {
    let next: Policy;
    try {
      next = loadPolicyFile(this.path, this.#env);
    } catch (err) {
      const error =
        err instanceof WardenError
          ? err
          : new WardenError('POLICY_INVALID', `${this.path}: ${describeError(err)}`, { cause: err });
      // The message carries positions and field paths, never resolved credentials.
      this.#logger.error(
        { policy: this.path, code: error.code, problems: error.message.split('\n') },
        'policy reload failed; keeping the last good policy',
      );
      return { ok: false, error };
    }
    const previous = this.#policy;
    this.#policy = next;
    this.#logger.info({ policy: this.path, ...counts(next) }, 'policy reloaded');
    for (const listener of this.#listeners) {
      try {
        listener(next, previous);
      } catch (err) {
        this.#logger.error({ err: describeError(err) }, 'policy change listener failed');
      }
    }
    return { ok: true };
  }

  /**
   * Called after each successful reload with the new and the replaced policy
   * (e.g. to tell agents their tool list changed, or to report what changed). Returns an unsubscribe.
   */
  onChange(listener: (policy: Policy, previous: Policy) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

function counts(p: Policy): { agents: number; servers: number } {
  return { agents: Object.keys(p.agents).length, servers: Object.keys(p.servers).length };
}
