import type { Clock } from '../clock.ts';
import { WardenError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface SlackRetryOptions {
  /** Total attempts, the first included. Default 3. */
  maxAttempts?: number | undefined;
  /** A Retry-After longer than this is not waited for: the call fails at once. Default 30 s. */
  maxRetryAfterMs?: number | undefined;
  /** First back-off after a network or 5xx failure, doubled each time. Default 1 s. */
  backoffMs?: number | undefined;
}

export interface SlackRetryContext {
  clock: Clock;
  logger: Logger;
  retry?: SlackRetryOptions | undefined;
  /**
   * When the result stops being useful (an approval card: the approval's expiry). With a
   * deadline, rate limits are waited out however often they come, as long as the wait ends
   * before it: a card must not be dropped because a burst met Slack's per-channel limit.
   */
  deadline?: number | undefined;
}

type Failure =
  | { kind: 'ratelimited'; retryAfterMs: number; message: string }
  | { kind: 'transient' | 'fatal'; message: string };

/** Sorts a Web API client error into: wait and retry, back off and retry, or give up. */
export function classifySlackError(err: unknown): Failure {
  const e = err as {
    code?: string;
    retryAfter?: number;
    data?: { error?: string };
    statusCode?: number;
    original?: Error;
    message?: string;
  };
  switch (e?.code) {
    case 'slack_webapi_rate_limited_error': {
      const seconds = typeof e.retryAfter === 'number' && e.retryAfter >= 0 ? e.retryAfter : 1;
      return {
        kind: 'ratelimited',
        retryAfterMs: seconds * 1000,
        message: `Slack rate-limited the request (Retry-After ${seconds} s)`,
      };
    }
    case 'slack_webapi_platform_error':
      return { kind: 'fatal', message: `Slack refused the request: ${e.data?.error ?? 'unknown error'}` };
    case 'slack_webapi_http_error':
      return (e.statusCode ?? 0) >= 500
        ? { kind: 'transient', message: `Slack answered HTTP ${e.statusCode}` }
        : { kind: 'fatal', message: `Slack answered HTTP ${e.statusCode}` };
    case 'slack_webapi_request_error':
      return {
        kind: 'transient',
        message: `Slack is unreachable (${e.original?.message ?? e.message ?? 'request failed'})`,
      };
    default:
      return { kind: 'fatal', message: e?.message ?? String(err) };
  }
}

function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimeout(resolve, ms));
}

/**
 * Runs a Web API call with bounded retries: waits exactly Retry-After on 429
 * (unless longer than `maxRetryAfterMs`), backs off on network and 5xx
 * failures, and gives up at once on Slack's own refusals (invalid_blocks,
 * channel_not_found…). The final error is a WardenError SLACK_UNAVAILABLE
 * whose message says why.
 */
export async function withSlackRetry<T>(what: string, fn: () => Promise<T>, ctx: SlackRetryContext): Promise<T> {
  const maxAttempts = Math.max(1, ctx.retry?.maxAttempts ?? 3);
  const maxRetryAfterMs = ctx.retry?.maxRetryAfterMs ?? 30_000;
  const backoffMs = ctx.retry?.backoffMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const failure = classifySlackError(err);
      if (failure.kind === 'fatal')
        throw new WardenError('SLACK_UNAVAILABLE', `${what}: ${failure.message}`, { cause: err });
      if (failure.kind === 'ratelimited' && ctx.deadline !== undefined) {
        if (ctx.clock.now() + failure.retryAfterMs >= ctx.deadline) {
          throw new WardenError(
            'SLACK_UNAVAILABLE',
            `${what}: ${failure.message}, and the wait would outlast the approval (expires ${new Date(ctx.deadline).toISOString()})`,
            { cause: err },
          );
        }
        ctx.logger.info({ what, attempt, waitMs: failure.retryAfterMs }, 'Slack rate limit; waiting for Retry-After');
        await sleep(ctx.clock, failure.retryAfterMs);
        continue;
      }
      if (failure.kind === 'ratelimited' && failure.retryAfterMs > maxRetryAfterMs) {
        throw new WardenError(
          'SLACK_UNAVAILABLE',
          `${what}: ${failure.message}, longer than Warden waits (${maxRetryAfterMs / 1000} s)`,
          { cause: err },
        );
      }
      if (attempt >= maxAttempts) {
        throw new WardenError('SLACK_UNAVAILABLE', `${what}: ${failure.message}; gave up after ${attempt} attempts`, {
          cause: err,
        });
      }
      const waitMs = failure.kind === 'ratelimited' ? failure.retryAfterMs : backoffMs * 2 ** (attempt - 1);
      ctx.logger.warn({ what, attempt, waitMs, reason: failure.message }, 'Slack call failed; retrying');
      await sleep(ctx.clock, waitMs);
    }
  }
}
