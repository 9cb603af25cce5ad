import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { isWardenError } from '../src/errors.ts';

describe('loadConfig: WARDEN_COMPLETED_DURABILITY', () => {
  it('defaults to committed and accepts synced', () => {
    expect(loadConfig({}).completedDurability).toBe('committed');
    expect(loadConfig({ WARDEN_COMPLETED_DURABILITY: 'synced' }).completedDurability).toBe('synced');
  });

  it('refuses anything else with CONFIG_INVALID naming the variable', () => {
    let err: unknown;
    try {
      loadConfig({ WARDEN_COMPLETED_DURABILITY: 'fsync' });
    } catch (e) {
      err = e;
    }
    expect(isWardenError(err, 'CONFIG_INVALID')).toBe(true);
    expect(String((err as Error).message)).toMatch(/WARDEN_COMPLETED_DURABILITY/);
  });
});
