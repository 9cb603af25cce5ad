import { describe, expect, it } from 'vitest';
import { argumentProblem, DEFAULT_ARGUMENT_LIMITS, findProtoKey } from '../src/gateway/arguments.ts';

/**
 * What Warden forwards as a tool call's arguments (gateway/arguments.ts), as
 * pure checks: each refusal with its exact sentence, each limit at its edge,
 * and the paths that name where a problem is. The gateway tests
 * (gateway-fail-closed) show the same refusals end to end.
 */

/** An object nested `levels` deep: level 1 is the outer object, as the limit counts. */
function nested(levels: number, leaf: unknown = 1): Record<string, unknown> {
  let value: unknown = leaf;
  for (let i = 1; i < levels; i++) value = { d: value };
  return { d: value };
}

describe('argumentProblem: the arguments are one JSON object', () => {
  it('absent arguments are fine (the call has none)', () => {
    expect(argumentProblem(undefined)).toBeNull();
    expect(argumentProblem({})).toBeNull();
  });

  it.each([
    ['null', null],
    ['a string', 'x'],
    ['a number', 1],
    ['a boolean', true],
    ['a list', [1]],
  ])('%s is not an object', (_name, args) => {
    expect(argumentProblem(args)).toEqual({ code: 'not_an_object', message: 'arguments must be a JSON object' });
  });
});

describe('argumentProblem: only plain JSON values', () => {
  it('accepts strings, booleans, null, finite numbers, lists and objects at any position', () => {
    expect(argumentProblem({ a: [1, -2.5, 'x', null, true, false, { b: [[], {}] }], c: null, d: '' })).toBeNull();
  });

  it('accepts an object with no prototype (what JSON.parse-like code may build)', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { a: 1 });
    expect(argumentProblem({ x: bare })).toBeNull();
    expect(argumentProblem(bare)).toBeNull();
  });

  it.each([
    ['NaN', Number.NaN],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['-Infinity', Number.NEGATIVE_INFINITY],
  ])('%s is not a JSON number', (_name, n) => {
    expect(argumentProblem({ a: { n } })).toEqual({
      code: 'not_plain_json',
      message: 'arguments.a.n is not a JSON number',
    });
  });

  it.each([
    ['undefined', undefined, 'undefined'],
    ['a function', () => 1, 'function'],
    ['a bigint', 10n, 'bigint'],
    ['a symbol', Symbol('s'), 'symbol'],
  ])('%s is not JSON, and the message names its type', (_name, value, type) => {
    expect(argumentProblem({ list: [0, value] })).toEqual({
      code: 'not_plain_json',
      message: `arguments.list[1] is not JSON (${type})`,
    });
  });

  it.each([
    ['a Date', new Date(0)],
    ['a Map', new Map()],
    ['a class instance', new (class Point {})()],
    ['a boxed string', Object('s')],
  ])('%s is not a plain JSON object', (_name, value) => {
    expect(argumentProblem({ a: [{ b: value }] })).toEqual({
      code: 'not_plain_json',
      message: 'arguments.a[0].b is not a plain JSON object',
    });
  });

  it('the first problem in document order is the one reported', () => {
    expect(argumentProblem({ a: Number.NaN, b: () => 1 })?.message).toBe('arguments.a is not a JSON number');
    expect(argumentProblem({ a: [Number.NaN, () => 1] })?.message).toBe('arguments.a[0] is not a JSON number');
    expect(argumentProblem({ a: [1, 2, Number.NaN] })?.message).toBe('arguments.a[2] is not a JSON number');
  });
});

describe('argumentProblem: keys that rewrite prototypes', () => {
  it('an own __proto__ key anywhere is refused, with its path', () => {
    const parsed = JSON.parse('{"a":{"b":[{"__proto__":{"isAdmin":true}}]}}') as unknown;
    expect(argumentProblem(parsed)).toEqual({
      code: 'prototype_key',
      message:
        'arguments.a.b[0].__proto__ is a key Warden does not forward: it can rewrite object prototypes in an upstream that merges arguments',
    });
    expect(argumentProblem(JSON.parse('{"__proto__":1}'))?.code).toBe('prototype_key');
  });

  it('constructor.prototype is refused; either key alone, or prototype under another key, is data', () => {
    expect(argumentProblem({ opts: { constructor: { prototype: { x: 1 } } } })).toEqual({
      code: 'prototype_key',
      message:
        'arguments.opts.constructor.prototype is a key Warden does not forward: it can rewrite object prototypes in an upstream that merges arguments',
    });
    expect(argumentProblem({ constructor: 'a string is data', prototype: 1 })).toBeNull();
    expect(argumentProblem({ constructor: { name: 'x' } })).toBeNull();
    expect(argumentProblem({ other: { prototype: { x: 1 } } })).toBeNull();
    // A list index is not a key named constructor.
    expect(argumentProblem({ constructor: [{ prototype: 1 }] })).toBeNull();
  });
});

