export { createSlackApp, type CreateSlackAppOptions, type SlackApp, type SlackAppConfig } from './app.ts';
export {
  createSlackClient,
  slackClientOptions,
  type SlackClientConfig,
  type WebClient,
  type WebClientOptions,
} from './client.ts';
export { SlackNotifier, type SlackNotifierOptions } from './notifier.ts';
export { SlackAlertSink, SlackChannelPoster, type SlackAlertSinkOptions } from './alert-sink.ts';
export { withSlackRetry, classifySlackError, type SlackRetryOptions } from './retry.ts';
export { ReplayGuard, SIGNATURE_WINDOW_MS } from './replay-guard.ts';
export { boltLogger } from './bolt-logger.ts';
export type { SlackDeps } from './deps.ts';
export { registerListeners } from './listeners/index.ts';
