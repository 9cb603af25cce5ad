import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, policyGetter, type Policy } from '../src/policy/index.ts';

describe('parseDuration', () => {
  it.each([
    [1, 1],
    [90_000, 90_000],
    ['1ms', 1],
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['7d', 604_800_000],
    ['5 m', 300_000],
    [' 5m ', 300_000],
    [`${Number.MAX_SAFE_INTEGER}ms`, Number.MAX_SAFE_INTEGER],
  ])('%j is %d ms', (value, ms) => {
    expect(parseDuration(value)).toBe(ms);
  });

  it.each([
    0,
    -1,
    1.5,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.MAX_SAFE_INTEGER + 1,
    '0s',
    '0ms',
    '-5m',
    '1.5h',
    '5',
    'm',
    '5w',
    '5M',
    'x5m',
    '5mx',
    '5m5',
    '',
    `${Number.MAX_SAFE_INTEGER}d`,
    true,
    null,
    undefined,
    [5],
    { ms: 5 },
  ])('%j is not a duration', (value) => {
    expect(parseDuration(value)).toBeUndefined();
  });
});

describe('formatDuration', () => {
  it.each([
    // Zero is a whole number of every unit; it still reads as milliseconds.
    [0, '0ms'],
    [1, '1ms'],
    [999, '999ms'],
    [1_000, '1s'],
    [1_500, '1500ms'],
    [59_000, '59s'],
    [60_000, '1m'],
    [90_000, '90s'],
    [3_600_000, '1h'],
    [5_400_000, '90m'],
    [86_400_000, '1d'],
    [129_600_000, '36h'],
    [604_800_000, '7d'],
  ])('%d ms reads %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('round-trips through parseDuration', () => {
    for (const ms of [1, 1_500, 60_000, 5_400_000, 604_800_000]) expect(parseDuration(formatDuration(ms))).toBe(ms);
  });
});

describe('policyGetter', () => {
  const one = { source: 'one' } as Policy;
  const two = { source: 'two' } as Policy;

  it('a fixed policy is returned as it is', () => {
    expect(policyGetter(one)()).toBe(one);
  });

  it('a store is asked each time, so a reload is seen', () => {
    let current = one;
    const get = policyGetter({ current: () => current });
    expect(get()).toBe(one);
    current = two;
    expect(get()).toBe(two);
  });

  it('a getter is used as it is', () => {
    const getter = () => two;
    expect(policyGetter(getter)).toBe(getter);
  });

  it('a policy object with a non-function current field is still a policy', () => {
    const odd = { ...one, current: 'not a function' } as unknown as Policy;
    expect(policyGetter(odd)()).toBe(odd);
  });
});
