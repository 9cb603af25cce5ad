import { describe, expect, it } from 'vitest';
import { GENESIS_HASH, canonicalJson, sha256Hex } from '../src/audit/canonical.ts';

/*
 * canonicalJson is what argument and tool-definition hashes are taken over:
 * two values that mean the same must give the same text, and two that differ
 * must not. Expected texts are written out by hand, not produced by the code.
 */

describe('canonicalJson', () => {
  it('sorts object keys by code unit at every depth and leaves array order alone', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, 2], c: 'x' }, B: true })).toBe(
      '{"B":true,"a":{"c":"x","d":[3,1,2]},"b":1}',
    );
    // The same meaning in another key order is the same text.
    expect(canonicalJson({ a: { c: 'x', d: [3, 1, 2] }, B: true, b: 1 })).toBe(
      canonicalJson({ b: 1, a: { d: [3, 1, 2], c: 'x' }, B: true }),
    );
  });

  it('writes scalars as JSON does, and null as null', () => {
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson('say "hi"\n')).toBe('"say \\"hi\\"\\n"');
    expect(canonicalJson(true)).toBe('true');
    expect(canonicalJson(false)).toBe('false');
    expect(canonicalJson(-1.5)).toBe('-1.5');
    expect(canonicalJson(0)).toBe('0');
    expect(canonicalJson({ n: null })).toBe('{"n":null}');
  });

  it('writes what JSON cannot hold the way JSON.stringify does: non-finite numbers as null, bigint as its digits', () => {
    expect(canonicalJson(Number.NaN)).toBe('null');
    expect(canonicalJson(Number.POSITIVE_INFINITY)).toBe('null');
    expect(canonicalJson({ x: Number.NEGATIVE_INFINITY })).toBe('{"x":null}');
    expect(canonicalJson(12345678901234567890n)).toBe('"12345678901234567890"');
  });

  it('drops undefined, function and symbol members of an object, and writes them as null in an array or alone', () => {
    expect(canonicalJson({ a: undefined, f: () => 1, s: Symbol('s'), k: 1 })).toBe('{"k":1}');
    expect(canonicalJson([undefined, () => 1, Symbol('s'), 1])).toBe('[null,null,null,1]');
    expect(canonicalJson(undefined)).toBe('null');
    expect(canonicalJson(() => 1)).toBe('null');
    expect(canonicalJson({})).toBe('{}');
    expect(canonicalJson([])).toBe('[]');
  });

  it('uses toJSON where a value has one (a Date is its ISO text)', () => {
    expect(canonicalJson({ when: new Date(0) })).toBe('{"when":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson({ v: { toJSON: () => ({ z: 1, y: 2 }) } })).toBe('{"v":{"y":2,"z":1}}');
  });
});

describe('GENESIS_HASH', () => {
  it('is 64 zeros: the prev_hash of row 1, which other tools verifying the trail rely on', () => {
    expect(GENESIS_HASH).toBe('0000000000000000000000000000000000000000000000000000000000000000');
  });
});

describe('sha256Hex', () => {
  it('is the hex SHA-256 of the UTF-8 text (known answers)', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });
});
