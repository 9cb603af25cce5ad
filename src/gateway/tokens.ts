import { randomBytes } from 'node:crypto';
import { WardenError } from '../errors.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Policy } from '../policy/types.ts';
import type { Db, Statement } from '../store/db.ts';
import { ChangeWatch, noteLocalWrite } from '../store/change-watch.ts';
import { sha256Hex } from '../audit/canonical.ts';

/**
 * Agent tokens. The secret is shown once at creation; only its sha256 is
 * stored, and a request is identified by looking the hash up. Comparing
 * hashes through an index means no byte of the presented token is compared
 * against a stored secret, so response time says nothing about a prefix.
 */
export const TOKEN_PREFIX = 'wdn_';
// 32 random bytes, base64url: 43 characters.
const TOKEN_RE = /^wdn_[A-Za-z0-9_-]{43}$/;

export interface AgentTokenInfo {
  id: string;
  agent: string;
  createdAt: number;
  revokedAt: number | null;
}

export type AuthResult =
  | { ok: true; agent: string; tokenId: string }
  | { ok: false; reason: 'missing' | 'malformed' | 'unknown'; agent?: undefined }
  /** The token was real once: whose it was is worth naming in the trail. */
  | { ok: false; reason: 'revoked'; agent: string };

export function hashToken(token: string): string {
  return sha256Hex(token);
}

export function isWellFormedToken(token: string): boolean {
  return TOKEN_RE.test(token);
}

interface TokenOptions {
  clock?: Clock | undefined;
  /** When given, the agent must be defined in it. */
  policy?: Policy | undefined;
}

function assertAgent(agent: string, policy: Policy | undefined): void {
  if (!agent || typeof agent !== 'string') throw new WardenError('INVALID_INPUT', 'agent name is required');
  if (policy && !policy.agents[agent]) {
    const known = Object.keys(policy.agents).sort().join(', ') || '(none)';
    throw new WardenError(
      'NOT_FOUND',
      `agent "${agent}" is not defined in the policy ${policy.source}; known agents: ${known}`,
    );
  }
}

/** Creates a token for `agent` and returns the secret; it cannot be read back later. */
export function createAgentToken(db: Db, agent: string, options: TokenOptions = {}): string {
  return issueAgentToken(db, agent, options).token;
}

/** As createAgentToken, with the token's id too, so a holder (a `warden run`) can revoke it later without the secret. */
export function issueAgentToken(db: Db, agent: string, options: TokenOptions = {}): { token: string; id: string } {
  assertAgent(agent, options.policy);
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const id = `tok_${randomBytes(6).toString('hex')}`;
  db.prepare('INSERT INTO agent_tokens (id, agent, token_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, NULL)').run(
    id,
    agent,
    hashToken(token),
    (options.clock ?? systemClock).now(),
  );
  return { token, id };
}

/** Revokes one token by its id; returns whether it was live. */
export function revokeAgentTokenById(db: Db, id: string, options: { clock?: Clock | undefined } = {}): boolean {
  const changes = db
    .prepare('UPDATE agent_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL')
    .run((options.clock ?? systemClock).now(), id).changes;
  noteLocalWrite(TOKENS_CHANNEL);
  return changes > 0;
}

/** Revokes every live token of `agent`; returns how many were revoked. */
export function revokeAgentTokens(db: Db, agent: string, options: { clock?: Clock | undefined } = {}): number {
  if (!agent) throw new WardenError('INVALID_INPUT', 'agent name is required');
  const changes = db
    .prepare('UPDATE agent_tokens SET revoked_at = ? WHERE agent = ? AND revoked_at IS NULL')
    .run((options.clock ?? systemClock).now(), agent).changes;
  noteLocalWrite(TOKENS_CHANNEL);
  return changes;
}

/** Revokes the agent's live tokens and creates a new one, atomically. */
export function rotateAgentToken(
  db: Db,
  agent: string,
  options: TokenOptions = {},
): { token: string; revoked: number } {
  assertAgent(agent, options.policy);
  return db
    .transaction(() => {
      const revoked = revokeAgentTokens(db, agent, options);
      return { token: createAgentToken(db, agent, options), revoked };
    })
    .immediate();
}

