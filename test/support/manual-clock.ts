/**
 * A Clock whose time moves only when a test says so. Timers scheduled through
 * it fire in time order during `advance`/`tick`; real I/O (HTTP, SQLite,
 * setImmediate) keeps running on the real event loop, so a test can hold
 * Warden's timeouts still while a real Slack request goes through.
 *
 *   const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
 *   await clock.tick(15 * 60_000);            // fire everything due, letting async work settle between timers
 *   await clock.advanceTo(start + 31_000);     // the same, to an absolute time
 *   await clock.runUntil(promise);            // advance in steps until `promise` settles
 */
import type { Clock } from '../../src/clock.ts';

interface Timer {
  id: number;
  at: number;
  fn: () => void;
  every?: number | undefined;
}

export class ManualClock implements Clock {
  private t: number;
  private mono = 0;
  private nextId = 1;
  private timers = new Map<number, Timer>();

  constructor(start: number = Date.now()) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  monotonic(): number {
    return this.mono;
  }

  setTimeout(fn: () => void, ms: number): NodeJS.Timeout {
    return this.add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): NodeJS.Timeout {
    return this.add(fn, ms, Math.max(1, ms));
  }

  clearTimeout(handle: NodeJS.Timeout): void {
    this.timers.delete((handle as unknown as { id: number }).id);
  }

  clearInterval(handle: NodeJS.Timeout): void {
    this.clearTimeout(handle);
  }

  /** Timers still scheduled (intervals included). */
  get pending(): number {
    return this.timers.size;
  }

  /** Earliest scheduled time, if any. */
  nextAt(): number | undefined {
    let min: number | undefined;
    for (const t of this.timers.values()) if (min === undefined || t.at < min) min = t.at;
    return min;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order; after each one,
   * lets real async work (promises, setImmediate, sockets) run for a moment.
   */
  async tick(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.values()].filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.setTime(due.at);
      if (due.every !== undefined) due.at += due.every;
      else this.timers.delete(due.id);
      due.fn();
      await settle();
    }
    this.setTime(end);
    await settle();
  }

  /** Moves time forward to the absolute time `at` (no-op if already past), firing due timers like `tick`. */
  async advanceTo(at: number): Promise<void> {
    await this.tick(Math.max(0, at - this.t));
  }

  /** Advances in `stepMs` steps until `promise` settles (or `maxMs` of fake time passes). */
  async runUntil<T>(promise: Promise<T>, opts: { stepMs?: number; maxMs?: number } = {}): Promise<T> {
    const stepMs = opts.stepMs ?? 100;
    const maxMs = opts.maxMs ?? 60 * 60_000;
    let done = false;
    const watched = promise.finally(() => {
      done = true;
    });
    watched.catch(() => undefined);
    for (let elapsed = 0; !done && elapsed <= maxMs; elapsed += stepMs) {
      await this.tick(stepMs);
      // Give real I/O (an HTTP round trip) a chance before moving time again.
      for (let i = 0; i < 5 && !done; i++) await new Promise((r) => setTimeout(r, 2));
    }
    return watched;
  }

  private setTime(t: number): void {
    if (t > this.t) {
      this.mono += t - this.t;
      this.t = t;
    }
  }

  private add(fn: () => void, ms: number, every: number | undefined): NodeJS.Timeout {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn, every });
    const handle = {
      id,
      unref: () => handle,
      ref: () => handle,
      hasRef: () => false,
      refresh: () => handle,
      [Symbol.toPrimitive]: () => id,
    };
    return handle as unknown as NodeJS.Timeout;
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}
