import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReplayGuard, SIGNATURE_WINDOW_MS } from '../src/slack/replay-guard.ts';
import { openDb, type Db } from '../src/store/db.ts';
import { ManualClock } from './support/manual-clock.ts';
import { storeLocation } from './support/store-under-test.ts';

/*
 * The guard on its own, on a manual clock. Through the Bolt receiver a stale
 * timestamp is refused by Bolt before the guard sees it, so only these tests
 * hold the guard's own checks to account. Its memory is a table in a real
 * store (a SQLite file, or PostgreSQL in the twin).
 */

const START = Date.parse('2026-06-01T12:00:00Z');
const sec = (ms: number) => Math.floor(ms / 1000);
const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const undo of cleanup.splice(0).reverse()) undo();
});

// One store per test, made ahead because a PostgreSQL schema is created asynchronously.
let location: string;
beforeEach(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'warden-replay-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  location = await storeLocation(dir);
});

function tempDbPath(): string {
  return location;
}

function open(path: string): Db {
  const db = openDb(path);
  cleanup.push(() => db.close());
  return db;
}

const guardAt = (start = START) => {
  const clock = new ManualClock(start);
  return { clock, guard: new ReplayGuard(open(tempDbPath()), clock) };
};

describe('ReplayGuard', () => {
  it('accepts a fresh signed request once and remembers it', () => {
    const { guard } = guardAt();
    expect(guard.check('v0=aaa', sec(START))).toBeNull();
    expect(guard.size).toBe(1);
  });

  it('refuses the same signature again, however soon or late within the window', async () => {
    const { clock, guard } = guardAt();
    expect(guard.check('v0=aaa', sec(START))).toBeNull();
    expect(guard.check('v0=aaa', sec(START))).toBe('replayed request (signature already seen)');
    await clock.tick(SIGNATURE_WINDOW_MS - 1000);
    expect(guard.check('v0=aaa', sec(START))).toBe('replayed request (signature already seen)');
    // Another signature at the same time is a different request.
    expect(guard.check('v0=bbb', sec(START))).toBeNull();
  });

  it('refuses a missing or empty signature, and a malformed timestamp', () => {
    const { guard } = guardAt();
    expect(guard.check(undefined, sec(START))).toBe('missing x-slack-signature');
    expect(guard.check('', sec(START))).toBe('missing x-slack-signature');
    expect(guard.check('v0=aaa', Number.NaN)).toBe('missing or malformed x-slack-request-timestamp');
    expect(guard.check('v0=aaa', Number.POSITIVE_INFINITY)).toBe('missing or malformed x-slack-request-timestamp');
    expect(guard.size).toBe(0);
  });

  it('refuses a timestamp older than the window, and accepts one at its edge', () => {
    const { guard } = guardAt();
    expect(guard.check('v0=old', sec(START - SIGNATURE_WINDOW_MS) - 1)).toBe('x-slack-request-timestamp is stale');
    expect(guard.check('v0=edge', sec(START - SIGNATURE_WINDOW_MS))).toBeNull();
    expect(guard.size).toBe(1);
  });

  it('refuses a timestamp further ahead than the window, and accepts one at its edge', () => {
    const { guard } = guardAt();
    expect(guard.check('v0=ahead', sec(START + SIGNATURE_WINDOW_MS) + 1)).toBe(
      'x-slack-request-timestamp is in the future',
    );
    expect(guard.check('v0=edge', sec(START + SIGNATURE_WINDOW_MS))).toBeNull();
  });

  it('a request that was fresh becomes stale as the clock moves: replaying it late is refused as stale', async () => {
    const { clock, guard } = guardAt();
    expect(guard.check('v0=aaa', sec(START))).toBeNull();
    await clock.tick(SIGNATURE_WINDOW_MS + 1000);
    expect(guard.check('v0=aaa', sec(START))).toBe('x-slack-request-timestamp is stale');
    // And a brand-new signature with that old timestamp is no better.
    expect(guard.check('v0=new', sec(START))).toBe('x-slack-request-timestamp is stale');
  });

  it('refuses a replay at the very last millisecond its request would still pass (the edge of the window)', async () => {
    const { clock, guard } = guardAt();
    expect(guard.check('v0=aaa', sec(START))).toBeNull();
    await clock.tick(SIGNATURE_WINDOW_MS);
    // Not stale yet (the edge is accepted), so it must still be remembered.
    expect(guard.check('v0=fresh', sec(START))).toBeNull();
    expect(guard.check('v0=aaa', sec(START))).toBe('replayed request (signature already seen)');
  });

  it('forgets a signature once its request could no longer pass, so memory stays bounded', async () => {
    const { clock, guard } = guardAt();
    for (let i = 0; i < 10; i++) expect(guard.check(`v0=${i}`, sec(START))).toBeNull();
    expect(guard.size).toBe(10);
    await clock.tick(SIGNATURE_WINDOW_MS - 1000);
    guard.check('v0=later', sec(clock.now()));
    expect(guard.size).toBe(11);
    await clock.tick(2000);
    guard.check('v0=later2', sec(clock.now()));
    expect(guard.size).toBe(2);
  });

  it('remembers a request stamped in the future until its own window has passed, not just the clock’s', async () => {
    const { clock, guard } = guardAt();
    const ahead = START + SIGNATURE_WINDOW_MS - 10_000;
    expect(guard.check('v0=ahead', sec(ahead))).toBeNull();
    // Past now + window, but the request (stamped ahead) would still pass: still remembered.
    await clock.tick(SIGNATURE_WINDOW_MS + 5000);
    expect(guard.check('v0=ahead', sec(ahead))).toBe('replayed request (signature already seen)');
  });

  it('shares its memory through the database: a request one connection accepted is refused by another, and after reopening', () => {
    const path = tempDbPath();
    const clock = new ManualClock(START);
    const first = new ReplayGuard(open(path), clock);
    const second = new ReplayGuard(open(path), clock);
    expect(first.check('v0=aaa', sec(START))).toBeNull();
    expect(second.check('v0=aaa', sec(START))).toBe('replayed request (signature already seen)');
    expect(second.check('v0=bbb', sec(START))).toBeNull();
    expect(first.check('v0=bbb', sec(START))).toBe('replayed request (signature already seen)');
    // A restart: a new connection on the same file remembers both.
    const reopened = new ReplayGuard(open(path), clock);
    expect(reopened.check('v0=aaa', sec(START))).toBe('replayed request (signature already seen)');
    expect(reopened.size).toBe(2);
  });

  it('prunes rows once their window has passed, whichever process remembered them', async () => {
    const path = tempDbPath();
    const clock = new ManualClock(START);
    const first = new ReplayGuard(open(path), clock);
    const second = new ReplayGuard(open(path), clock);
    expect(first.check('v0=aaa', sec(START))).toBeNull();
    await clock.tick(SIGNATURE_WINDOW_MS + 1);
    expect(second.check('v0=later', sec(clock.now()))).toBeNull();
    expect(second.size).toBe(1);
  });
});
