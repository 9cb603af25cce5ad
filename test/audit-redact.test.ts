import { describe, expect, it } from 'vitest';
import { REDACTED, isSecretKey, redact, redactString, truncateText } from '../src/audit/index.ts';
import { serialiseRedacted, wellFormed } from '../src/audit/redact.ts';

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

describe('redact: every secret key part and value pattern', () => {
  it.each([
    'token',
    'password',
    'db_passwd',
    'GPG-Passphrase',
    'secret',
    'Proxy-Authorization',
    'apikey',
    'cookie',
    'private.key',
    'aws_credentials',
  ])('treats %s as a secret key', (key) => {
    expect(isSecretKey(key)).toBe(true);
    expect(redact({ [key]: 'v' })).toEqual({ [key]: REDACTED });
  });

  it.each(['xoxa-1-2', 'xoxb-1-2', 'xoxp-1-2', 'xoxo-1-2', 'xoxs-1-2', 'xoxr-1-2', 'xoxe-1-2', 'xapp-1-2'])(
    'redacts the Slack token %s',
    (tokenValue) => {
      expect(redactString(`a ${tokenValue} b`)).toBe(`a ${REDACTED} b`);
    },
  );

  it.each(['gho_', 'ghu_', 'ghs_', 'ghr_'])('redacts a GitHub %s token', (prefix) => {
    expect(redactString(`${prefix}${'a'.repeat(20)}`)).toBe(REDACTED);
  });

  it('keeps lookalikes too short or too long to be the credential', () => {
    for (const text of [
      'xoxz-1-2', // not a Slack token type
      'AKIAIOSFODNN7EXAMPL', // 15 after the prefix
      'AKIAIOSFODNN7EXAMPLEX', // 17: no word boundary after 16
      'sk-abcdefghijklmno', // 15 after sk-
      `ghp_${'a'.repeat(19)}`,
      `github_pat_${'a'.repeat(19)}`,
      'eyJabcd.eyJabcde.x', // first part too short for a JWT
      'Bearer abcdefg', // 7 characters: prose, not a token
      'https://user@git.example.com/repo', // a user but no password
    ])
      expect(redactString(text)).toBe(text);
  });

  it('redacts the longer forms whole', () => {
    expect(redactString('sk-abcdefghijklmnop done')).toBe(`${REDACTED} done`);
    expect(redactString('AKIAIOSFODNN7EXAMPLE.')).toBe(`${REDACTED}.`);
    expect(redactString('a eyJabcde.eyJabcde. b')).toBe(`a ${REDACTED} b`);
    expect(redactString('bearer abcdefgh== then')).toBe(`bearer ${REDACTED} then`);
    expect(redactString('AUTHORIZATION: basic dXNlcjpwYXNzd29yZA==')).toBe(`AUTHORIZATION: basic ${REDACTED}`);
    // A key block cut off before its END line is still redacted to the end of the text.
    expect(redactString('key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg')).toBe(`key:\n${REDACTED}`);
    expect(redactString('db postgres://admin:pw@db.internal:5432/x')).toBe(
      `db postgres://admin:${REDACTED}@db.internal:5432/x`,
    );
  });

  it('redacts every name=value form, keeping the name and separator', () => {
    const cases: [string, string][] = [
      ['passwords: hunter2', `passwords: ${REDACTED}`],
      ['pwd=hunter2&user=a', `pwd=${REDACTED}&user=a`],
      ['PASSPHRASE = open sesame', `PASSPHRASE = ${REDACTED} sesame`],
      ['client_secret=abc,next', `client_secret=${REDACTED},next`],
      ['api-key:abc;x', `api-key:${REDACTED};x`],
      ['apikey=abc', `apikey=${REDACTED}`],
      ['access-token: abc', `access-token: ${REDACTED}`],
      ["secret='a b' c", `secret=${REDACTED} c`],
      ['accesstoken=abc', `accesstoken=${REDACTED}`],
    ];
    for (const [input, expected] of cases) expect(redactString(input)).toBe(expected);
  });

  it('the marker is the literal text auditors search for', () => {
    expect(REDACTED).toBe('[redacted]');
    expect(redactString('token xoxb-1-2')).toBe('token [redacted]');
  });

  it('a Basic header with no space after the colon, a bearer after two spaces, a URL at the very start', () => {
    expect(redactString('Authorization:Basic dXNlcjpwYXNzd29yZA==')).toBe(`Authorization:Basic ${REDACTED}`);
    expect(redactString('Bearer  abcdefgh1234')).toBe(`Bearer ${REDACTED}`);
    expect(redactString('postgres://admin:pw@db/x')).toBe(`postgres://admin:${REDACTED}@db/x`);
  });

  it('gives the same answer on every call (no state left between calls)', () => {
    const long = `${'x '.repeat(40)}xoxb-1-2`;
    expect(redactString(long)).toBe(`${'x '.repeat(40)}${REDACTED}`);
    expect(redactString('xoxb-3-4 first')).toBe(`${REDACTED} first`);
    expect(redactString(`${'y '.repeat(40)}Bearer abcdefgh1`)).toBe(`${'y '.repeat(40)}Bearer ${REDACTED}`);
    expect(redactString('Bearer abcdefgh2 first')).toBe(`Bearer ${REDACTED} first`);
  });
});

