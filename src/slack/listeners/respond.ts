import type { BlockAction, ButtonAction, RespondArguments, webApi } from '@slack/bolt';
import { actorLabel, type ControlActor } from '../../control/authorize.ts';
import { describeError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { SlackDeps } from '../deps.ts';
import { z } from 'zod';

/** Approval ids as the service makes them; anything else in a button value is refused before any lookup. */
export const approvalIdSchema = z.string().regex(/^apr_[0-9a-f-]{36}$/, 'not an approval id');

/**
 * Tells one user something only they see, in the channel they clicked in.
 * Best effort: the click's outcome is already decided and audited.
 */
export async function tellUser(
  client: webApi.WebClient,
  logger: Logger,
  where: { channel?: string | undefined; user: string; threadTs?: string | undefined },
  text: string,
): Promise<void> {
  if (!where.channel) {
    logger.warn({ user: where.user }, 'no channel to tell the user in');
    return;
  }
  try {
    await client.chat.postEphemeral({
      channel: where.channel,
      user: where.user,
      text,
      ...(where.threadTs ? { thread_ts: where.threadTs } : {}),
    });
  } catch (err) {
    logger.warn({ user: where.user, err: describeError(err) }, 'ephemeral message not delivered');
  }
}

/** Who clicked an approval-card button, where, and on which approval. */
export interface ApprovalClick {
  approvalId: string;
  user: string;
  where: { channel: string | undefined; user: string };
}

/**
 * Reads an approval-card button click (call after ack). A button value that
 * is not an approval id is refused to the clicker and yields null, so no
 * lookup or decision happens for it.
 */
export async function readApprovalClick(
  body: BlockAction<ButtonAction>,
  action: ButtonAction,
  client: webApi.WebClient,
  logger: Logger,
): Promise<ApprovalClick | null> {
  const user = body.user.id;
  const where = { channel: body.channel?.id, user };
  const id = approvalIdSchema.safeParse(action.value);
  if (!id.success) {
    await tellUser(client, logger, where, 'This button does not carry a valid approval id.');
    return null;
  }
  return { approvalId: id.data, user, where };
}

/** A built message (text and blocks) as an answer only the asker sees. */
export const ephemeral = (m: { text: string; blocks: unknown[] }): RespondArguments => ({
  response_type: 'ephemeral',
  text: m.text,
  blocks: m.blocks as never,
});

/**
 * Records a refused command or button (`control.refused`, `audit.refused`):
 * who, what they tried, why not. Best effort: the refusal stands even if the
 * row cannot be written, and the failure is logged.
 */
export async function recordRefusal(
  deps: Pick<SlackDeps, 'audit' | 'logger'>,
  event: 'control.refused' | 'audit.refused',
  actor: ControlActor,
  action: string,
  reason: string,
  detail: Record<string, unknown> = {},
): Promise<void> {
  await deps.audit
    .append({ event, decision: 'forbidden', reason, detail: { action, actor: actorLabel(actor), ...detail } })
    .catch((err: unknown) =>
      deps.logger.error({ err: describeError(err), event, action }, 'auditing a refusal failed'),
    );
}
