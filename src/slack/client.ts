import { webApi } from '@slack/bolt';
import type { Logger } from '../logger.ts';
import { boltLogger } from './bolt-logger.ts';

export type WebClient = InstanceType<typeof webApi.WebClient>;
export type WebClientOptions = NonNullable<ConstructorParameters<typeof webApi.WebClient>[1]>;

export interface SlackClientConfig {
  botToken: string;
  /** Web API base URL; tests point it at the local Slack API server. */
  apiUrl?: string | undefined;
}

/**
 * Web API client options shared by the Bolt app and the notifier. The
 * client's own retries are off and rate limits are rejected, not slept on:
 * its built-in policy retries for ~30 minutes on real timers, which would hold
 * an agent's call hostage. Warden retries itself, bounded and on the injected
 * clock (see retry.ts).
 */
export function slackClientOptions(
  config: Pick<SlackClientConfig, 'apiUrl'>,
  logger: Logger,
  extra: Partial<WebClientOptions> = {},
): WebClientOptions {
  return {
    ...(config.apiUrl ? { slackApiUrl: config.apiUrl } : {}),
    logger: boltLogger(logger),
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: 10_000,
    ...extra,
  };
}

export function createSlackClient(
  config: SlackClientConfig,
  logger: Logger,
  extra: Partial<WebClientOptions> = {},
): WebClient {
  return new webApi.WebClient(config.botToken, slackClientOptions(config, logger, extra));
}
