import type { Clock } from '../clock.ts';

/** Slack's own freshness window for signed requests. */
export const SIGNATURE_WINDOW_MS = 5 * 60_000;

/**
 * Bolt checks the signature and rejects timestamps older than five minutes,
 * but accepts the same signed request any number of times within them (and
 * does not bound timestamps in the future). This remembers each signature for
 * as long as its request could still pass, so a captured click cannot be
 * replayed.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    private readonly windowMs: number = SIGNATURE_WINDOW_MS,
  ) {}

  /** Null when the request is fresh (and is now remembered); otherwise why it is refused. */
  check(signature: string | undefined, timestampSec: number): string | null {
    const now = this.clock.now();
    this.prune(now);
    if (!signature) return 'missing x-slack-signature';
    if (!Number.isFinite(timestampSec)) return 'missing or malformed x-slack-request-timestamp';
    const tsMs = timestampSec * 1000;
    if (tsMs > now + this.windowMs) return 'x-slack-request-timestamp is in the future';
    if (tsMs < now - this.windowMs) return 'x-slack-request-timestamp is stale';
    if (this.seen.has(signature)) return 'replayed request (signature already seen)';
    this.seen.set(signature, Math.max(now, tsMs) + this.windowMs);
    return null;
  }

  get size(): number {
    return this.seen.size;
  }

  private prune(now: number): void {
    for (const [signature, expires] of this.seen) {
      // Strictly past: at expires itself the request is still at the window's edge, which passes.
      if (expires < now) this.seen.delete(signature);
    }
  }
}
