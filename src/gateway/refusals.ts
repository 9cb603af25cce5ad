import type { AuditSink } from '../audit/types.ts';
import type { Clock } from '../clock.ts';
import type { AlertSink } from '../control/types.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/**
 * Requests the gateway refuses at its edge, before an agent is known or
 * before a request is whole, written to the audit trail in aggregate: per
 * (event, remote address, code) and window, the first refusal at once, the
 * rest of the window as one counted row when it closes. Such requests cost a
 * caller nothing, so without this anyone who can reach the port could grow
 * the trail without bound; the window is short so that a crash (kill -9)
 * loses at most about a second of counts.
 */
export const REFUSAL_WINDOW_MS = 1_000;
/** An alert per (remote, code) at most this often: the trail counts every refusal, the on-call channel needs one. */
export const REFUSAL_ALERT_EVERY_MS = 60_000;
/** Open windows beyond this are written out early rather than held in memory. */
const MAX_WINDOWS = 1_000;
/** Agents named in one aggregated row, at most. */
const MAX_AGENTS = 20;

/** Why an unauthenticated or incomplete request was refused (auth.failed); each one a RefusalCode. */
export type AuthFailureCode =
  | 'token_missing'
  | 'token_malformed'
  | 'token_unknown'
  | 'token_revoked'
  | 'agent_mismatch'
  | 'session_mismatch'
  /** Node answered 431 before Warden could read the Authorization header. */
  | 'headers_too_large';

/** Why a connection or request was refused for a limit (request.refused); each one a RefusalCode. */
export type LimitRefusalCode =
  | 'too_many_connections'
  | 'too_many_connections_from_address'
  | 'headers_timeout'
  | 'body_timeout';

export type EdgeRefusal =
  | {
      event: 'auth.failed';
      code: AuthFailureCode;
      remote: string;
      reason: string;
      agent?: string | undefined;
      method?: string | undefined;
      userAgent?: string | undefined;
    }
  | {
      event: 'request.refused';
      code: LimitRefusalCode;
      remote: string;
      reason: string;
      /** When the refused request had already authenticated (a slow body). */
      agent?: string | undefined;
      /** The limit that was hit, for the first row of a window. */
      limit?: Record<string, number> | undefined;
    };

interface RefusalWindow {
  key: string;
  event: EdgeRefusal['event'];
  code: EdgeRefusal['code'];
  remote: string;
  openedAt: number;
  /** Refusals after the first one (which was audited on its own). */
  more: number;
  agents: Set<string>;
  timer: NodeJS.Timeout;
}

export interface RefusalRecorderOptions {
  audit: AuditSink;
  alerts: AlertSink;
  clock: Clock;
  logger: Logger;
  windowMs?: number | undefined;
}

export class RefusalRecorder {
  readonly #options: RefusalRecorderOptions;
  readonly #windowMs: number;
  readonly #windows = new Map<string, RefusalWindow>();
  /** When each (remote, code) pair was last alerted on. */
  readonly #alerted = new Map<string, number>();
  /** Aggregated rows still being written: flush() waits for them. */
  readonly #writes = new Set<Promise<void>>();

  constructor(options: RefusalRecorderOptions) {
    this.#options = options;
    this.#windowMs = options.windowMs ?? REFUSAL_WINDOW_MS;
  }

