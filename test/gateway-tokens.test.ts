import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isWardenError } from '../src/errors.ts';
import {
  TokenStore,
  createAgentToken,
  hashToken,
  isWellFormedToken,
  issueAgentToken,
  listAgentTokens,
  revokeAgentToken,
  revokeAgentTokenById,
  revokeAgentTokens,
  rotateAgentToken,
} from '../src/gateway/tokens.ts';
import { parsePolicy } from '../src/policy/load.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';
import { UNSTARTED_SERVERS_YAML } from './support/policies.ts';
import { refuseInserts } from './support/refuse-writes.ts';
import { storeLocation } from './support/store-under-test.ts';

/* Agent tokens on a real store (a SQLite file, or PostgreSQL in the twin), without a gateway: issue, authenticate, revoke, rotate. */

let dir: string;
let db: Db;
const clock = new ManualClock(Date.parse('2026-03-01T09:00:00Z'));
const policy = parsePolicy(
  `${UNSTARTED_SERVERS_YAML}
agents:
  - agent: support-triage
    mcp_scopes: { tickets: [read] }
  - agent: billing-bot
    mcp_scopes: { tickets: [read] }
`,
  'tokens-policy.yml',
  {},
);

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'warden-tokens-'));
  db = openDb(await storeLocation(dir));
});

afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const isWarden = (fn: () => unknown) => isWardenError(thrown(fn), 'NOT_FOUND');

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('agent tokens', () => {
  it('a new token is wdn_ + 43 base64url characters, stored only as its sha256, and authenticates as its agent', () => {
    const token = createAgentToken(db, 'support-triage', { clock, policy });
    expect(token).toMatch(/^wdn_[A-Za-z0-9_-]{43}$/);
    expect(isWellFormedToken(token)).toBe(true);
    const stored = db.prepare('SELECT * FROM agent_tokens').all() as Array<Record<string, unknown>>;
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ agent: 'support-triage', token_hash: hashToken(token), created_at: clock.now() });
    expect(stored[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(stored)).not.toContain(token.slice(4));
    expect(String(stored[0]!.id)).toMatch(/^tok_[0-9a-f]{12}$/);
    const auth = new TokenStore(db).authenticate(token);
    expect(auth).toEqual({ ok: true, agent: 'support-triage', tokenId: stored[0]!.id });
  });

  it('two tokens are different secrets', () => {
    const a = createAgentToken(db, 'support-triage');
    const b = createAgentToken(db, 'support-triage');
    expect(a).not.toBe(b);
    expect(listAgentTokens(db, 'support-triage')).toHaveLength(2);
  });

  it('refuses an agent the policy does not define, naming the known ones, and an empty agent name', () => {
    const err = thrown(() => createAgentToken(db, 'ghost', { policy }));
    expect(isWardenError(err, 'NOT_FOUND')).toBe(true);
    expect((err as Error).message).toBe(
      'agent "ghost" is not defined in the policy tokens-policy.yml; known agents: billing-bot, support-triage',
    );
    for (const err of [
      thrown(() => createAgentToken(db, '')),
      // A caller outside TypeScript (a JSON body, a loosely parsed argument) could pass a non-string.
      thrown(() => createAgentToken(db, 42 as unknown as string)),
      thrown(() => revokeAgentTokens(db, '')),
    ]) {
      expect(isWardenError(err, 'INVALID_INPUT')).toBe(true);
      expect((err as Error).message).toBe('agent name is required');
    }
    const none = thrown(() => createAgentToken(db, 'ghost', { policy: { ...policy, agents: {} } }));
    expect((none as Error).message).toMatch(/known agents: \(none\)$/);
    expect(
      isWardenError(
        thrown(() => rotateAgentToken(db, 'ghost', { policy })),
        'NOT_FOUND',
      ),
    ).toBe(true);
    expect(listAgentTokens(db)).toEqual([]);
  });

  it('authenticate says why a token is refused: missing, malformed, unknown, revoked', () => {
    const store = new TokenStore(db);
    const token = createAgentToken(db, 'support-triage', { clock });
    expect(store.authenticate(undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(store.authenticate('')).toEqual({ ok: false, reason: 'missing' });
    expect(store.authenticate('Bearer x')).toEqual({ ok: false, reason: 'malformed' });
    expect(store.authenticate(`${token}x`)).toEqual({ ok: false, reason: 'malformed' });
    expect(store.authenticate(` ${token}`)).toEqual({ ok: false, reason: 'malformed' });
    expect(store.authenticate(`wdn_${'A'.repeat(43)}`)).toEqual({ ok: false, reason: 'unknown' });
    // Well formed, one character off: a different hash, so unknown.
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    expect(store.authenticate(flipped)).toEqual({ ok: false, reason: 'unknown' });
    revokeAgentTokens(db, 'support-triage', { clock });
    expect(store.authenticate(token)).toEqual({ ok: false, reason: 'revoked', agent: 'support-triage' });
  });

  it('revokeAgentTokens revokes only that agent’s live tokens, stamps the time, and counts them', async () => {
    const t1 = createAgentToken(db, 'support-triage', { clock });
    const t2 = createAgentToken(db, 'support-triage', { clock });
    const other = createAgentToken(db, 'billing-bot', { clock });
    const store = new TokenStore(db);
    const ids = [t1, t2, other].map((t) => {
      const r = store.authenticate(t);
      if (!r.ok) throw new Error('expected a live token');
      return r.tokenId;
    });
    await clock.tick(60_000);
    expect(revokeAgentTokens(db, 'support-triage', { clock })).toBe(2);
    expect(revokeAgentTokens(db, 'support-triage', { clock })).toBe(0);
    expect(store.isLive(ids[0]!)).toBe(false);
    expect(store.isLive(ids[1]!)).toBe(false);
    expect(store.isLive(ids[2]!)).toBe(true);
    expect(store.isLive('tok_nonexistent')).toBe(false);
    expect(store.authenticate(other)).toMatchObject({ ok: true, agent: 'billing-bot' });
    const listed = listAgentTokens(db, 'support-triage');
    expect(listed.map((t) => t.revokedAt)).toEqual([clock.now(), clock.now()]);
    expect(listed.every((t) => t.createdAt === clock.now() - 60_000)).toBe(true);
  });

  it('rotateAgentToken revokes the live tokens and issues one new one, in one transaction', () => {
    const old = createAgentToken(db, 'support-triage', { clock });
    const { token, revoked } = rotateAgentToken(db, 'support-triage', { clock, policy });
    expect(revoked).toBe(1);
    const store = new TokenStore(db);
    expect(store.authenticate(old)).toEqual({ ok: false, reason: 'revoked', agent: 'support-triage' });
    expect(store.authenticate(token)).toMatchObject({ ok: true, agent: 'support-triage' });
    // The revocation does not outlive a failed issue: when the insert fails, nothing is revoked.
    refuseInserts(db, 'agent_tokens', 'no');
    expect(() => rotateAgentToken(db, 'support-triage', { clock })).toThrow(/no/);
    expect(store.authenticate(token)).toMatchObject({ ok: true });
  });

  it('revokeAgentToken revokes one token by its secret and says whether it was live', () => {
    const a = createAgentToken(db, 'support-triage', { clock });
    const b = createAgentToken(db, 'support-triage', { clock });
    expect(revokeAgentToken(db, a, { clock })).toBe(true);
    expect(revokeAgentToken(db, a, { clock })).toBe(false);
    expect(revokeAgentToken(db, `wdn_${'Z'.repeat(43)}`, { clock })).toBe(false);
    const store = new TokenStore(db);
    expect(store.authenticate(a)).toEqual({ ok: false, reason: 'revoked', agent: 'support-triage' });
    expect(store.authenticate(b)).toMatchObject({ ok: true });
  });

  it('issueAgentToken gives the id with the secret; revokeAgentTokenById revokes that one token, stamped, once', async () => {
    const issued = issueAgentToken(db, 'support-triage', { clock, policy });
    const other = createAgentToken(db, 'support-triage', { clock });
    const store = new TokenStore(db);
    expect(store.authenticate(issued.token)).toEqual({ ok: true, agent: 'support-triage', tokenId: issued.id });
    expect(isWarden(() => issueAgentToken(db, 'nobody', { clock, policy }))).toBe(true);
    await clock.advanceTo(clock.now() + 5_000);
    expect(revokeAgentTokenById(db, issued.id, { clock })).toBe(true);
    expect(revokeAgentTokenById(db, issued.id, { clock })).toBe(false);
    expect(revokeAgentTokenById(db, 'tok_missing', { clock })).toBe(false);
    expect(store.authenticate(issued.token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(store.authenticate(other)).toMatchObject({ ok: true });
    expect(listAgentTokens(db, 'support-triage').find((t) => t.id === issued.id)?.revokedAt).toBe(clock.now());
  });

  it('listAgentTokens gives metadata only, ordered by agent then creation, and never the secret or its hash', async () => {
    createAgentToken(db, 'support-triage', { clock });
    await clock.tick(1000);
    createAgentToken(db, 'billing-bot', { clock });
    await clock.tick(1000);
    createAgentToken(db, 'support-triage', { clock });
    const all = listAgentTokens(db);
    expect(all.map((t) => t.agent)).toEqual(['billing-bot', 'support-triage', 'support-triage']);
    const mine = listAgentTokens(db, 'support-triage');
    expect(mine).toHaveLength(2);
    expect(mine[0]!.createdAt).toBeLessThan(mine[1]!.createdAt);
    for (const t of all) expect(Object.keys(t).sort()).toEqual(['agent', 'createdAt', 'id', 'revokedAt']);
  });
});
