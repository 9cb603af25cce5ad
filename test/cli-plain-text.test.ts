import { describe, expect, it } from 'vitest';
import { plainText } from '../src/cli/plain-text.ts';

describe('plainText', () => {
  it.each([
    ['<@U0123ABCD> is not in control.halters', 'U0123ABCD is not in control.halters'],
    ['posted in <#C0ALERTS|oncall>', 'posted in oncall'],
    ['posted in <#C0ALERTS>', 'posted in #C0ALERTS'],
    ['<!here> agents halted', '@here agents halted'],
    ['see <https://example.com/x|the runbook>', 'see the runbook (https://example.com/x)'],
    ['see <https://example.com/x>', 'see https://example.com/x'],
    ['amount < 5 and > 2', 'amount < 5 and > 2'],
  ])('%s → %s', (input, expected) => {
    expect(plainText(input)).toBe(expected);
  });
});
