import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HeldCallStore } from '../src/approvals/store.ts';
import { issueAgentToken, revokeAgentTokenById, TokenStore } from '../src/gateway/tokens.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';
import { freshPgDatabase } from './support/postgres.ts';

/**
 * The hot reads a gateway keeps in memory on PostgreSQL (store/change-watch.ts):
 * live tokens, and which agents have no held call. Each is told of a change
 * by NOTIFY from any connection, at once by a write in this process, and
 * trusts nothing older than a second. The clock is manual: time never ends a
 * cached answer here unless a test moves it.
 */
const T0 = Date.parse('2026-12-04T12:00:00Z');
let dbs: Db[] = [];
let closers: (() => void)[] = [];
let dir: string | undefined;

function open(location: string): Db {
  const db = openDb(location);
  dbs.push(db);
  return db;
}

afterEach(() => {
  for (const c of closers) c();
  for (const db of dbs) db.close();
  closers = [];
  dbs = [];
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

/** A held call written by another writer, past the owning module (as another replica's would arrive). */
function rawHeldCall(db: Db, approvalId: string, agent: string): void {
  db.prepare(
    `INSERT INTO held_calls (approval_id, call_id, agent, name, server, tool, args_hash, args, answer_within_ms, expires_at)
     VALUES (?, ?, ?, 'crm__refund', 'crm', 'refund', 'h', '{}', 45000, ?)`,
  ).run(approvalId, `call-${approvalId}`, agent, T0 + 60_000);
}

function heldCall(agent: string, approvalId: string) {
  return {
    approvalId,
    callId: `call-${approvalId}`,
    agent,
    name: 'crm__refund',
    server: 'crm',
    tool: 'refund',
    argsHash: 'h',
    args: { amount: 1 },
    answerWithinMs: 45_000,
    expiresAt: T0 + 60_000,
  };
}

describe('on PostgreSQL', () => {
  it('a live token is answered from memory until another connection revokes it (NOTIFY), and at most a second without word', async () => {
    const url = await freshPgDatabase();
    const db = open(url);
    const other = open(url);
    const clock = new ManualClock(T0);
    const tokens = new TokenStore(db, { cache: true, clock });
    closers.push(() => tokens.close());
    const { token, id } = issueAgentToken(db, 'support-triage', { clock });
    expect(tokens.authenticate(token)).toMatchObject({ ok: true, tokenId: id });
    // Revoked by a raw write on another connection (as another replica or the CLI would): heard by NOTIFY.
    other.prepare('UPDATE agent_tokens SET revoked_at = ? WHERE id = ?').run(T0, id);
    await until(() => !tokens.authenticate(token).ok);
    expect(tokens.authenticate(token)).toEqual({ ok: false, reason: 'revoked', agent: 'support-triage' });
    expect(tokens.isLive(id)).toBe(false);

    // With the notification switched off, the cached answer is stale until its second is up.
    const second = issueAgentToken(db, 'support-triage', { clock });
    expect(tokens.authenticate(second.token)).toMatchObject({ ok: true });
    other.exec('ALTER TABLE agent_tokens DISABLE TRIGGER agent_tokens_notify');
    other.prepare('UPDATE agent_tokens SET revoked_at = ? WHERE id = ?').run(T0, second.id);
    await new Promise((r) => setTimeout(r, 100));
    expect(tokens.authenticate(second.token)).toMatchObject({ ok: true });
    expect(tokens.isLive(second.id)).toBe(true);
    await clock.tick(1_000);
    expect(tokens.authenticate(second.token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(tokens.isLive(second.id)).toBe(false);

    // A revocation made in this process, through any connection, counts at once (no NOTIFY needed).
    const third = issueAgentToken(db, 'support-triage', { clock });
    expect(tokens.authenticate(third.token)).toMatchObject({ ok: true });
    expect(revokeAgentTokenById(other, third.id, { clock })).toBe(true);
    expect(tokens.authenticate(third.token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(tokens.isLive(third.id)).toBe(false);
  });

  it('an agent with no held call is remembered until a held call is kept anywhere', async () => {
    const url = await freshPgDatabase();
    const db = open(url);
    const other = open(url);
    const clock = new ManualClock(T0);
    const book = new HeldCallStore(db, clock, 'host:1:me', { cache: true });
    closers.push(() => book.close());
    expect(book.hasAny('support-triage')).toBe(false);
    // Kept by another process: heard by NOTIFY.
    rawHeldCall(other, 'ap1', 'support-triage');
    await until(() => book.hasAny('support-triage'));
    expect(book.hasAny('support-triage')).toBe(true);
    // Kept in this process through another store: at once.
    expect(book.hasAny('billing-bot')).toBe(false);
    new HeldCallStore(other, clock, 'host:1:other').keep(heldCall('billing-bot', 'ap2'));
    expect(book.hasAny('billing-bot')).toBe(true);
    // Without word of it, an answer of "none" lasts a second at most (once the keep's own NOTIFY is in).
    await new Promise((r) => setTimeout(r, 100));
    expect(book.hasAny('pager')).toBe(false);
    other.exec('ALTER TABLE held_calls DISABLE TRIGGER held_calls_notify');
    rawHeldCall(other, 'ap3', 'pager');
    await new Promise((r) => setTimeout(r, 100));
    expect(book.hasAny('pager')).toBe(false);
    await clock.tick(1_000);
    expect(book.hasAny('pager')).toBe(true);
  });

  it('without the cache option every answer is read from the database', async () => {
    const url = await freshPgDatabase();
    const db = open(url);
    const other = open(url);
    const tokens = new TokenStore(db);
    const { token, id } = issueAgentToken(db, 'support-triage');
    other.exec('ALTER TABLE agent_tokens DISABLE TRIGGER agent_tokens_notify');
    expect(tokens.authenticate(token)).toMatchObject({ ok: true });
    other.prepare('UPDATE agent_tokens SET revoked_at = 1 WHERE id = ?').run(id);
    expect(tokens.authenticate(token)).toMatchObject({ ok: false, reason: 'revoked' });
  });
});

describe('on SQLite', () => {
  it('nothing is cached: another connection’s write counts on the next read', () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-watch-'));
    const location = join(dir, 'warden.db');
    const db = open(location);
    const other = open(location);
    const clock = new ManualClock(T0);
    const tokens = new TokenStore(db, { cache: true, clock });
    const book = new HeldCallStore(db, clock, 'host:1:me', { cache: true });
    const { token, id } = issueAgentToken(db, 'support-triage', { clock });
    expect(tokens.authenticate(token)).toMatchObject({ ok: true });
    expect(book.hasAny('support-triage')).toBe(false);
    other.prepare('UPDATE agent_tokens SET revoked_at = ? WHERE id = ?').run(T0, id);
    rawHeldCall(other, 'ap1', 'support-triage');
    expect(tokens.authenticate(token)).toMatchObject({ ok: false, reason: 'revoked' });
    expect(book.hasAny('support-triage')).toBe(true);
  });
});
