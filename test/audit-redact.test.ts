import { describe, expect, it } from 'vitest';
import { REDACTED, isSecretKey, redact, redactString, truncateText } from '../src/audit/index.ts';

describe('redact: secret keys', () => {
  it('replaces values under secret-named keys, case-insensitively and as substrings', () => {
    const out = redact({
      token: 'a',
      Password: 'b',
      client_secret: 'c',
      Authorization: 'd',
      api_key: 'e',
      apiKey: 'f',
      'X-Api-Key': 'g',
      cookie: 'h',
      'Set-Cookie': 'i',
      private_key: 'j',
      privateKey: { pem: 'k' },
      access_token: 'l',
      refreshToken: 'm',
      SECRET: 42,
      subject: 'keep me',
      ticket_id: 'T-1',
    });
    expect(out).toEqual({
      token: REDACTED,
      Password: REDACTED,
      client_secret: REDACTED,
      Authorization: REDACTED,
      api_key: REDACTED,
      apiKey: REDACTED,
      'X-Api-Key': REDACTED,
      cookie: REDACTED,
      'Set-Cookie': REDACTED,
      private_key: REDACTED,
      privateKey: REDACTED,
      access_token: REDACTED,
      refreshToken: REDACTED,
      SECRET: REDACTED,
      subject: 'keep me',
      ticket_id: 'T-1',
    });
  });

  it('works at any depth and inside arrays', () => {
    const out = redact({
      a: [{ b: { headers: { authorization: 'Bearer zzz', accept: 'json' } } }, [{ password: 'p' }]],
    });
    expect(out).toEqual({
      a: [{ b: { headers: { authorization: REDACTED, accept: 'json' } } }, [{ password: REDACTED }]],
    });
  });

  it('names the key forms it treats as secret', () => {
    expect(isSecretKey('x_access_token')).toBe(true);
    expect(isSecretKey('client-secret')).toBe(true);
    expect(isSecretKey('to')).toBe(false);
    expect(isSecretKey('body')).toBe(false);
  });
});

describe('redact: secret-looking values', () => {
  const cases: [string, string, string][] = [
    ['slack bot token', 'use xoxb-1234567890-0987654321-AbCdEfGhIj please', `use ${REDACTED} please`],
    ['slack user token', 'xoxp-11-22-33-abc', REDACTED],
    ['slack app token', 'app xapp-1-A0123-456-abcdef', `app ${REDACTED}`],
    ['aws access key', 'key AKIAIOSFODNN7EXAMPLE end', `key ${REDACTED} end`],
    ['aws session key', 'ASIAY34FZKBOKMUTVV7A', REDACTED],
    ['bearer header', 'Authorization: Bearer abc.def-ghi_123', `Authorization: Bearer ${REDACTED}`],
    ['basic header', 'authorization: Basic dXNlcjpwYXNz', `authorization: Basic ${REDACTED}`],
    ['openai key', 'sk-proj-abcdefghijklmnopqrstuv', REDACTED],
    ['anthropic key', 'key=sk-ant-api03-abcdefghijklmnopqrstuvwx', `key=${REDACTED}`],
    ['github token', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789', REDACTED],
    ['github pat', 'github_pat_11ABCDEFG0123456789_abcdefghijklmnop', REDACTED],
    [
      'jwt',
      'tok eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
      `tok ${REDACTED}`,
    ],
    [
      'password in a url',
      'clone https://deploy:hunter2pass@git.example.com/repo.git now',
      `clone https://deploy:${REDACTED}@git.example.com/repo.git now`,
    ],
    ['password= pair', 'login with user=ann password=Tr0ub4dor3 then', `login with user=ann password=${REDACTED} then`],
    ['secret: pair', 'config:\n  secret: s3cr3t-value\n  region: eu', `config:\n  secret: ${REDACTED}\n  region: eu`],
    ['quoted api_key pair', 'set api_key = "abc def" ok', `set api_key = ${REDACTED} ok`],
    [
      'private key block in an email body',
      'Hi, here it is:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----\nThanks',
      `Hi, here it is:\n${REDACTED}\nThanks`,
    ],
  ];
  for (const [name, input, expected] of cases) {
    it(`replaces a ${name} in place`, () => {
      expect(redactString(input)).toBe(expected);
      expect(redact({ note: input })).toEqual({ note: expected });
    });
  }

  it('leaves ordinary text alone', () => {
    const text =
      'task-list for ask-me: the bearer of the token is on fire (ticket T-42), basic setup, skeleton key AKIA123';
    expect(redactString(text)).toBe(text);
  });

  it('redacts values inside nested arrays', () => {
    expect(redact([['xoxb-1-2-3'], { list: ['ok', 'AKIAIOSFODNN7EXAMPLE'] }])).toEqual([
      [REDACTED],
      { list: ['ok', REDACTED] },
    ]);
  });
});

describe('redact: awkward values', () => {
  it('turns cycles into a marker instead of throwing', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    a.list = [a];
    expect(redact(a)).toEqual({ name: 'a', self: '[circular]', list: ['[circular]'] });
  });

  it('keeps a shared (non-cyclic) object each time it appears', () => {
    const shared = { x: 1 };
    expect(redact({ a: shared, b: shared })).toEqual({ a: { x: 1 }, b: { x: 1 } });
  });

  it('handles BigInt, Date, Map, Set, Error, binary, undefined and non-finite numbers', () => {
    const out = redact({
      big: 12345678901234567890n,
      when: new Date(0),
      map: new Map<string, unknown>([
        ['token', 'x'],
        ['k', 1n],
      ]),
      set: new Set(['a']),
      err: new Error('bad xoxb-1-2-3'),
      bin: Buffer.from('abc'),
      u: undefined,
      nan: Number.NaN,
      fn: () => 1,
    });
    expect(out).toEqual({
      big: '12345678901234567890',
      when: '1970-01-01T00:00:00.000Z',
      map: { token: REDACTED, k: '1' },
      set: ['a'],
      err: { name: 'Error', message: `bad ${REDACTED}` },
      bin: '[binary 3 bytes]',
      u: null,
      nan: 'NaN',
      fn: '[function]',
    });
    expect(() => JSON.stringify(out)).not.toThrow();
  });

  it('keeps a __proto__ key as data', () => {
    const out = redact(JSON.parse('{"__proto__": {"polluted": true}, "a": 1}')) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['__proto__', 'a']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('truncateText', () => {
  it('leaves short text alone', () => {
    expect(truncateText('hello', 10)).toBe('hello');
  });

  it('cuts long text and says how much was cut', () => {
    const out = truncateText('x'.repeat(100), 10);
    expect(out).toBe(`${'x'.repeat(10)}…[truncated 90 of 100 chars]`);
  });

  it('never splits a surrogate pair', () => {
    const out = truncateText('ab😀cd', 3);
    expect(out.startsWith('ab…')).toBe(true);
    expect(out).toContain('[truncated 4 of 6 chars]');
  });
});