describe('redact: the shapes it walks', () => {
  it('keeps booleans and finite numbers, describes symbols, infinities and invalid dates', () => {
    expect(
      redact({
        yes: true,
        no: false,
        n: -2.5,
        inf: Number.POSITIVE_INFINITY,
        s: Symbol('tag'),
        anon: Symbol(),
        bad: new Date(Number.NaN),
      }),
    ).toEqual({
      yes: true,
      no: false,
      n: -2.5,
      inf: 'Infinity',
      s: '[symbol tag]',
      anon: '[symbol ]',
      bad: 'Invalid Date',
    });
  });

  it('describes an ArrayBuffer and any typed-array view by size', () => {
    expect(redact([new ArrayBuffer(8), new Uint16Array(3), new DataView(new ArrayBuffer(5))])).toEqual([
      '[binary 8 bytes]',
      '[binary 6 bytes]',
      '[binary 5 bytes]',
    ]);
  });

  it('stops at 64 levels of nesting, in objects and in arrays', () => {
    const nestObjects = (levels: number): unknown => (levels === 0 ? 'leaf' : { n: nestObjects(levels - 1) });
    const follow = (value: unknown, steps: number, step: (v: unknown) => unknown) => {
      let v = value;
      for (let i = 0; i < steps; i++) v = step(v);
      return v;
    };
    const byKey = (v: unknown) => (v as { n: unknown }).n;
    // An object 64 levels below the top is cut; a string there is kept (only containers nest).
    expect(follow(redact(nestObjects(65)), 64, byKey)).toBe('[max depth]');
    expect(follow(redact(nestObjects(64)), 64, byKey)).toBe('leaf');
    const nestArrays = (levels: number): unknown => (levels === 0 ? 'leaf' : [nestArrays(levels - 1)]);
    const first = (v: unknown) => (v as unknown[])[0];
    expect(follow(redact(nestArrays(65)), 64, first)).toBe('[max depth]');
    expect(follow(redact(nestArrays(64)), 64, first)).toBe('leaf');
  });

  it('walks Sets and Maps below their own level, and redacts a secret-looking key itself', () => {
    const out = redact({
      set: new Set(['xoxb-1-2', { password: 'p' }]),
      map: new Map<unknown, unknown>([
        [1, 'one'],
        ['note', 'AKIAIOSFODNN7EXAMPLE'],
      ]),
      'xoxb-9-9': 'value under a token-shaped key',
    });
    expect(out).toEqual({
      set: [REDACTED, { password: REDACTED }],
      map: { 1: 'one', note: REDACTED },
      [REDACTED]: 'value under a token-shaped key',
    });
  });

  it('a Set or Map that contains itself is a cycle', () => {
    const set = new Set<unknown>();
    set.add(set);
    const map = new Map<string, unknown>();
    map.set('me', map);
    expect(redact({ set, map })).toEqual({ set: ['[circular]'], map: { me: '[circular]' } });
  });

  it('an Error keeps its name, redacted message and own fields, secret-named ones redacted', () => {
    const err = Object.assign(new TypeError('failed with Bearer abcdefgh99'), { code: 'E_UP', apiKey: 'k' });
    expect(redact(err)).toEqual({
      name: 'TypeError',
      message: `failed with Bearer ${REDACTED}`,
      code: 'E_UP',
      apiKey: REDACTED,
    });
  });

  it('uses toJSON, redacting what it returns; one that throws or returns the object itself is handled', () => {
    expect(redact({ v: { toJSON: () => ({ token: 't', ok: 1 }) } })).toEqual({ v: { token: REDACTED, ok: 1 } });
    expect(redact({ v: { toJSON: () => 'xoxb-1-2' } })).toEqual({ v: REDACTED });
    expect(
      redact({
        v: {
          toJSON: () => {
            throw new Error('no');
          },
        },
      }),
    ).toEqual({ v: '[toJSON threw]' });
    const selfish = {
      a: 1,
      toJSON() {
        return this;
      },
    };
    expect(redact(selfish)).toEqual({ a: 1, toJSON: '[function]' });
  });

  it('a redacted object has no prototype, so nothing it holds can reach Object.prototype', () => {
    expect(Object.getPrototypeOf(redact({ a: 1 }))).toBeNull();
    expect(Object.getPrototypeOf(redact(new Map([['a', 1]])))).toBeNull();
    expect(Object.getPrototypeOf(redact(new Error('x')))).toBeNull();
  });
});

