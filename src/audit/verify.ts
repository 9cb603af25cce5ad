import type { KeyObject } from 'node:crypto';
import { isoTime } from '../clock.ts';
import type { Db } from '../store/db.ts';
import { GENESIS_HASH, rowHash } from './canonical.ts';
import {
  listCheckpoints,
  publicKeyBase64,
  verifyCheckpoint,
  type Checkpoint,
  type CheckpointRef,
} from './checkpoint.ts';
import type { ChainHead } from './chain.ts';
import type { AuditRow } from './types.ts';

export type ProblemKind = 'altered' | 'missing' | 'inserted' | 'reordered' | 'truncated' | 'uncovered';

export interface VerifyProblem {
  /** The first row (position) that is not what the chain says it should be. */
  seq: number;
  kind: ProblemKind;
  message: string;
}

/** A signed checkpoint that verified, and where it came from. */
export interface SignedCheckpointSeen {
  seq: number;
  ts: number;
  label: string;
}

export interface VerifyReport {
  ok: boolean;
  /** Rows verified before the first problem (all rows when ok). */
  count: number;
  /** Last verified row; seq 0 and the genesis hash when none. */
  head: ChainHead;
  /** Checkpoints (stored, external and supplied) compared against the chain. */
  checkpointsChecked: number;
  /** Signed checkpoints whose signature verified (stored and external). */
  signedCount: number;
  /** The newest of those (highest seq, then latest ts): how far the trail is covered. */
  newestSigned?: SignedCheckpointSeen | undefined;
  firstProblem?: VerifyProblem | undefined;
}

/** A signed checkpoint kept outside the database, and where it was found (named in messages). */
export interface ExternalCheckpoint {
  checkpoint: Checkpoint;
  /** e.g. "the compliance channel C0123 (message 1790000000.000100)", "witness /var/lib/warden/witness line 3". */
  source: string;
}

export interface VerifyOptions {
  /** Unsigned heads kept outside the database (`--checkpoint seq:hash`). */
  checkpoints?: readonly (CheckpointRef & { label?: string })[] | undefined;
  /** Signed checkpoints from outside the database: the compliance channel, a witness file. */
  external?: readonly ExternalCheckpoint[] | undefined;
  /**
   * When given, every signed checkpoint must be signed by this key, and at
   * least one must be: a trail with none could have had its checkpoints
   * deleted along with the rows they covered.
   */
  trustedPublicKey?: string | KeyObject | undefined;
}

interface Expectation {
  seq: number;
  hash: string;
  label: string;
}

const short = (h: string) => `${h.slice(0, 12)}…`;

/**
 * Walks the chain in seq order (streaming, so memory stays flat on large
 * tables) and reports the first row that is not what the chain says.
 * Classification, once a row does not link to the one before it:
 * - its prev_hash names no row at all → `missing` (rows removed), unless the
 *   row itself is intact and seq is contiguous, in which case the previous
 *   row was rewritten with a fresh hash → `altered` at that row;
 * - its prev_hash names an earlier row → the rows between were `inserted`;
 * - its prev_hash names a later row → `reordered`.
 * A row that links but does not match its own hash is `altered`, or
 * `inserted` when the next row links past it. A chain shorter than, or
 * different from, a checkpoint is `truncated`. With a trusted key and no
 * checkpoint signed by it, the trail is `uncovered`.
 */
