import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/index.ts';
import { isWardenError } from '../src/errors.ts';

describe('loadConfig: WARDEN_AUDIT_DURABILITY', () => {
  it('defaults to fast and accepts strict', () => {
    expect(loadConfig({}).auditDurability).toBe('fast');
    expect(loadConfig({ WARDEN_AUDIT_DURABILITY: 'strict' }).auditDurability).toBe('strict');
  });

  it('refuses anything else with CONFIG_INVALID naming the variable', () => {
    let err: unknown;
    try {
      loadConfig({ WARDEN_AUDIT_DURABILITY: 'fsync' });
    } catch (e) {
      err = e;
    }
    expect(isWardenError(err, 'CONFIG_INVALID')).toBe(true);
    expect(String((err as Error).message)).toMatch(/WARDEN_AUDIT_DURABILITY/);
  });
});
