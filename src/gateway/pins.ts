import { canonicalJson, sha256Hex } from '../audit/canonical.ts';
import type { AuditSink } from '../audit/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Alert, AlertSink } from '../control/types.ts';
import { WardenError, describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { qualifiedToolName } from '../policy/decide.ts';
import type { Db, Statement } from '../store/db.ts';
import type { Catalogue } from './upstream.ts';

/**
 * Tool pinning: the definition of every upstream tool is hashed the first time
 * Warden sees it (trust on first use). A later, different definition blocks
 * the tool until a person re-approves it, so an upstream cannot quietly
 * rewrite what a tool claims to do (a "rug pull" or poisoned description).
 */
export interface PinnableTool {
  name: string;
  title?: string | undefined;
  description?: string | undefined;
  inputSchema?: unknown;
  outputSchema?: unknown;
  annotations?: unknown;
}

/** The parts of a definition that a model reads or that change what a call means. */
export function pinDefinition(tool: PinnableTool): string {
  return canonicalJson({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: tool.inputSchema,
    outputSchema: tool.outputSchema,
    annotations: tool.annotations,
  });
}

export function pinHash(tool: PinnableTool): string {
  return sha256Hex(pinDefinition(tool));
}

export type PinStatus = 'approved' | 'blocked';

export interface PinRow {
  server: string;
  tool: string;
  hash: string;
  status: PinStatus;
  pendingHash: string | null;
  firstSeen: number;
  updatedAt: number;
  approvedBy: string | null;
}

export interface PinObservation {
  tool: string;
  hash: string;
  /** 'new': first sighting, pinned as approved. */
  state: 'new' | 'approved' | 'blocked';
  /** True when this observation is what blocked the tool (a fresh change: audit and alert it). */
  changed: boolean;
  previousHash?: string | undefined;
}

interface DbPinRow {
  server: string;
  tool: string;
  hash: string;
  status: PinStatus;
  pending_hash: string | null;
  first_seen: number;
  updated_at: number;
  approved_by: string | null;
}

export class PinStore {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #get: Statement<[string, string], DbPinRow>;

  constructor(db: Db, options: { clock?: Clock | undefined } = {}) {
    this.#db = db;
    this.#clock = options.clock ?? systemClock;
    this.#get = db.prepare('SELECT * FROM tool_pins WHERE server = ? AND tool = ?');
  }

  /**
   * Records what an upstream offers now. A definition equal to the approved
   * one is fine (also when it reverts to it); any other is blocked and kept
   * as pending for `warden tools approve`.
   */
  observe(server: string, tools: readonly PinnableTool[]): PinObservation[] {
    const now = this.#clock.now();
    return this.#db.transaction(() =>
      tools.map((tool): PinObservation => {
        const definition = pinDefinition(tool);
        const hash = sha256Hex(definition);
        const row = this.#get.get(server, tool.name);
        if (!row) {
          this.#db
            .prepare(
              `INSERT INTO tool_pins (server, tool, hash, definition, status, pending_hash, pending_definition, first_seen, updated_at, approved_by)
               VALUES (?, ?, ?, ?, 'approved', NULL, NULL, ?, ?, NULL)`,
            )
            .run(server, tool.name, hash, definition, now, now);
          return { tool: tool.name, hash, state: 'new', changed: false };
        }
        if (row.hash === hash) {
          if (row.status === 'blocked') {
            this.#db
              .prepare(
                "UPDATE tool_pins SET status = 'approved', pending_hash = NULL, pending_definition = NULL, updated_at = ? WHERE server = ? AND tool = ?",
              )
              .run(now, server, tool.name);
          }
          return { tool: tool.name, hash, state: 'approved', changed: false };
        }
        const fresh = row.status !== 'blocked' || row.pending_hash !== hash;
        if (fresh) {
          this.#db
            .prepare(
              "UPDATE tool_pins SET status = 'blocked', pending_hash = ?, pending_definition = ?, updated_at = ? WHERE server = ? AND tool = ?",
            )
            .run(hash, definition, now, server, tool.name);
        }
        return { tool: tool.name, hash, state: 'blocked', changed: fresh, previousHash: row.hash };
      }),
    )();
  }

  /** Whether a tool whose current definition hashes to `hash` may be called (reads the database: approvals come from the CLI). */
  isApproved(server: string, tool: string, hash: string): boolean {
    const row = this.#get.get(server, tool);
    return row !== undefined && row.status === 'approved' && row.hash === hash;
  }

  get(server: string, tool: string): PinRow | undefined {
    const row = this.#get.get(server, tool);
    return row && toPinRow(row);
  }

  list(server?: string): PinRow[] {
    const rows = (
      server
        ? this.#db.prepare('SELECT * FROM tool_pins WHERE server = ? ORDER BY server, tool').all(server)
        : this.#db.prepare('SELECT * FROM tool_pins ORDER BY server, tool').all()
    ) as DbPinRow[];
    return rows.map(toPinRow);
  }
}

function toPinRow(r: DbPinRow): PinRow {
  return {
    server: r.server,
    tool: r.tool,
    hash: r.hash,
    status: r.status,
    pendingHash: r.pending_hash,
    firstSeen: r.first_seen,
    updatedAt: r.updated_at,
    approvedBy: r.approved_by,
  };
}

export interface PinApproval {
  server: string;
  tool: string;
  previousHash: string;
  hash: string;
}

/**
 * Accepts a blocked tool's new definition. Refuses when nothing is pending,
 * so a typo cannot silently "approve" a tool that was never blocked.
 */
