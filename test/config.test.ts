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

describe('loadConfig: gateway limits', () => {
  it('passes on only the limits that are set, as numbers', () => {
    expect(loadConfig({}).gatewayLimits).toEqual({});
    expect(
      loadConfig({ WARDEN_MAX_CONNECTIONS_PER_ADDRESS: '32', WARDEN_BODY_TIMEOUT_MS: '20000' }).gatewayLimits,
    ).toEqual({ maxConnectionsPerAddress: 32, bodyTimeoutMs: 20_000 });
  });

  it('refuses a limit that is not a positive whole number, naming the variable', () => {
    expect(() => loadConfig({ WARDEN_MAX_CONNECTIONS: '0' })).toThrow(/WARDEN_MAX_CONNECTIONS/);
    expect(() => loadConfig({ WARDEN_HEADERS_TIMEOUT_MS: 'soon' })).toThrow(/WARDEN_HEADERS_TIMEOUT_MS/);
  });
});

describe('loadConfig: replica lease', () => {
  it('defaults to a 2 s heartbeat and a 10 s lease, and takes both from the environment', () => {
    expect(loadConfig({}).replicas).toEqual({ heartbeatMs: 2_000, leaseMs: 10_000 });
    expect(loadConfig({ WARDEN_HEARTBEAT_MS: '200', WARDEN_REPLICA_LEASE_MS: '500' }).replicas).toEqual({
      heartbeatMs: 200,
      leaseMs: 500,
    });
  });

  it('refuses a lease shorter than two heartbeats, naming both variables', () => {
    expect(() => loadConfig({ WARDEN_HEARTBEAT_MS: '5000', WARDEN_REPLICA_LEASE_MS: '9999' })).toThrow(
      /WARDEN_REPLICA_LEASE_MS \(9999\) must be at least twice WARDEN_HEARTBEAT_MS \(5000\)/,
    );
  });
});
