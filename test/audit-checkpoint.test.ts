import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AuditLog,
  CHECKPOINT_TEXT_PREFIX,
  GENESIS_HASH,
  checkpointLag,
  checkpointMessage,
  checkpointText,
  createCheckpoint,
  generateCheckpointKeyPair,
  listCheckpoints,
  loadPrivateKey,
  loadPublicKey,
  markCheckpointPosted,
  parseCheckpointRef,
  parseCheckpointText,
  publicKeyBase64,
  verifyCheckpoint,
  type Checkpoint,
} from '../src/audit/index.ts';
import { isWardenError } from '../src/errors.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';

/*
 * Checkpoint keys, signing and the forms a checkpoint is read back from, on a
 * real SQLite file. Expected texts are written out here, not taken from the code.
 */

let dir: string;
let db: Db;
const keys = generateCheckpointKeyPair();
// Not Ed25519: a key of the right kind (asymmetric) but the wrong type.
const x25519 = generateKeyPairSync('x25519');

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-audit-checkpoint-'));
  db = openDb(join(dir, 'warden.db'));
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

async function seed(n: number): Promise<void> {
  const log = new AuditLog(db);
  for (let i = 0; i < n; i++) await log.append({ event: 'call.decided', callId: `c${i}` });
  await log.close();
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected it to throw');
}

describe('checkpointMessage', () => {
  it('is the versioned, domain-separated text of seq, head and time (known answer)', () => {
    const message = checkpointMessage({ seq: 7, head_hash: 'ab'.repeat(32), ts: 1_790_000_000_000 });
    expect(message.toString('utf8')).toBe(`warden-audit-checkpoint/v1\n7\n${'ab'.repeat(32)}\n1790000000000`);
  });
});

describe('loadPrivateKey', () => {
  it('takes a KeyObject as it is, and trims the text forms', () => {
    const object = createPrivateKey(keys.privateKeyPem);
    expect(loadPrivateKey(object)).toBe(object);
    expect(loadPrivateKey(`\n  ${keys.privateKeyBase64}  \n`).asymmetricKeyType).toBe('ed25519');
    expect(loadPrivateKey(`  ${keys.privateKeyPem}\n\n`).asymmetricKeyType).toBe('ed25519');
  });

  it('refuses a key that is not an Ed25519 private key, naming what it is', () => {
    const pem = x25519.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const wrongType = thrown(() => loadPrivateKey(pem));
    expect(isWardenError(wrongType, 'CONFIG_INVALID')).toBe(true);
    expect(wrongType.message).toBe('WARDEN_CHECKPOINT_KEY must be an Ed25519 private key, got x25519');
    // The public half of the right key type is not a private key either.
    const publicHalf = thrown(() => loadPrivateKey(createPublicKey(keys.publicKeyPem)));
    expect(isWardenError(publicHalf, 'CONFIG_INVALID')).toBe(true);
    expect(publicHalf.message).toMatch(/must be an Ed25519 private key/);
  });

  it('an unreadable key says what forms it takes', () => {
    expect(thrown(() => loadPrivateKey('-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----')).message).toBe(
      'WARDEN_CHECKPOINT_KEY is not a readable private key (expected PEM or base64 PKCS#8 DER; make one with `warden audit keygen`)',
    );
  });
});

describe('loadPublicKey and publicKeyBase64', () => {
  it('reads PEM, base64 SPKI DER, a public KeyObject and the public half of a private one, all to the same key', () => {
    const forms = [
      keys.publicKeyPem,
      `  ${keys.publicKeyBase64}\n`,
      createPublicKey(keys.publicKeyPem),
      createPrivateKey(keys.privateKeyPem),
    ];
    for (const form of forms) {
      expect(loadPublicKey(form).type).toBe('public');
      expect(publicKeyBase64(form)).toBe(keys.publicKeyBase64);
    }
  });

  it('refuses an unreadable or non-Ed25519 key with INVALID_INPUT naming what it is', () => {
    const garbage = thrown(() => loadPublicKey('AAAA'));
    expect(isWardenError(garbage, 'INVALID_INPUT')).toBe(true);
    expect(garbage.message).toBe('public key is not readable (expected PEM or base64 SPKI DER)');
    const wrongType = thrown(() => loadPublicKey(x25519.publicKey));
    expect(isWardenError(wrongType, 'INVALID_INPUT')).toBe(true);
    expect(wrongType.message).toBe('public key must be Ed25519, got x25519');
    const pem = x25519.publicKey.export({ format: 'pem', type: 'spki' }).toString();
    expect(thrown(() => loadPublicKey(pem)).message).toBe('public key must be Ed25519, got x25519');
  });
});

describe('createCheckpoint, markCheckpointPosted, checkpointLag', () => {
  it("on an empty chain signs seq 0 and the genesis hash, at the clock's whole millisecond", () => {
    const cp = createCheckpoint(db, keys.privateKeyPem, new ManualClock(1_790_000_000_000.6));
    expect(cp).toMatchObject({ seq: 0, head_hash: GENESIS_HASH, ts: 1_790_000_000_001 });
    expect(verifyCheckpoint(cp, keys.publicKeyBase64)).toBe(true);
  });

  it('records where a checkpoint was posted on that checkpoint only', async () => {
    await seed(2);
    const first = createCheckpoint(db, keys.privateKeyPem, new ManualClock(1_000));
    await seed(1);
    const second = createCheckpoint(db, keys.privateKeyPem, new ManualClock(2_000));
    markCheckpointPosted(db, second, 'C0123/p2000');
    // Same seq, another signature: not this checkpoint.
    markCheckpointPosted(db, { seq: first.seq, signature: second.signature }, 'C0123/wrong');
    const posted = db
      .prepare<[], { seq: number; posted_to: string | null }>(
        'SELECT seq, posted_to FROM audit_checkpoints ORDER BY seq',
      )
      .all();
    expect(posted).toEqual([
      { seq: 2, posted_to: null },
      { seq: 3, posted_to: 'C0123/p2000' },
    ]);
    expect(listCheckpoints(db)).toEqual([first, second]);
  });

  it('checkpointLag: the head and the newest checkpoint, none at first', async () => {
    expect(checkpointLag(db)).toEqual({ headSeq: 0, checkpointSeq: undefined });
    await seed(3);
    expect(checkpointLag(db)).toEqual({ headSeq: 3, checkpointSeq: undefined });
    createCheckpoint(db, keys.privateKeyPem);
    await seed(2);
    expect(checkpointLag(db)).toEqual({ headSeq: 5, checkpointSeq: 3 });
  });
});