  /**
   * Counts one refusal. Resolves once it is on the trail when it opens a
   * window (so the refused client's answer follows the record), at once when
   * it is counted into an open one. Never rejects: a failed write is logged.
   */
  async record(refusal: EdgeRefusal): Promise<void> {
    const now = this.#options.clock.now();
    const key = `${refusal.event}|${refusal.remote}|${refusal.code}`;
    let open = this.#windows.get(key);
    // Its timer is late (a busy loop, or a clock the test moves): close it here.
    if (open && now - open.openedAt >= this.#windowMs) {
      this.#close(open);
      open = undefined;
    }
    const agent = refusal.agent;
    if (open) {
      open.more++;
      if (agent && open.agents.size < MAX_AGENTS) open.agents.add(agent);
      return;
    }
    if (this.#windows.size >= MAX_WINDOWS) for (const old of [...this.#windows.values()]) this.#close(old);
    const opened: RefusalWindow = {
      key,
      event: refusal.event,
      code: refusal.code,
      remote: refusal.remote,
      openedAt: now,
      more: 0,
      agents: new Set(),
      timer: undefined as unknown as NodeJS.Timeout,
    };
    opened.timer = this.#options.clock.setTimeout(() => this.#close(opened), this.#windowMs);
    opened.timer.unref?.();
    this.#windows.set(key, opened);

    const detail =
      refusal.event === 'auth.failed'
        ? {
            code: refusal.code,
            remote: refusal.remote,
            method: refusal.method,
            userAgent: refusal.userAgent,
            count: 1,
          }
        : { code: refusal.code, remote: refusal.remote, ...(refusal.limit ? { limit: refusal.limit } : {}), count: 1 };
    try {
      await this.#options.audit.append({
        event: refusal.event,
        agent,
        decision: 'deny',
        reason: refusal.reason,
        detail,
      });
    } catch (err) {
      this.#options.logger.error({ err: describeError(err), event: refusal.event }, 'audit write failed for a refusal');
    }
    this.#alert(refusal, now);
  }

  /** Writes every open window now (shutdown); resolves when they are committed. */
  async flush(): Promise<void> {
    for (const open of [...this.#windows.values()]) this.#close(open);
    await Promise.allSettled([...this.#writes]);
  }

  #alert(refusal: EdgeRefusal, now: number): void {
    // Limits are counted in the trail; only refused credentials are worth a person's attention.
    if (refusal.event !== 'auth.failed') return;
    const key = `${refusal.remote}|${refusal.code}`;
    const last = this.#alerted.get(key);
    if (last !== undefined && now - last < REFUSAL_ALERT_EVERY_MS) return;
    if (this.#alerted.size >= MAX_WINDOWS) this.#alerted.clear();
    this.#alerted.set(key, now);
    try {
      this.#options.alerts.alert({
        kind: 'auth_failed',
        severity: 'warning',
        agent: refusal.agent,
        text: `Warden refused a gateway request from ${refusal.remote}: ${refusal.reason}`,
        detail: { code: refusal.code, remote: refusal.remote },
      });
    } catch (err) {
      this.#options.logger.error({ err: describeError(err) }, 'alert sink threw');
    }
  }

  /** Ends a window: writes one row counting the refusals after its first, if there were any. */
  #close(open: RefusalWindow): void {
    this.#options.clock.clearTimeout(open.timer);
    if (this.#windows.get(open.key) === open) this.#windows.delete(open.key);
    if (open.more === 0) return;
    const agents = [...open.agents];
    const to = Math.min(this.#options.clock.now(), open.openedAt + this.#windowMs);
    const within = this.#windowMs >= 1000 ? `${this.#windowMs / 1000} s` : `${this.#windowMs} ms`;
    const write = this.#options.audit
      .append({
        event: open.event,
        agent: agents.length === 1 ? agents[0] : undefined,
        decision: 'deny',
        reason: `${open.more} more ${open.more === 1 ? 'request' : 'requests'} from ${open.remote} refused for the same cause (${open.code}) within ${within} of the first`,
        detail: {
          code: open.code,
          remote: open.remote,
          count: open.more,
          window: { from: open.openedAt, to, ms: this.#windowMs },
          ...(agents.length > 1 ? { agents } : {}),
        },
      })
      .then(
        () => undefined,
        (err: unknown) =>
          this.#options.logger.error(
            { err: describeError(err), count: open.more, code: open.code },
            'audit write failed for an aggregated refusal',
          ),
      );
    this.#writes.add(write);
    void write.finally(() => this.#writes.delete(write));
  }
}