describe('truncateText and serialiseRedacted', () => {
  it('keeps text of exactly the cap, cuts one more', () => {
    expect(truncateText('hello', 5)).toBe('hello');
    expect(truncateText('hello!', 5)).toBe('hello…[truncated 1 of 6 chars]');
  });

  it('a cap of zero or below keeps nothing but says what was there', () => {
    expect(truncateText('abc', 0)).toBe('…[truncated 3 of 3 chars]');
    expect(truncateText('abc', -4)).toBe('…[truncated 3 of 3 chars]');
  });

  it('steps back over a high surrogate at the cut, at either end of the range, and only there', () => {
    // U+10000 is \uD800\uDC00, U+10FFFF is \uDBFF\uDFFF: both high-surrogate bounds.
    expect(truncateText('a\u{10000}b', 2)).toBe('a…[truncated 3 of 4 chars]');
    expect(truncateText('a\u{10FFFF}b', 2)).toBe('a…[truncated 3 of 4 chars]');
    // A whole pair before the cut (a low surrogate last) and the BMP characters just outside the range stay.
    expect(truncateText('a\u{10000}b', 3)).toBe('a\u{10000}…[truncated 1 of 4 chars]');
    expect(truncateText('a\uD7FFbc', 2)).toBe('a\uD7FF…[truncated 2 of 4 chars]');
    expect(truncateText('a\uE000bc', 2)).toBe('a\uE000…[truncated 2 of 4 chars]');
  });

  it('serialiseRedacted: absent stays absent, anything else is redacted JSON cut to the cap', () => {
    expect(serialiseRedacted(undefined, 100)).toBeNull();
    expect(serialiseRedacted(null, 100)).toBe('null');
    expect(serialiseRedacted({ token: 't', n: 1 }, 100)).toBe(`{"token":"${REDACTED}","n":1}`);
    expect(serialiseRedacted('x'.repeat(10), 5)).toBe('"xxxx…[truncated 7 of 12 chars]');
  });
});

describe('wellFormed', () => {
  it('replaces lone surrogates with U+FFFD and keeps pairs', () => {
    expect(wellFormed('a\uD800b')).toBe('a\uFFFDb');
    expect(wellFormed('a\uDC00b')).toBe('a\uFFFDb');
    expect(wellFormed('\uDBFF')).toBe('\uFFFD');
    expect(wellFormed('\uDFFF')).toBe('\uFFFD');
    expect(wellFormed('\uDC00\uD800')).toBe('\uFFFD\uFFFD');
    expect(wellFormed('ok \u{1F600} \u{10FFFF} \uD7FF\uE000')).toBe('ok \u{1F600} \u{10FFFF} \uD7FF\uE000');
  });
});
