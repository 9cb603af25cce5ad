import type { Clock } from '../clock.ts';

/**
 * Slack accepts about one chat.postMessage a second per channel (thread replies count).
 * A burst of held calls would otherwise meet a wall of 429s, and retries that give up drop
 * cards. So posts to a channel go one at a time, in order; while others are queued behind a
 * post, the next one waits `intervalMs` (on the injected clock) so a burst goes out at
 * Slack's rate instead of one 429 each. A lone post goes at once. A 429 that still comes
 * (another process, Slack's own accounting) is waited out inside the slot, so the posts
 * behind it wait too rather than pile on.
 */
export class ChannelPacer {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #tails = new Map<string, Promise<void>>();
  readonly #nextAt = new Map<string, number>();
  readonly #waiting = new Map<string, number>();

  constructor(clock: Clock, intervalMs = 1000) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  /** Posts queued or in flight for `channel`. */
  waiting(channel: string): number {
    return this.#waiting.get(channel) ?? 0;
  }

  run<T>(channel: string, post: () => Promise<T>): Promise<T> {
    this.#waiting.set(channel, this.waiting(channel) + 1);
    const previous = this.#tails.get(channel) ?? Promise.resolve();
    const result = previous.then(async () => {
      const waitMs = (this.#nextAt.get(channel) ?? 0) - this.#clock.now();
      if (waitMs > 0) await new Promise<void>((resolve) => this.#clock.setTimeout(resolve, waitMs));
      try {
        return await post();
      } finally {
        const left = this.waiting(channel) - 1;
        if (left > 0) this.#nextAt.set(channel, this.#clock.now() + this.#intervalMs);
        else this.#nextAt.delete(channel);
        if (left > 0) this.#waiting.set(channel, left);
        else this.#waiting.delete(channel);
      }
    });
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(channel, tail);
    void tail.then(() => {
      if (this.#tails.get(channel) === tail) this.#tails.delete(channel);
    });
    return result;
  }
}
