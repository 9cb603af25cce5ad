import type { Clock } from '../clock.ts';
import type { Db, Statement } from '../store/db.ts';

/** Slack's own freshness window for signed requests. */
export const SIGNATURE_WINDOW_MS = 5 * 60_000;

/**
 * Bolt checks the signature and rejects timestamps older than five minutes,
 * but accepts the same signed request any number of times within them (and
 * does not bound timestamps in the future). This remembers each signature for
 * as long as its request could still pass, so a captured click or command
 * cannot be replayed. The memory is the slack_seen_signatures table (owned
 * here): it survives a restart and is shared by every Warden process on the
 * database, so a request accepted by one is refused by all.
 */
export class ReplayGuard {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #prune: Statement<[number]>;
  readonly #remember: Statement<[string, number]>;
  readonly #count: Statement<[], number>;

  constructor(db: Db, clock: Clock, windowMs: number = SIGNATURE_WINDOW_MS) {
    this.#clock = clock;
    this.#windowMs = windowMs;
    // Strictly past: at expires_at itself the request is still at the window's edge, which passes.
    this.#prune = db.prepare('DELETE FROM slack_seen_signatures WHERE expires_at < ?');
    // One statement decides: two processes receiving the same request at once cannot both insert it.
    this.#remember = db.prepare(
      'INSERT INTO slack_seen_signatures (signature, expires_at) VALUES (?, ?) ON CONFLICT (signature) DO NOTHING',
    );
    this.#count = db.prepare<[], number>('SELECT count(*) AS n FROM slack_seen_signatures').pluck();
  }

  /** Null when the request is fresh (and is now remembered); otherwise why it is refused. */
  check(signature: string | undefined, timestampSec: number): string | null {
    const now = this.#clock.now();
    this.#prune.run(now);
    if (!signature) return 'missing x-slack-signature';
    if (!Number.isFinite(timestampSec)) return 'missing or malformed x-slack-request-timestamp';
    const tsMs = timestampSec * 1000;
    if (tsMs > now + this.#windowMs) return 'x-slack-request-timestamp is in the future';
    if (tsMs < now - this.#windowMs) return 'x-slack-request-timestamp is stale';
    const inserted = this.#remember.run(signature, Math.max(now, tsMs) + this.#windowMs).changes;
    if (inserted === 0) return 'replayed request (signature already seen)';
    return null;
  }

  /**
   * Socket Mode: Slack sends each envelope on one of the app's connections,
   * and again (same envelope_id) when it saw no ack in time, possibly on
   * another replica's connection. The envelope is remembered in the same
   * table (`socket:` keys cannot collide with `v0=` signatures), so it is
   * handled by one process once. Null when it is new.
   */
  checkEnvelope(envelopeId: string | undefined): string | null {
    const now = this.#clock.now();
    this.#prune.run(now);
    if (!envelopeId) return 'missing envelope_id';
    const inserted = this.#remember.run(`socket:${envelopeId}`, now + this.#windowMs).changes;
    if (inserted === 0) return 'envelope already handled (by this or another Warden process)';
    return null;
  }

  /** Signatures remembered (by every process on the database). */
  get size(): number {
    return this.#count.get() ?? 0;
  }
}
