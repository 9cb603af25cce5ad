import { systemClock, type Clock } from '../clock.ts';
import type { Db } from './db.ts';

/**
 * How long an answer cached from a shared table may be trusted at most, even
 * with no word of a change: the bound on staleness while the LISTEN
 * connection is down (a notification lost with it).
 */
export const CHANGE_WATCH_MAX_AGE_MS = 1_000;

export interface ChangeWatchOptions {
  clock?: Clock | undefined;
  maxAgeMs?: number | undefined;
}

/** Writes this process made, by channel, through any connection: they invalidate every watch of the channel at once. */
const localWrites = new Map<string, number>();

/** An owning module calls this after each write its watch is about, so this process never waits for its own NOTIFY. */
export function noteLocalWrite(channel: string): void {
  localWrites.set(channel, (localWrites.get(channel) ?? 0) + 1);
}

/**
 * Whether an answer a store read from its table a moment ago still holds,
 * so a hot read (a token on every request, "does this agent have held
 * calls" on every call) need not be a round trip to PostgreSQL each time.
 * A trigger NOTIFYs the channel on the writes that matter
 * (db/postgres/004_change_notify.sql); a write in this process counts at once
 * (noteLocalWrite); and nothing is trusted longer than maxAgeMs.
 */
export class ChangeWatch {
  readonly #channel: string;
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  #remote = 0;
  #unlisten: (() => void) | undefined;

  /**
   * A watch of `channel`, or undefined where the store cannot be heard: on
   * SQLite a read costs microseconds and another process's write sends no
   * word, so nothing is cached there.
   */
  static open(db: Db, channel: string, options: ChangeWatchOptions = {}): ChangeWatch | undefined {
    if (!db.listen) return undefined;
    const watch = new ChangeWatch(channel, options);
    watch.#unlisten = db.listen(
      channel,
      () => watch.#remote++,
      // A lost connection calls onNotify too (everything is stale); entries age out meanwhile.
      () => watch.#remote++,
    );
    return watch;
  }

  private constructor(channel: string, options: ChangeWatchOptions) {
    this.#channel = channel;
    this.#clock = options.clock ?? systemClock;
    this.#maxAgeMs = options.maxAgeMs ?? CHANGE_WATCH_MAX_AGE_MS;
  }

  /** A stamp for an answer read now: it holds while `fresh(stamp)` says so. */
  stamp(): { epoch: number; at: number } {
    return { epoch: this.#epoch(), at: this.#clock.now() };
  }

  fresh(stamp: { epoch: number; at: number }): boolean {
    return stamp.epoch === this.#epoch() && this.#clock.now() - stamp.at < this.#maxAgeMs;
  }

  close(): void {
    this.#unlisten?.();
    this.#unlisten = undefined;
  }

  #epoch(): number {
    return this.#remote + (localWrites.get(this.#channel) ?? 0);
  }
}