describe('argumentProblem: depth', () => {
  it('the default limits are 64 KiB and 32 levels', () => {
    expect(DEFAULT_ARGUMENT_LIMITS).toEqual({ maxBytes: 65_536, maxDepth: 32 });
  });

  it('32 levels pass and 33 are refused by default, naming the object past the limit', () => {
    expect(argumentProblem(nested(32))).toBeNull();
    const problem = argumentProblem(nested(33));
    expect(problem?.code).toBe('too_deep');
    expect(problem?.message).toBe(
      `arguments${'.d'.repeat(32)} is nested deeper than 32 levels, more than Warden forwards`,
    );
  });

  it('counts the arguments object as level 1, lists as levels, and values as no level', () => {
    const limits = { maxBytes: 1_000, maxDepth: 2 };
    expect(argumentProblem({ a: { b: 'leaf' } }, limits)).toBeNull();
    expect(argumentProblem({ a: [1, 2] }, limits)).toBeNull();
    expect(argumentProblem({ a: { b: {} } }, limits)).toEqual({
      code: 'too_deep',
      message: 'arguments.a.b is nested deeper than 2 levels, more than Warden forwards',
    });
    expect(argumentProblem({ a: [[]] }, limits)).toEqual({
      code: 'too_deep',
      message: 'arguments.a[0] is nested deeper than 2 levels, more than Warden forwards',
    });
    expect(argumentProblem({ a: {} }, { maxBytes: 1_000, maxDepth: 1 })?.code).toBe('too_deep');
    expect(argumentProblem({}, { maxBytes: 1_000, maxDepth: 1 })).toBeNull();
  });

  it('a hostile depth is refused without overflowing the stack', () => {
    let deep: unknown = [];
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(argumentProblem({ deep })?.code).toBe('too_deep');
  });
});

describe('argumentProblem: size', () => {
  it('counts UTF-8 bytes of the JSON text, and the limit itself passes', () => {
    // {"a":"…"} is 8 bytes around the string.
    expect(argumentProblem({ a: 'x'.repeat(56) }, { maxBytes: 64, maxDepth: 4 })).toBeNull();
    expect(argumentProblem({ a: 'x'.repeat(57) }, { maxBytes: 64, maxDepth: 4 })).toEqual({
      code: 'too_large',
      message: "arguments are 65 bytes of JSON, over Warden's limit of 64 bytes for one call",
    });
    // 28 two-byte characters: 28 characters, 56 bytes.
    expect(argumentProblem({ a: 'é'.repeat(28) }, { maxBytes: 64, maxDepth: 4 })).toBeNull();
    expect(argumentProblem({ a: 'é'.repeat(29) }, { maxBytes: 64, maxDepth: 4 })?.message).toBe(
      "arguments are 66 bytes of JSON, over Warden's limit of 64 bytes for one call",
    );
  });

  it('64 KiB pass and one byte more is refused by default', () => {
    expect(argumentProblem({ a: 'x'.repeat(65_536 - 8) })).toBeNull();
    expect(argumentProblem({ a: 'x'.repeat(65_536 - 7) })?.code).toBe('too_large');
  });

  it('a shape problem is reported before the size', () => {
    expect(argumentProblem({ a: 'x'.repeat(100), b: Number.NaN }, { maxBytes: 10, maxDepth: 4 })?.code).toBe(
      'not_plain_json',
    );
  });
});

describe('paths in messages', () => {
  const where = (key: string) => argumentProblem({ [key]: Number.NaN })?.message.replace(/ is not a JSON number$/, '');

  it('identifier keys are dotted; anything else is quoted', () => {
    expect(where('amount')).toBe('arguments.amount');
    expect(where('_x1')).toBe('arguments._x1');
    expect(where('$ref')).toBe('arguments.$ref');
    expect(where('a-b')).toBe('arguments["a-b"]');
    expect(where('1a')).toBe('arguments["1a"]');
    expect(where('odd key')).toBe('arguments["odd key"]');
    expect(where('')).toBe('arguments[""]');
    expect(where('"')).toBe('arguments["\\""]');
  });

  it('a quoted key is cut at 60 characters', () => {
    const sixty = `-${'k'.repeat(59)}`;
    expect(where(sixty)).toBe(`arguments["${sixty}"]`);
    expect(where(`${sixty}tail`)).toBe(`arguments["${sixty}…"]`);
  });
});

describe('findProtoKey: a __proto__ key anywhere in a parsed body', () => {
  it('names the path from body', () => {
    expect(findProtoKey(JSON.parse('{"a":[{"b":{"__proto__":1}}]}'))).toBe('body.a[0].b.__proto__');
    expect(findProtoKey(JSON.parse('{"__proto__":{}}'))).toBe('body.__proto__');
    expect(findProtoKey(JSON.parse('[0,{"__proto__":null}]'))).toBe('body[1].__proto__');
  });

  it('finds nothing in plain data, including nulls, strings and constructor.prototype', () => {
    expect(findProtoKey({ a: [{ b: { c: 1 } }, null, 'str', 2, true], d: null })).toBeNull();
    expect(findProtoKey({ constructor: { prototype: 1 } })).toBeNull();
    expect(findProtoKey(null)).toBeNull();
    expect(findProtoKey('__proto__')).toBeNull();
  });

  it('an inherited __proto__ (every object has one) is not an own key', () => {
    expect(findProtoKey({ a: {} })).toBeNull();
  });

  it('walks a deep body without overflowing the stack', () => {
    const depth = 100_000;
    const text = `${'['.repeat(depth)}{"__proto__":1}${']'.repeat(depth)}`;
    expect(findProtoKey(JSON.parse(text))).toBe(`body${'[0]'.repeat(depth)}.__proto__`);
  });
});
