import { closeSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { z } from 'zod';
import { WardenError } from '../errors.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { ExternalCheckpoint } from './verify.ts';

/**
 * The local witness (WARDEN_CHECKPOINT_WITNESS=FILE): one JSON line per
 * checkpoint, appended, for setups without a compliance channel. It is worth
 * what its file is out of the database's reach: another disk or host, a log
 * shipper, `chattr +a`. Someone who can rewrite both the database and this
 * file can make them agree; the signature still stops them signing new heads
 * without the key.
 */

const witnessLine = z.strictObject({
  seq: z.number().int().min(0),
  head_hash: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex digits'),
  ts: z.number().int().min(0),
  signature: z.string().min(1),
  public_key: z.string().min(1),
});

/**
 * Appends one line and fsyncs it before returning: a checkpoint the witness
 * may have lost is one that cannot be counted on. One write() of a short line
 * with O_APPEND, so concurrent writers never interleave inside a line.
 */
export function appendWitness(file: string, cp: Checkpoint): void {
  const line = `${JSON.stringify({ seq: cp.seq, head_hash: cp.head_hash, ts: cp.ts, signature: cp.signature, public_key: cp.public_key })}\n`;
  let fd: number;
  try {
    fd = openSync(file, 'a', 0o600);
  } catch (err) {
    throw witnessError('AUDIT_WRITE_FAILED', file, err);
  }
  try {
    writeSync(fd, line);
    fsyncSync(fd);
  } catch (err) {
    throw witnessError('AUDIT_WRITE_FAILED', file, err);
  } finally {
    closeSync(fd);
  }
}

/** Every checkpoint in the witness file; a line that is not one is bad input naming the file, line and field. */
export function readWitness(file: string): ExternalCheckpoint[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw witnessError('INVALID_INPUT', file, err);
  }
  const out: ExternalCheckpoint[] = [];
  const lines = text.split('\n');
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const where = `${file}:${index + 1}`;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new WardenError('INVALID_INPUT', `witness ${where}: not a JSON line`, {
        details: { file, line: index + 1 },
      });
    }
    const parsed = witnessLine.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new WardenError('INVALID_INPUT', `witness ${where}: ${issue.path.join('.') || 'line'}: ${issue.message}`, {
        details: { file, line: index + 1 },
      });
    }
    out.push({ checkpoint: parsed.data, source: `witness ${where}` });
  }
  return out;
}

function witnessError(code: 'INVALID_INPUT' | 'AUDIT_WRITE_FAILED', file: string, err: unknown): WardenError {
  return new WardenError(
    code,
    `cannot use the checkpoint witness ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    { details: { file } },
  );
}
