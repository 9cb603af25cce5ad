import type { Clock } from '../clock.ts';
import type { AlertSink } from '../control/types.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';

const UPSTREAM_ALERT_EVERY_MS = 60_000;

/**
 * Wired to UpstreamManager.onFailure: alerts that an upstream failed, at most
 * once a minute per server. It needs nothing from the pipeline, so the
 * upstreams can be built before it.
 */
export class UpstreamFailureAlerts {
  readonly #alerts: AlertSink;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #lastAlert = new Map<string, number>();

  constructor(alerts: AlertSink, clock: Clock, logger: Logger) {
    this.#alerts = alerts;
    this.#clock = clock;
    this.#log = logger.child({ module: 'gateway' });
  }

  handle(server: string, message: string): void {
    const now = this.#clock.now();
    const last = this.#lastAlert.get(server) ?? -Infinity;
    // A crash-looping server would otherwise page once per call.
    if (now - last < UPSTREAM_ALERT_EVERY_MS) return;
    this.#lastAlert.set(server, now);
    try {
      this.#alerts.alert({ kind: 'upstream_failed', severity: 'warning', text: message, detail: { server } });
    } catch (err) {
      this.#log.error({ err: describeError(err), kind: 'upstream_failed' }, 'alert sink threw');
    }
  }
}
