import type { Checkpoint } from './checkpoint.ts';

/**
 * The message Warden posts to the compliance channel for each checkpoint.
 * It carries every signed field, so `audit verify --from-slack` can read the
 * checkpoint back from the channel and check its signature: what a person
 * sees there is the evidence itself, not a pointer into the database.
 */
export function checkpointText(cp: Checkpoint): string {
  return [
    `${CHECKPOINT_TEXT_PREFIX} — head seq \`${cp.seq}\` at ${new Date(cp.ts).toISOString()}`,
    `hash \`${cp.head_hash}\``,
    `signature \`${cp.signature}\``,
    `public key \`${cp.public_key}\``,
    `Verify later with \`warden audit verify --from-slack --public-key KEY\` (reads this message back) or \`warden audit verify --checkpoint ${cp.seq}:${cp.head_hash}\`: a chain shorter than this, or with a different hash here, was truncated or rewritten.`,
  ].join('\n');
}

/** How a checkpoint message starts: tells a checkpoint that does not parse from any other message. */
export const CHECKPOINT_TEXT_PREFIX = ':lock: *Audit checkpoint*';

const HEAD = /head seq `(\d+)` at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)/;
const HASH = /^hash `([0-9a-f]{64})`$/m;
const SIGNATURE = /^signature `([A-Za-z0-9+/=]+)`$/m;
const PUBLIC_KEY = /^public key `([A-Za-z0-9+/=]+)`$/m;

/**
 * Reads a checkpoint back from `checkpointText`'s output; undefined when the
 * text is not one. Whether it is genuine is for verifyCheckpoint to say: this
 * only reads the fields (the ISO time has millisecond precision, as does ts).
 */
export function parseCheckpointText(text: string): Checkpoint | undefined {
  if (!text.startsWith(CHECKPOINT_TEXT_PREFIX)) return undefined;
  const head = HEAD.exec(text);
  const hash = HASH.exec(text);
  const signature = SIGNATURE.exec(text);
  const publicKey = PUBLIC_KEY.exec(text);
  if (!head || !hash || !signature || !publicKey) return undefined;
  const ts = Date.parse(head[2]!);
  if (!Number.isFinite(ts)) return undefined;
  return { seq: Number(head[1]), head_hash: hash[1]!, ts, signature: signature[1]!, public_key: publicKey[1]! };
}
