import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { systemClock, type Clock } from '../clock.ts';
import { WardenError } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { chainWriter } from './chain.ts';

/** A signed statement "the chain had this head at this time". */
export interface Checkpoint {
  seq: number;
  head_hash: string;
  ts: number;
  /** Ed25519 signature of `checkpointMessage(cp)`, base64. */
  signature: string;
  /** Signer's public key: base64 of its SPKI DER (one line, fits a Slack message). */
  public_key: string;
}

/** What an auditor needs to hold to detect truncation: a head they saw earlier. */
export interface CheckpointRef {
  seq: number;
  head_hash: string;
}

// Versioned and domain-separated so a signature over a checkpoint can never
// be replayed as a signature over anything else.
export function checkpointMessage(cp: Pick<Checkpoint, 'seq' | 'head_hash' | 'ts'>): Buffer {
  return Buffer.from(`warden-audit-checkpoint/v1\n${cp.seq}\n${cp.head_hash}\n${cp.ts}`, 'utf8');
}

/**
 * Reads an Ed25519 private key given as PEM or as base64 of PKCS#8 DER
 * (the two forms WARDEN_CHECKPOINT_KEY accepts). The error never echoes the key.
 */
export function loadPrivateKey(key: string | KeyObject): KeyObject {
  let obj: KeyObject;
  if (typeof key !== 'string') {
    obj = key;
  } else {
    const text = key.trim();
    try {
      obj = text.includes('-----BEGIN')
        ? createPrivateKey(text)
        : createPrivateKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'pkcs8' });
    } catch {
      throw new WardenError(
        'CONFIG_INVALID',
        'WARDEN_CHECKPOINT_KEY is not a readable private key (expected PEM or base64 PKCS#8 DER; make one with `warden audit keygen`)',
      );
    }
  }
  if (obj.type !== 'private' || obj.asymmetricKeyType !== 'ed25519') {
    throw new WardenError(
      'CONFIG_INVALID',
      `WARDEN_CHECKPOINT_KEY must be an Ed25519 private key, got ${obj.asymmetricKeyType ?? obj.type}`,
    );
  }
  return obj;
}

/** Reads an Ed25519 public key given as PEM or base64 SPKI DER. */
export function loadPublicKey(key: string | KeyObject): KeyObject {
  let obj: KeyObject;
  if (typeof key !== 'string') {
    obj = key.type === 'private' ? createPublicKey(key) : key;
  } else {
    const text = key.trim();
    try {
      obj = text.includes('-----BEGIN')
        ? createPublicKey(text)
        : createPublicKey({ key: Buffer.from(text, 'base64'), format: 'der', type: 'spki' });
    } catch {
      throw new WardenError('INVALID_INPUT', 'public key is not readable (expected PEM or base64 SPKI DER)');
    }
  }
  if (obj.asymmetricKeyType !== 'ed25519') {
    throw new WardenError('INVALID_INPUT', `public key must be Ed25519, got ${obj.asymmetricKeyType ?? obj.type}`);
  }
  return obj;
}

/** base64 SPKI DER: the stored, comparable form of a public key. */
export function publicKeyBase64(key: string | KeyObject): string {
  return loadPublicKey(key).export({ format: 'der', type: 'spki' }).toString('base64');
}

export interface GeneratedKeyPair {
  privateKeyPem: string;
  publicKeyPem: string;
  /** base64 PKCS#8 DER: a one-line value for WARDEN_CHECKPOINT_KEY. */
  privateKeyBase64: string;
  /** base64 SPKI DER, as stored in checkpoints. */
  publicKeyBase64: string;
}

export function generateCheckpointKeyPair(): GeneratedKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    privateKeyBase64: privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64'),
    publicKeyBase64: publicKey.export({ format: 'der', type: 'spki' }).toString('base64'),
  };
}

/**
 * Signs the current head of the chain, stores the checkpoint in
 * audit_checkpoints and returns it, so the caller can post it somewhere
 * agents cannot reach. Head and insert happen in one transaction so the
 * checkpoint names a head that really was committed.
 */
export function createCheckpoint(db: Db, key: string | KeyObject, clock: Clock = systemClock): Checkpoint {
  const privateKey = loadPrivateKey(key);
  const publicKey = publicKeyBase64(privateKey);
  return db
    .transaction((): Checkpoint => {
      const head = chainWriter(db).head();
      const unsigned = { seq: head.seq, head_hash: head.hash, ts: Math.round(clock.now()) };
      const signature = sign(null, checkpointMessage(unsigned), privateKey).toString('base64');
      const cp: Checkpoint = { ...unsigned, signature, public_key: publicKey };
      db.prepare(
        'INSERT INTO audit_checkpoints (seq, head_hash, ts, signature, public_key) VALUES (@seq, @head_hash, @ts, @signature, @public_key)',
      ).run(cp);
      return cp;
    })
    .immediate();
}

/** Records where a checkpoint was published (e.g. a Slack permalink). Only this column may change. */
export function markCheckpointPosted(db: Db, cp: Pick<Checkpoint, 'seq' | 'signature'>, postedTo: string): void {
  db.prepare('UPDATE audit_checkpoints SET posted_to = ? WHERE seq = ? AND signature = ?').run(
    postedTo,
    cp.seq,
    cp.signature,
  );
}

/**
 * True when the signature over (seq, head_hash, ts) verifies with the
 * checkpoint's own public key — and, when `trustedPublicKey` is given, that
 * key is the trusted one (otherwise anyone could re-sign a forged head with
 * a fresh key).
 */
export function verifyCheckpoint(cp: Checkpoint, trustedPublicKey?: string | KeyObject): boolean {
  try {
    if (!Number.isInteger(cp.seq) || cp.seq < 0 || !/^[0-9a-f]{64}$/.test(cp.head_hash) || !Number.isFinite(cp.ts))
      return false;
    const embedded = loadPublicKey(cp.public_key);
    if (trustedPublicKey !== undefined && publicKeyBase64(trustedPublicKey) !== publicKeyBase64(embedded)) return false;
    return verify(null, checkpointMessage(cp), embedded, Buffer.from(cp.signature, 'base64'));
  } catch {
    return false;
  }
}

/** How far the chain has moved past the newest stored checkpoint (seq undefined: none yet). */
export function checkpointLag(db: Db): { headSeq: number; checkpointSeq: number | undefined } {
  const row = db
    .prepare<[], { head: number; cp: number | null }>(
      'SELECT (SELECT coalesce(max(seq), 0) FROM audit) AS head, (SELECT max(seq) FROM audit_checkpoints) AS cp',
    )
    .get()!;
  return { headSeq: row.head, checkpointSeq: row.cp ?? undefined };
}

/** Stored checkpoints, oldest first. */
export function listCheckpoints(db: Db): Checkpoint[] {
  return db
    .prepare<[], Checkpoint>('SELECT seq, head_hash, ts, signature, public_key FROM audit_checkpoints ORDER BY seq, ts')
    .all();
}

/** Parses the CLI form `seq:hash` of an externally kept checkpoint. */
export function parseCheckpointRef(text: string): CheckpointRef {
  const m = /^(\d+):([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m)
    throw new WardenError(
      'INVALID_INPUT',
      `--checkpoint must be SEQ:HASH with a 64-hex-digit hash, e.g. 1200:${'ab'.repeat(32)}; got "${text}"`,
    );
  return { seq: Number(m[1]), head_hash: m[2]!.toLowerCase() };
}
