import { z } from 'zod';
import { CHECKPOINT_TEXT_PREFIX, parseCheckpointText, type ExternalCheckpoint } from '../audit/index.ts';
import { WardenError } from '../errors.ts';
import type { WebClient } from './client.ts';

const authSchema = z.object({
  ok: z.literal(true),
  user_id: z.string().min(1),
  bot_id: z.string().min(1).optional(),
});

const historySchema = z.object({
  ok: z.literal(true),
  messages: z.array(
    z.object({
      ts: z.string(),
      text: z.string().optional(),
      user: z.string().optional(),
      bot_id: z.string().optional(),
    }),
  ),
  has_more: z.boolean().optional(),
  response_metadata: z.object({ next_cursor: z.string().optional() }).optional(),
});

export interface PostedCheckpoints {
  checkpoints: ExternalCheckpoint[];
  /** Warden's own messages that start like a checkpoint but do not read as one (ts of each). */
  unreadable: string[];
  /** Messages looked at, all senders. */
  scanned: number;
}

/** Pages of this many messages; Slack's own ceiling for conversations.history is 999. */
const PAGE = 200;

/**
 * Reads back the checkpoints Warden posted to `channel` (conversations.history,
 * scopes channels:history / groups:history), newest first as Slack returns them.
 * Only Warden's own messages count: the channel's members can post text that
 * looks like a checkpoint, and what they post is neither Warden's word nor
 * signed by its key. Signatures are checked by verifyChain, not here.
 */
export async function fetchPostedCheckpoints(client: WebClient, channel: string): Promise<PostedCheckpoints> {
  const me = authSchema.safeParse(await slackCall(() => client.auth.test(), 'auth.test'));
  if (!me.success) throw unexpected('auth.test');
  const out: PostedCheckpoints = { checkpoints: [], unreadable: [], scanned: 0 };
  let cursor: string | undefined;
  do {
    const page = historySchema.safeParse(
      await slackCall(
        () => client.conversations.history({ channel, limit: PAGE, ...(cursor ? { cursor } : {}) }),
        'conversations.history',
      ),
    );
    if (!page.success) throw unexpected('conversations.history');
    for (const message of page.data.messages) {
      out.scanned++;
      const fromWarden =
        message.user === me.data.user_id || (me.data.bot_id !== undefined && message.bot_id === me.data.bot_id);
      if (!fromWarden || !message.text?.startsWith(CHECKPOINT_TEXT_PREFIX)) continue;
      const checkpoint = parseCheckpointText(message.text);
      if (!checkpoint) out.unreadable.push(message.ts);
      else out.checkpoints.push({ checkpoint, source: `the compliance channel ${channel} (message ${message.ts})` });
    }
    cursor = page.data.response_metadata?.next_cursor || undefined;
  } while (cursor);
  return out;
}

async function slackCall(call: () => Promise<unknown>, method: string): Promise<unknown> {
  try {
    return await call();
  } catch (err) {
    const code = (err as { data?: { error?: string } }).data?.error;
    const hint =
      code === 'missing_scope'
        ? ' (the app needs channels:history and groups:history: reinstall it from manifest.yml)'
        : code === 'not_in_channel' || code === 'channel_not_found'
          ? ' (invite Warden to the compliance channel, or check control.compliance_channel)'
          : '';
    throw new WardenError(
      'SLACK_UNAVAILABLE',
      `Slack ${method} failed: ${code ?? (err instanceof Error ? err.message : String(err))}${hint}`,
      { details: { method, error: code } },
    );
  }
}

function unexpected(method: string): WardenError {
  return new WardenError('SLACK_UNAVAILABLE', `Slack ${method} answered in an unexpected shape`, {
    details: { method },
  });
}
