import type { ApprovalNotifier, ApprovalRecord, ApprovalResultReport } from '../approvals/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import {
  buildApprovalCard,
  buildArgumentsThread,
  buildOutcomeReply,
  type SlackMessage,
} from './blocks/approval-card.ts';
import type { WebClient } from './client.ts';
import { ChannelPacer } from './channel-pacer.ts';
import { withSlackRetry, type SlackRetryContext, type SlackRetryOptions } from './retry.ts';
import { truncate } from './blocks/text.ts';

export interface SlackNotifierOptions {
  client: WebClient;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  retry?: SlackRetryOptions | undefined;
  /** Spacing of posts to one channel; default 1 s, Slack's limit for chat.postMessage. */
  postIntervalMs?: number | undefined;
}

/**
 * Approval cards in Slack: posted to the agent's channel, redrawn from the stored record.
 * Every chat.postMessage goes through one pacer per channel (see channel-pacer.ts).
 */
export class SlackNotifier implements ApprovalNotifier {
  readonly #client: WebClient;
  readonly #ctx: SlackRetryContext;
  readonly #pacer: ChannelPacer;

  constructor(opts: SlackNotifierOptions) {
    this.#client = opts.client;
    this.#ctx = { clock: opts.clock ?? systemClock, logger: opts.logger ?? silentLogger(), retry: opts.retry };
    this.#pacer = new ChannelPacer(this.#ctx.clock, opts.postIntervalMs ?? 1000);
  }

  /** Posts to `channel` in its turn; `deadline` lets rate limits be waited out until then. */
  #post<T>(channel: string, what: string, post: () => Promise<T>, deadline?: number): Promise<T> {
    return this.#pacer.run(channel, () => withSlackRetry(what, post, { ...this.#ctx, deadline }));
  }

  async postCard(record: ApprovalRecord): Promise<{ channel: string; ts: string }> {
    const channel = record.channel;
    if (!channel) {
      throw new WardenError(
        'SLACK_UNAVAILABLE',
        `agent ${record.agent} has no Slack channel in the policy, so nobody can be asked to approve`,
      );
    }
    const res = await this.#post(
      channel,
      'posting the approval card (chat.postMessage)',
      () => {
        // Built at the moment of posting, so a card that waited in the queue says how long.
        const message = buildApprovalCard(record, { postedAt: this.#ctx.clock.now() });
        return this.#client.chat.postMessage({
          channel,
          text: message.text,
          blocks: message.blocks,
          unfurl_links: false,
          unfurl_media: false,
        });
      },
      record.expiresAt,
    );
    if (!res.ts) throw new WardenError('SLACK_UNAVAILABLE', 'chat.postMessage returned no message ts');
    return { channel: res.channel ?? channel, ts: res.ts };
  }

  async updateCard(record: ApprovalRecord): Promise<void> {
    if (!record.channel || !record.messageTs) return;
    const message = buildApprovalCard(record);
    const { channel, messageTs } = record;
    await withSlackRetry(
      'redrawing the approval card (chat.update)',
      () => this.#client.chat.update({ channel, ts: messageTs, text: message.text, blocks: message.blocks }),
      this.#ctx,
    );
  }

  /**
   * The full (redacted) arguments in the card's thread when the card could
   * not show them all; in order, one message after the other. Rejects (after
   * bounded retries) if any part could not be posted: the service then fails
   * the request, since the card tells people to read them there.
   */
  async postDetails(record: ApprovalRecord): Promise<void> {
    const messages = buildArgumentsThread(record);
    for (const [i, message] of messages.entries()) {
      await this.#postInThread(
        record,
        `posting the full arguments, part ${i + 1} of ${messages.length} (chat.postMessage)`,
        { text: message.text, blocks: message.blocks, unfurl_media: false },
        record.expiresAt,
      );
    }
  }

  async postOutcome(record: ApprovalRecord, outcome: ApprovalResultReport): Promise<void> {
    const message = buildOutcomeReply(record, outcome);
    await this.#postInThread(record, 'posting the outcome (chat.postMessage)', {
      text: message.text,
      blocks: message.blocks,
    });
  }

  async postNote(record: ApprovalRecord, text: string): Promise<void> {
    await this.#postInThread(record, 'posting a note in the card thread (chat.postMessage)', {
      text: truncate(text, 3000),
    });
  }

  /** A reply in the card's thread (nothing when the card was never posted), in the channel's turn. */
  async #postInThread(
    record: ApprovalRecord,
    what: string,
    message: { text: string; blocks?: SlackMessage['blocks']; unfurl_media?: false },
    deadline?: number,
  ): Promise<void> {
    if (!record.channel || !record.messageTs) return;
    const { channel, messageTs } = record;
    await this.#post(
      channel,
      what,
      () => this.#client.chat.postMessage({ channel, thread_ts: messageTs, unfurl_links: false, ...message }),
      deadline,
    );
  }
}
