import { redact } from '../audit/index.ts';
import { systemClock, type Clock } from '../clock.ts';
import { alertChannels, type ChannelPoster } from '../control/alerts.ts';
import type { Alert, AlertSink } from '../control/types.ts';
import { describeError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';
import type { Policy } from '../policy/types.ts';
import { buildAlertMessage } from './blocks/alert.ts';
import type { WebClient } from './client.ts';
import { withSlackRetry, type SlackRetryOptions } from './retry.ts';

/** chat.postMessage with Warden's bounded retry; what control's ChannelAlertSink and checkpoint posting need. */
export class SlackChannelPoster implements ChannelPoster {
  readonly #client: WebClient;
  readonly #ctx: { clock: Clock; logger: Logger; retry?: SlackRetryOptions | undefined };

  constructor(
    client: WebClient,
    ctx: { clock: Clock; logger: Logger; retry?: SlackRetryOptions | undefined } = {
      clock: systemClock,
      logger: silentLogger(),
    },
  ) {
    this.#client = client;
    this.#ctx = ctx;
  }

  async post(channel: string, message: { text: string; blocks?: unknown[] | undefined }): Promise<void> {
    await withSlackRetry(
      `posting to ${channel} (chat.postMessage)`,
      () =>
        this.#client.chat.postMessage({
          channel,
          text: message.text,
          ...(message.blocks ? { blocks: message.blocks as never } : {}),
          unfurl_links: false,
        }),
      this.#ctx,
    );
  }
}

export interface SlackAlertSinkOptions {
  client: WebClient;
  policy: PolicySource;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  retry?: SlackRetryOptions | undefined;
}

/**
 * Posts alerts to the agent's channel and on-call (routing is control's
 * `alertChannels`). Never throws and never blocks the caller: posting runs in
 * the background and failures are logged. `idle()` waits for posts in flight.
 */
export class SlackAlertSink implements AlertSink {
  readonly #poster: SlackChannelPoster;
  readonly #policy: () => Policy;
  readonly #logger: Logger;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(opts: SlackAlertSinkOptions) {
    this.#logger = opts.logger ?? silentLogger();
    this.#policy = policyGetter(opts.policy);
    this.#poster = new SlackChannelPoster(opts.client, {
      clock: opts.clock ?? systemClock,
      logger: this.#logger,
      retry: opts.retry,
    });
  }

  alert(alert: Alert): void {
    try {
      const safe: Alert = {
        ...alert,
        detail: alert.detail ? (redact(alert.detail) as Record<string, unknown>) : undefined,
      };
      const message = buildAlertMessage(safe);
      for (const channel of alertChannels(this.#policy(), safe)) {
        const p = this.#poster
          .post(channel, message)
          .catch((err: unknown) =>
            this.#logger.error({ channel, kind: alert.kind, err: describeError(err) }, 'Slack alert not delivered'),
          )
          .finally(() => this.#inFlight.delete(p));
        this.#inFlight.add(p);
      }
    } catch (err) {
      this.#logger.error({ kind: alert.kind, err: describeError(err) }, 'Slack alert could not be prepared');
    }
  }

  /** Resolves when every alert posted so far has been delivered or given up on. */
  async idle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }
}