/** Token metadata, never the secret or its hash. */
export function listAgentTokens(db: Db, agent?: string): AgentTokenInfo[] {
  const rows = (
    agent
      ? db
          .prepare('SELECT id, agent, created_at, revoked_at FROM agent_tokens WHERE agent = ? ORDER BY created_at, id')
          .all(agent)
      : db.prepare('SELECT id, agent, created_at, revoked_at FROM agent_tokens ORDER BY agent, created_at, id').all()
  ) as Array<{ id: string; agent: string; created_at: number; revoked_at: number | null }>;
  return rows.map((r) => ({ id: r.id, agent: r.agent, createdAt: r.created_at, revokedAt: r.revoked_at }));
}

/** The channel agent_tokens' revocations are heard on (db/postgres/004_change_notify.sql). */
export const TOKENS_CHANNEL = 'warden_tokens';

export interface TokenStoreOptions {
  /**
   * Keep the live tokens it has seen in memory, on PostgreSQL (see
   * store/change-watch.ts): a revocation reaches it by NOTIFY, or from this
   * process at once, and nothing is trusted longer than a second. The
   * gateway's store does; close() ends its LISTEN connection.
   */
  cache?: boolean | undefined;
  clock?: Clock | undefined;
}

interface LiveToken {
  id: string;
  agent: string;
  stamp: { epoch: number; at: number };
}

/** At most this many live tokens are kept; past it the cache starts again (a store has a few per agent). */
const MAX_CACHED_TOKENS = 10_000;

/**
 * Resolves a presented token to its agent. Reads the database on every call,
 * so a revocation by the CLI (another process) takes effect on the next
 * request. With `cache` on PostgreSQL, a token seen live less than a second
 * ago and not revoked since is answered from memory: a revocation elsewhere
 * then counts once its NOTIFY arrives (milliseconds), a second at worst.
 */
export class TokenStore {
  readonly #lookup: Statement<[string], { id: string; agent: string; revoked_at: number | null }>;
  readonly #byId: Statement<[string], { revoked_at: number | null }>;
  readonly #watch: ChangeWatch | undefined;
  readonly #byHash = new Map<string, LiveToken>();
  readonly #liveIds = new Map<string, LiveToken>();

  constructor(db: Db, options: TokenStoreOptions = {}) {
    this.#lookup = db.prepare('SELECT id, agent, revoked_at FROM agent_tokens WHERE token_hash = ?');
    this.#byId = db.prepare('SELECT revoked_at FROM agent_tokens WHERE id = ?');
    this.#watch = options.cache ? ChangeWatch.open(db, TOKENS_CHANNEL, { clock: options.clock }) : undefined;
  }

  /**
   * Whether the token with this id (from an earlier authenticate) still
   * stands: read from the database, so a revocation by another process counts.
   */
  isLive(tokenId: string): boolean {
    const known = this.#liveIds.get(tokenId);
    if (known && this.#watch?.fresh(known.stamp)) return true;
    const row = this.#byId.get(tokenId);
    return row !== undefined && row.revoked_at === null;
  }

  authenticate(presented: string | undefined): AuthResult {
    if (presented === undefined || presented === '') return { ok: false, reason: 'missing' };
    if (!isWellFormedToken(presented)) return { ok: false, reason: 'malformed' };
    const hash = hashToken(presented);
    const known = this.#byHash.get(hash);
    if (known && this.#watch?.fresh(known.stamp)) return { ok: true, agent: known.agent, tokenId: known.id };
    // Stamped before the read: a revocation heard while it runs makes the answer stale, not trusted.
    const stamp = this.#watch?.stamp();
    const row = this.#lookup.get(hash);
    if (!row) return { ok: false, reason: 'unknown' };
    if (row.revoked_at !== null) return { ok: false, reason: 'revoked', agent: row.agent };
    if (stamp) {
      if (this.#byHash.size >= MAX_CACHED_TOKENS) {
        this.#byHash.clear();
        this.#liveIds.clear();
      }
      const live = { id: row.id, agent: row.agent, stamp };
      this.#byHash.set(hash, live);
      this.#liveIds.set(row.id, live);
    }
    return { ok: true, agent: row.agent, tokenId: row.id };
  }

  /** Ends the LISTEN connection of a caching store. */
  close(): void {
    this.#watch?.close();
    this.#byHash.clear();
    this.#liveIds.clear();
  }
}

/** Revokes one token by its secret (a drill's throwaway canary token); returns whether it was live. */
export function revokeAgentToken(db: Db, token: string, options: { clock?: Clock | undefined } = {}): boolean {
  const changes = db
    .prepare('UPDATE agent_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL')
    .run((options.clock ?? systemClock).now(), hashToken(token)).changes;
  noteLocalWrite(TOKENS_CHANNEL);
  return changes > 0;
}