describe('verifyCheckpoint', () => {
  let cp: Checkpoint;
  beforeEach(async () => {
    await seed(3);
    cp = createCheckpoint(db, keys.privateKeyPem, new ManualClock(1_790_000_000_000));
  });

  it('verifies a genuine one, with or without the trusted key in any form', () => {
    expect(verifyCheckpoint(cp)).toBe(true);
    expect(verifyCheckpoint(cp, keys.publicKeyPem)).toBe(true);
    expect(verifyCheckpoint(cp, createPrivateKey(keys.privateKeyPem))).toBe(true);
  });

  it.each([
    ['a negative seq', { seq: -1 }],
    ['a fractional seq', { seq: 2.5 }],
    ['an upper-case head hash', { head_hash: 'A'.repeat(64) }],
    ['a short head hash', { head_hash: 'a'.repeat(63) }],
    ['a head hash with text around it', { head_hash: `x${'a'.repeat(64)}` }],
    ['a non-finite time', { ts: Number.POSITIVE_INFINITY }],
    ['an unreadable public key', { public_key: 'AAAA' }],
    ['a signature that is not one', { signature: 'AAAA' }],
  ])('refuses %s, without throwing', (_name, change) => {
    expect(verifyCheckpoint({ ...cp, ...change } as Checkpoint)).toBe(false);
  });

  it('an unreadable trusted key is a refusal here (verifyChain reads it first, as an input error)', () => {
    expect(verifyCheckpoint(cp, 'not-a-key')).toBe(false);
  });
});

describe('parseCheckpointRef', () => {
  it('reads SEQ:HASH, trimmed, the hash lower-cased', () => {
    expect(parseCheckpointRef(` 12:${'AB'.repeat(32)}\n`)).toEqual({ seq: 12, head_hash: 'ab'.repeat(32) });
    expect(parseCheckpointRef(`0:${GENESIS_HASH}`)).toEqual({ seq: 0, head_hash: GENESIS_HASH });
  });

  it.each([
    '12',
    `12:${'a'.repeat(63)}`,
    `12:${'a'.repeat(65)}`,
    `-1:${'a'.repeat(64)}`,
    `x12:${'a'.repeat(64)}`,
    `12:${'g'.repeat(64)}`,
  ])('refuses %s with INVALID_INPUT quoting it', (text) => {
    const err = thrown(() => parseCheckpointRef(text));
    expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
    expect(err.message).toBe(
      `--checkpoint must be SEQ:HASH with a 64-hex-digit hash, e.g. 1200:${'ab'.repeat(32)}; got "${text}"`,
    );
  });
});

describe('checkpoint message text', () => {
  const cp: Checkpoint = {
    seq: 42,
    head_hash: 'cd'.repeat(32),
    ts: 1_790_000_000_123,
    signature: 'c2lnbmF0dXJl+/==',
    public_key: 'cHVibGlj',
  };

  it('carries every signed field in a fixed form (known answer)', () => {
    expect(checkpointText(cp)).toBe(
      [
        ':lock: *Audit checkpoint* — head seq `42` at 2026-09-21T14:13:20.123Z',
        `hash \`${'cd'.repeat(32)}\``,
        'signature `c2lnbmF0dXJl+/==`',
        'public key `cHVibGlj`',
        `Verify later with \`warden audit verify --from-slack --public-key KEY\` (reads this message back) or \`warden audit verify --checkpoint 42:${'cd'.repeat(32)}\`: a chain shorter than this, or with a different hash here, was truncated or rewritten.`,
      ].join('\n'),
    );
    expect(checkpointText(cp).startsWith(CHECKPOINT_TEXT_PREFIX)).toBe(true);
    expect(parseCheckpointText(checkpointText(cp))).toEqual(cp);
  });

  it.each([
    ['the head line', /^(.*)head seq `42`/, '$1head seq `x`'],
    ['the hash line', /^hash .*$/m, 'hash `nothex`'],
    ['the signature line', /^signature .*$/m, 'signature `!!`'],
    ['the public key line', /^public key .*$/m, 'public key `!!`'],
    ['the hash line whole (text after it)', /^(hash .*)$/m, '$1 and more'],
    ['the signature line whole (text before it)', /^signature /m, 'a signature '],
    ['the public key line whole (text after it)', /^(public key .*)$/m, '$1!'],
  ])('is not read back with %s broken', (_name, pattern, replacement) => {
    expect(parseCheckpointText(checkpointText(cp).replace(pattern, replacement))).toBeUndefined();
  });

  it('is not read back with an impossible time', () => {
    expect(
      parseCheckpointText(checkpointText(cp).replace('2026-09-21T14:13:20.123Z', '2026-13-45T99:13:20.123Z')),
    ).toBeUndefined();
  });
});