export function approveToolPin(
  db: Db,
  server: string,
  tool: string,
  actor: string,
  options: { clock?: Clock | undefined } = {},
): PinApproval {
  if (!server || !tool) throw new WardenError('INVALID_INPUT', 'server and tool are required');
  if (!actor) throw new WardenError('INVALID_INPUT', 'actor is required');
  return db
    .transaction(() => {
      const row = db.prepare('SELECT * FROM tool_pins WHERE server = ? AND tool = ?').get(server, tool) as
        | DbPinRow
        | undefined;
      if (!row)
        throw new WardenError('NOT_FOUND', `no pinned tool "${tool}" on server "${server}"; see \`warden tools list\``);
      if (row.status !== 'blocked' || !row.pending_hash) {
        throw new WardenError('INVALID_INPUT', `tool ${server}/${tool} is not blocked; nothing to approve`);
      }
      db.prepare(
        `UPDATE tool_pins SET hash = pending_hash, definition = pending_definition, status = 'approved',
         pending_hash = NULL, pending_definition = NULL, updated_at = ?, approved_by = ?
       WHERE server = ? AND tool = ? AND status = 'blocked' AND pending_hash = ?`,
      ).run((options.clock ?? systemClock).now(), actor, server, tool, row.pending_hash);
      return { server, tool, previousHash: row.hash, hash: row.pending_hash };
    })
    .immediate();
}

export interface ToolPinsOptions {
  store: PinStore;
  audit: AuditSink;
  alerts: AlertSink;
  logger: Logger;
}

interface PinState {
  hash: string;
  approved: boolean;
}

/**
 * The gateway's view of the pins: every catalogue an upstream reports is
 * pinned here before any of its tools is listed or called. It needs nothing
 * from the pipeline, so it is built first and handed to both the upstreams
 * (as their onCatalogue) and the pipeline.
 */
export class ToolPins {
  readonly #options: ToolPinsOptions;
  readonly #log: Logger;
  /** Per server, per tool: the hash last reported and whether it may be called. */
  readonly #state = new Map<string, Map<string, PinState>>();
  readonly #changed = new Set<() => void>();

  constructor(options: ToolPinsOptions) {
    this.#options = options;
    this.#log = options.logger.child({ module: 'gateway' });
  }

  /** Subscribe to "a tool became callable or blocked" (the tools an agent sees may have changed). */
  onChange(listener: () => void): () => void {
    this.#changed.add(listener);
    return () => this.#changed.delete(listener);
  }

  /**
   * Wired to UpstreamManager.onCatalogue: pins every definition before it is
   * used. A changed one is blocked, audited and alerted here, once.
   */
  handleCatalogue(server: string, catalogue: Catalogue): void {
    const observations = this.#options.store.observe(server, catalogue.tools);
    const state = new Map<string, PinState>();
    let changed = false;
    const previous = this.#state.get(server);
    for (const observation of observations) {
      state.set(observation.tool, { hash: observation.hash, approved: observation.state !== 'blocked' });
      const before = previous?.get(observation.tool);
      if (!before || before.hash !== observation.hash || before.approved !== (observation.state !== 'blocked'))
        changed = true;
      if (!observation.changed) continue;
      this.#blocked(server, observation);
    }
    if (previous && previous.size !== state.size) changed = true;
    this.#state.set(server, state);
    if (changed && previous) this.#notify();
  }

  /** Whether the tool's current definition may be called (an approval from the CLI is seen at once). */
  approved(server: string, tool: string): boolean {
    const pin = this.#state.get(server)?.get(tool);
    if (!pin) return false;
    if (pin.approved) return true;
    // Approvals are made from the CLI, in another process: look again.
    if (this.#options.store.isApproved(server, tool, pin.hash)) {
      pin.approved = true;
      this.#notify();
      return true;
    }
    return false;
  }

  /** The upstream may have restarted since the decision: the definition about to be called must still be the approved one. */
  verifyLive(server: string, tool: string, name: string, live: Catalogue | undefined): void {
    const definition = live?.byName.get(tool);
    if (!definition)
      throw new WardenError('UPSTREAM_PROTOCOL', `upstream "${server}" no longer offers ${tool} after restarting`);
    const pin = this.#state.get(server)?.get(tool);
    if (!pin || pin.hash !== definition.pinHash || !this.approved(server, tool)) {
      throw new WardenError(
        'TOOL_PIN_MISMATCH',
        `${name} is blocked: its definition changed since it was approved (\`warden tools approve ${server} ${tool}\`)`,
      );
    }
  }

  #blocked(server: string, observation: PinObservation): void {
    const { tool, previousHash, hash } = observation;
    const qualified = qualifiedToolName(server, tool);
    const text = `Tool ${qualified} changed its definition since it was approved; it is blocked for every agent until an operator runs \`warden tools approve ${server} ${tool}\``;
    this.#log.warn({ server, tool, previousHash, hash }, 'tool definition changed: blocked');
    void this.#options.audit
      .append({
        event: 'pin.changed',
        server,
        tool,
        decision: 'blocked',
        reason: text,
        detail: { previousHash, hash },
      })
      .catch((err) => this.#log.error({ err: describeError(err), server, tool }, 'audit write failed for pin.changed'));
    this.#alert({ kind: 'pin_changed', severity: 'critical', text, detail: { server, tool, previousHash, hash } });
  }

  #notify(): void {
    for (const listener of this.#changed) {
      try {
        listener();
      } catch (err) {
        this.#log.warn({ err: describeError(err) }, 'pin-change listener failed');
      }
    }
  }

  #alert(alert: Alert): void {
    try {
      this.#options.alerts.alert(alert);
    } catch (err) {
      this.#log.error({ err: describeError(err), kind: alert.kind }, 'alert sink threw');
    }
  }
}