export function verifyChain(db: Db, opts: VerifyOptions = {}): VerifyReport {
  const candidates: VerifyProblem[] = [];
  const expectations = new Map<number, Expectation[]>();
  let checkpointsChecked = 0;
  let signedCount = 0;
  let newestSigned: SignedCheckpointSeen | undefined;
  const expect = (e: Expectation) => {
    checkpointsChecked++;
    const list = expectations.get(e.seq) ?? [];
    list.push(e);
    expectations.set(e.seq, list);
  };

  // Read once, and outside verifyCheckpoint's catch-all: an unreadable
  // trusted key is the operator's input error, not evidence of tampering.
  const trusted = opts.trustedPublicKey === undefined ? undefined : publicKeyBase64(opts.trustedPublicKey);
  const withKey = trusted === undefined ? '' : ' with the trusted public key';
  const signed: { checkpoint: Checkpoint; label: string; forged: string }[] = [
    ...listCheckpoints(db).map((checkpoint) => ({
      checkpoint,
      label: `signed checkpoint of ${isoTime(checkpoint.ts)}`,
      forged: 'audit_checkpoints was tampered with',
    })),
    ...(opts.external ?? []).map(({ checkpoint, source }) => ({
      checkpoint,
      label: `checkpoint of ${isoTime(checkpoint.ts)} from ${source}`,
      forged: 'it was forged or damaged where it was kept',
    })),
  ];
  for (const { checkpoint: cp, label, forged } of signed) {
    if (!verifyCheckpoint(cp, trusted)) {
      candidates.push({
        seq: cp.seq,
        kind: 'altered',
        message: `the ${label} at seq ${cp.seq} does not verify${withKey}: ${forged}`,
      });
      continue;
    }
    signedCount++;
    if (!newestSigned || cp.seq > newestSigned.seq || (cp.seq === newestSigned.seq && cp.ts > newestSigned.ts))
      newestSigned = { seq: cp.seq, ts: cp.ts, label };
    expect({ seq: cp.seq, hash: cp.head_hash, label });
  }
  // Reported only when nothing worse is found: evidence of tampering says more.
  const uncovered: VerifyProblem | undefined =
    trusted !== undefined && signedCount === 0
      ? {
          seq: 1,
          kind: 'uncovered',
          message:
            'no checkpoint signed by the trusted public key was found (stored, or given from outside the database): nothing shows that the trail was not cut or rewritten, and its checkpoints deleted with it',
        }
      : undefined;
  for (const cp of opts.checkpoints ?? [])
    expect({
      seq: cp.seq,
      hash: cp.head_hash.toLowerCase(),
      label: cp.label ?? `checkpoint ${cp.seq}:${short(cp.head_hash)}`,
    });

  for (const e of expectations.get(0) ?? []) {
    if (e.hash !== GENESIS_HASH)
      candidates.push({ seq: 0, kind: 'truncated', message: `${e.label} names seq 0 with a non-genesis hash` });
  }

  let prev: ChainHead = { seq: 0, hash: GENESIS_HASH };
  let count = 0;
  let broken: { row: AuditRow; why: 'link' | 'hash' } | undefined;
  let cpMismatch: { row: AuditRow; e: Expectation } | undefined;

  const rows = db.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq').iterate();
  for (const row of rows) {
    if (row.prev_hash !== prev.hash || row.seq !== prev.seq + 1) {
      broken = { row, why: 'link' };
      break;
    }
    if (rowHash(row) !== row.hash) {
      broken = { row, why: 'hash' };
      break;
    }
    const mismatch = expectations.get(row.seq)?.find((e) => e.hash !== row.hash);
    if (mismatch) {
      cpMismatch = { row, e: mismatch };
      break;
    }
    count++;
    prev = { seq: row.seq, hash: row.hash };
  }
  // The iterator is closed now, so the connection is free for the look-ups below.

  if (broken) candidates.push(classify(db, broken.row, broken.why, prev));
  else if (cpMismatch) {
    const { row, e } = cpMismatch;
    candidates.push({
      seq: row.seq,
      kind: 'truncated',
      message: `row ${row.seq} has hash ${short(row.hash)} but the ${e.label} recorded ${short(e.hash)}: the chain was cut and rebuilt at or before this row`,
    });
  } else {
    let latest: Expectation | undefined;
    for (const list of expectations.values())
      for (const e of list) if (e.seq > prev.seq && (!latest || e.seq > latest.seq)) latest = e;
    if (latest) {
      candidates.push({
        seq: prev.seq + 1,
        kind: 'truncated',
        message: `the chain ends at seq ${prev.seq} but the ${latest.label} recorded seq ${latest.seq} (head ${short(latest.hash)}): rows ${prev.seq + 1}..${latest.seq} were cut`,
      });
    }
  }

  const firstProblem = candidates.sort((a, b) => a.seq - b.seq)[0] ?? uncovered;
  return {
    ok: firstProblem === undefined,
    count,
    head: prev,
    checkpointsChecked,
    signedCount,
    newestSigned,
    firstProblem,
  };
}

function classify(db: Db, row: AuditRow, why: 'link' | 'hash', prev: ChainHead): VerifyProblem {
  const at = prev.seq + 1;
  if (why === 'hash') {
    const next = db
      .prepare<[number], { seq: number; prev_hash: string }>(
        'SELECT seq, prev_hash FROM audit WHERE seq > ? ORDER BY seq LIMIT 1',
      )
      .get(row.seq);
    if (next && next.prev_hash === row.prev_hash) {
      return {
        seq: row.seq,
        kind: 'inserted',
        message: `row ${row.seq} is not part of the chain: its hash does not match its content and row ${next.seq} links past it`,
      };
    }
    return {
      seq: row.seq,
      kind: 'altered',
      message: `row ${row.seq} does not match its hash (stored ${short(row.hash)}, computed ${short(rowHash(row))}): its content was changed`,
    };
  }
  if (row.prev_hash === prev.hash) {
    // Links, yet seq jumps: the seq column itself was edited.
    return {
      seq: row.seq,
      kind: 'altered',
      message: `seq jumps from ${prev.seq} to ${row.seq} although row ${row.seq} links to row ${prev.seq}: its seq was changed`,
    };
  }
  const target = db
    .prepare<[string], { seq: number }>('SELECT seq FROM audit WHERE hash = ? ORDER BY seq LIMIT 1')
    .get(row.prev_hash);
  if (!target) {
    if (row.prev_hash === GENESIS_HASH) {
      return {
        seq: row.seq,
        kind: 'inserted',
        message: `row ${row.seq} claims to start the chain (genesis prev_hash) but follows row ${prev.seq}`,
      };
    }
    if (row.seq > at) {
      const range = row.seq - 1 > at ? `rows ${at}..${row.seq - 1} are` : `row ${at} is`;
      return {
        seq: at,
        kind: 'missing',
        message: `${range} missing: row ${row.seq} links to ${short(row.prev_hash)}, which no row has`,
      };
    }
    if (prev.seq > 0 && rowHash(row) === row.hash) {
      return {
        seq: prev.seq,
        kind: 'altered',
        message: `row ${prev.seq} was rewritten with a fresh hash: row ${row.seq} still links to its original hash ${short(row.prev_hash)}`,
      };
    }
    return {
      seq: row.seq,
      kind: 'missing',
      message: `row ${row.seq} links to ${short(row.prev_hash)}, which no row has: the row before it was removed and later rows renumbered`,
    };
  }
  if (target.seq < prev.seq) {
    const range = prev.seq > target.seq + 1 ? `rows ${target.seq + 1}..${prev.seq} are` : `row ${prev.seq} is`;
    return {
      seq: target.seq + 1,
      kind: 'inserted',
      message: `${range} not in the original chain: row ${row.seq} links straight to row ${target.seq}`,
    };
  }
  if (target.seq > row.seq) {
    return {
      seq: at,
      kind: 'reordered',
      message: `row ${row.seq} is out of place: it links to row ${target.seq}, which comes after it`,
    };
  }
  return { seq: row.seq, kind: 'altered', message: `row ${row.seq} links to itself` };
}
