import type pg from 'pg';
import { WardenError, describeError } from '../errors.ts';
import { type PgDb, WRITE_LOCK_KEY } from '../store/pg-db.ts';
import { GENESIS_HASH } from './canonical.ts';
import { AUDIT_COLUMNS, type ChainHead, type ChainRow, chainRows } from './chain.ts';

/**
 * Audit group commits on PostgreSQL, awaited on a connection of their own.
 *
 * The synchronous store interface (PgDb) blocks the event loop for every
 * round trip; a group commit through it costs five (BEGIN, the write lock,
 * the head, the insert, COMMIT and its WAL flush). Here a group is one
 * statement, `warden_audit_append` (db/postgres/005_audit_append.sql), sent
 * without blocking: the gateway keeps serving while PostgreSQL commits, and
 * the rows appended meanwhile form the next, larger group.
 *
 * The rows are hashed here, onto the head this connection last saw; the
 * function appends them only if that is still the head, inside the write
 * lock, and otherwise answers the real head (another replica appended), and
 * the group is re-hashed and sent again. With one replica the guess is always
 * right after the first group.
 */

/** A group re-hashed this many times in a row (replicas appending without pause) fails, rather than loop. */
const MAX_ATTEMPTS = 100;
/** close() ends the connection gracefully within this, else drops it. */
const CLOSE_WITHIN_MS = 2_000;

const APPEND = 'SELECT appended, head_seq::text AS head_seq, head_hash FROM warden_audit_append($1, $2, $3, $4)';

export class PgChainCommitter {
  readonly #db: PgDb;
  readonly #onTrouble: (message: string) => void;
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  /** The head as of this connection's last answer; undefined until the first one. */
  #head: ChainHead | undefined;

  constructor(db: PgDb, onTrouble: (message: string) => void) {
    this.#db = db;
    this.#onTrouble = onTrouble;
  }

  /** Appends `rows` after the current head, in one transaction; row i lands at seq firstSeq + i. */
  async write(rows: readonly ChainRow[]): Promise<{ firstSeq: number; hashes: string[] }> {
    const client = await this.#connect();
    // Held open while a group is with the server, so a process awaiting its row stays up; idle, it keeps no process alive.
    setRef(client, true);
    try {
      return await this.#append(client, rows);
    } finally {
      setRef(client, false);
    }
  }

  async #append(client: pg.Client, rows: readonly ChainRow[]): Promise<{ firstSeq: number; hashes: string[] }> {
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      // Unknown head: a guess that cannot match (seq -1) costs one answer and nothing else.
      const head = this.#head ?? { seq: -1, hash: GENESIS_HASH };
      const { values, firstSeq, hashes } = chainRows(head, rows);
      const batch = JSON.stringify(values.map((v) => Object.fromEntries(AUDIT_COLUMNS.map((c, i) => [c, v[i]]))));
      let answer: { appended: boolean; head_seq: string; head_hash: string | null };
      try {
        const res = await client.query(APPEND, [WRITE_LOCK_KEY, head.seq, head.hash, batch]);
        answer = res.rows[0];
      } catch (err) {
        // The connection's state is unknown: the next group starts on a fresh one and asks for the head.
        this.#drop(client);
        // The server answered with an error: the function's transaction rolled back, nothing landed.
        if (isServerError(err)) throw err;
        // The link failed: the answer may be what was lost, after the COMMIT. The rows' hashes
        // are ours, so ask on a fresh connection whether the last of them is in the chain.
        if (await this.#landed(firstSeq + rows.length - 1, hashes[hashes.length - 1]!)) {
          this.#head = { seq: firstSeq + rows.length - 1, hash: hashes[hashes.length - 1]! };
          return { firstSeq, hashes };
        }
        throw err;
      }
      if (answer.appended) {
        this.#head = { seq: firstSeq + rows.length - 1, hash: hashes[hashes.length - 1]! };
        return { firstSeq, hashes };
      }
      const seq = Number(answer.head_seq);
      this.#head = { seq, hash: seq === 0 ? GENESIS_HASH : answer.head_hash! };
    }
    throw new WardenError(
      'AUDIT_WRITE_FAILED',
      `the audit head moved under ${MAX_ATTEMPTS} attempts in a row to append ${rows.length} row(s)`,
    );
  }

  /** Whether the chain holds `hash` at `seq` (asked on a fresh connection); false when that cannot be told. */
  async #landed(seq: number, hash: string): Promise<boolean> {
    if (seq < 1) return false;
    try {
      const client = await this.#connect();
      setRef(client, true);
      try {
        const res = await client.query('SELECT hash FROM audit WHERE seq = $1', [seq]);
        return res.rows[0]?.hash === hash;
      } finally {
        setRef(client, false);
      }
    } catch {
      return false;
    }
  }

  /** Ends the connection (after the last write settled: the caller awaits its writes first). */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#connecting = undefined;
    if (!client) return;
    // Held open until the server has the goodbye: a closing process waits for it, but not
    // on a link that went dead (a graceful end would wait for TCP to give up).
    setRef(client, true);
    let timer: NodeJS.Timeout | undefined;
    const bounded = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        streamOf(client)?.destroy?.();
        resolve();
      }, CLOSE_WITHIN_MS);
    });
    await Promise.race([client.end().catch(() => undefined), bounded]);
    clearTimeout(timer);
  }

  #drop(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#connecting = undefined;
    this.#head = undefined;
    void client.end().catch(() => undefined);
  }

  #connect(): Promise<pg.Client> {
    if (this.#connecting) return this.#connecting;
    const client = this.#db.newClient();
    this.#client = client;
    client.on('error', (err) => {
      // The connection is gone while idle: the next group connects again.
      this.#drop(client);
      this.#onTrouble(`the audit connection to PostgreSQL was lost: ${describeError(err)}`);
    });
    client.on('end', () => this.#drop(client));
    this.#connecting = client.connect().then(
      () => client,
      (err: unknown) => {
        this.#drop(client);
        throw err;
      },
    );
    return this.#connecting;
  }
}

/** An error PostgreSQL itself sent (it carries a SQLSTATE), as opposed to a failed link or a client timeout. */
function isServerError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code);
}

interface Stream {
  ref?: () => void;
  unref?: () => void;
  destroy?: () => void;
}

/** node-postgres keeps its socket private (see pg-db.ts, unrefClient). */
function streamOf(client: pg.Client): Stream | undefined {
  return (client as unknown as { connection?: { stream?: Stream } }).connection?.stream;
}

function setRef(client: pg.Client, ref: boolean): void {
  const stream = streamOf(client);
  if (ref) stream?.ref?.();
  else stream?.unref?.();
}
