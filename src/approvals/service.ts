import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { redact } from '../audit/index.ts';
import type { AuditDecision, AuditEntry, AuditSink } from '../audit/types.ts';
import { systemClock, type Clock } from '../clock.ts';
import { describeError, isWardenError, WardenError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';
import type { Policy } from '../policy/types.ts';
import type { Db } from '../store/db.ts';
import { formatDuration as formatPolicyDuration } from '../policy/duration.ts';
import { argsHash } from './canonical.ts';
import { GRANT_APPROVAL_PREFIX, GrantService } from './grants.ts';
import { ApprovalStore, HeldCallStore, type Transition } from './store.ts';
import type {
  ApprovalGate,
  ApprovalNotifier,
  ApprovalOutcome,
  ApprovalRecord,
  ApprovalRequestInput,
  ApprovalResultReport,
  ApprovalStatus,
  CollectedHow,
  DecideResult,
  HeldCall,
  HeldCallEnding,
} from './types.ts';

export const DEFAULT_APPROVAL_TIMEOUT_MS = 15 * 60_000;

/** approval.collected's reason, by how the agent collected. */
const COLLECTED_REASONS: { readonly [How in CollectedHow]: string } = {
  await: 'collected with warden__await_approval',
  repeat: 'collected by repeating the same call',
  task: "collected with its task's tasks/result",
};
export const DEFAULT_POLL_MS = 500;
export const DEFAULT_WAITING_NOTIFY_MS = 5_000;
/**
 * How long past its deadline a waiter still waits for the audit row of an
 * approval another process already made (its append may be in flight).
 * After that the approval is failed: nobody recorded it, so it does not count.
 */
export const UNAUDITED_APPROVAL_GRACE_MS = 30_000;

/** A fixed policy, or anything with `current()` (PolicyStore) so reloads apply to the next click. */
export type ApprovalPolicySource = PolicySource;

export interface ApprovalServiceOptions {
  db: Db;
  audit: AuditSink;
  /** Shows cards to people. Without one, approvals can still be decided through `decide()` (e.g. the CLI). */
  notifier?: ApprovalNotifier | undefined;
  clock?: Clock | undefined;
  logger?: Logger | undefined;
  /**
   * The live policy: a click is authorised against the agent's *current* owner
   * and approvers, so removing someone takes effect at once. Without it, the
   * snapshot stored with the request is used.
   */
  policy?: ApprovalPolicySource | undefined;
  /** How often waiting requests look for decisions made by other processes. */
  pollMs?: number | undefined;
  /** How often `onWaiting` is called while a request waits. */
  waitingNotifyMs?: number | undefined;
  /** This process's id in the rows it owns (the replica id when replicas are tracked). Default: host:pid:random. */
  processId?: string | undefined;
  /**
   * Whether the process a row names may still be running, across hosts (the
   * replicas' leases, control/replicas.ts); undefined: not known there, so
   * the same-host pid check decides.
   */
  ownerAlive?: ((processId: string) => boolean | undefined) | undefined;
  /**
   * On PostgreSQL, remember which agents have no held calls, so a gateway's
   * every call does not ask (HeldCallStore). `warden serve` sets it; close()
   * ends the LISTEN connection it takes.
   */
  cacheHeldCalls?: boolean | undefined;
}

interface Waiter {
  id: string;
  signal: AbortSignal;
  onWaiting?: ((elapsedMs: number) => void) | undefined;
  /**
   * Its agent was told to check back and the held call is stored: when this
   * process shuts down the approval stays pending, for the next process to take over.
   */
  deferred: boolean;
  startedAt: number;
  lastNotified: number;
  timer: NodeJS.Timeout;
  /** The deadline passed while an approval's audit row was still missing; one grace period was granted. */
  graceGiven: boolean;
  onAbort: () => void;
  resolve: (outcome: ApprovalOutcome) => void;
}

/**
 * Holds consequential calls until a human decides, the request times out, or
 * it is cancelled. Transport-free: Slack (or anything else) implements
 * `ApprovalNotifier` and calls `decide()`.
 *
 * Every way out of 'pending' goes through one compare-and-set on
 * `approvals.status`, so concurrent clicks, timers, halts and other processes
 * sharing the database produce exactly one decision. Whoever wins the
 * compare-and-set audits the decision and redraws the card.
 */
export class ApprovalService implements ApprovalGate {
  /** Identifies this service's rows, so a restarted Warden can tell orphans from live requests. */
  readonly processId: string;
  /** Deferred held calls: their exact arguments until they end, their endings until collected. */
  readonly heldCalls: HeldCallStore;
  readonly #store: ApprovalStore;
  readonly #audit: AuditSink;
  readonly #notifier: ApprovalNotifier | undefined;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #policy: (() => Policy) | undefined;
  readonly #pollMs: number;
  readonly #waitingNotifyMs: number;
  readonly #waiters = new Map<string, Waiter>();
  /**
   * Decisions this process made whose `approval.decided` append is still in
   * flight, with the status being audited: wake() does not resolve them yet,
   * so no caller acts on a decision before the trail holds it.
   */
  readonly #auditing = new Map<string, Exclude<ApprovalStatus, 'pending'>>();
  #poller: NodeJS.Timeout | undefined;
  readonly #ownerAlive: ((processId: string) => boolean | undefined) | undefined;
  /** Time-boxed grants (`grants:` in the policy), owned here with the approvals they come from. */
  readonly grants: GrantService;

  constructor(opts: ApprovalServiceOptions) {
    this.#store = new ApprovalStore(opts.db);
    this.#audit = opts.audit;
    this.#notifier = opts.notifier;
    this.#clock = opts.clock ?? systemClock;
    this.#logger = opts.logger ?? silentLogger();
    this.#policy = opts.policy === undefined ? undefined : policyGetter(opts.policy);
    this.#pollMs = opts.pollMs ?? DEFAULT_POLL_MS;
    this.#waitingNotifyMs = opts.waitingNotifyMs ?? DEFAULT_WAITING_NOTIFY_MS;
    this.processId = opts.processId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.#ownerAlive = opts.ownerAlive;
    this.heldCalls = new HeldCallStore(opts.db, this.#clock, this.processId, { cache: opts.cacheHeldCalls });
    this.grants = new GrantService(opts.db, { audit: opts.audit, clock: this.#clock, logger: this.#logger });
  }

  /**
   * A call a grant in force covers runs without a card: approved by the
   * grant's approver, for exactly these arguments, named in the trail
   * (`grant.used`). If that row cannot be written the call is held as usual.
   */
  async #underGrant(input: ApprovalRequestInput): Promise<ApprovalOutcome | undefined> {
    try {
      const grant = await this.grants.covering(input.agent.name, input.server, input.tool);
      if (grant === undefined) return undefined;
      await this.grants.used(grant, input.callId);
      return {
        approvalId: `${GRANT_APPROVAL_PREFIX}${grant.id}`,
        status: 'approved',
        approver: grant.grantedBy,
        at: this.#clock.now(),
        argsHash: argsHash(input.args),
      };
    } catch (err) {
      this.#logger.error({ err: describeError(err), callId: input.callId }, 'grant check failed; holding the call');
      return undefined;
    }
  }

  /** The stored state of an approval (what cards are drawn from). */
  get(approvalId: string): ApprovalRecord | undefined {
    return this.#store.get(approvalId);
  }

  pending(filter: { agent?: string | undefined } = {}): ApprovalRecord[] {
    return this.#store.pending(filter);
  }

  /** Pending approvals per agent, for status views (see ApprovalStore.pendingCountsByAgent). */
  pendingCountsByAgent(only?: string): Map<string, number> {
    return this.#store.pendingCountsByAgent(only);
  }

  /** The newest approval of a held call, for start-up recovery (see ApprovalStore.latestForCall). */
  latestForCall(callId: string): ReturnType<ApprovalStore['latestForCall']> {
    return this.#store.latestForCall(callId);
  }

  async request(input: ApprovalRequestInput): Promise<ApprovalOutcome> {
    // The request's time is when it arrives, not after the grant lookup below has yielded.
    const now = this.#clock.now();
    const covered = input.grantable === false ? undefined : await this.#underGrant(input);
    if (covered !== undefined) return covered;
    const agent = input.agent;
    const timeoutMs = agent.approvalTimeoutMs > 0 ? agent.approvalTimeoutMs : DEFAULT_APPROVAL_TIMEOUT_MS;
    const id = `apr_${randomUUID()}`;
    const hash = argsHash(input.args);
    const approvers = unique([agent.owner, ...agent.approvers]);
    this.#store.insert({
      id,
      callId: input.callId,
      agent: agent.name,
      owner: agent.owner,
      server: input.server,
      tool: input.tool,
      displayArgs: redact(input.args),
      argsHash: hash,
      rule: input.rule,
      consequence: input.consequence,
      requestReason: input.reason,
      approvers,
      requestedAt: now,
      expiresAt: now + timeoutMs,
      channel: agent.channel,
      processId: this.processId,
      grantable: input.grantable !== false,
      grantMaxMs: agent.grantMaxMs,
    });
    // Counted at once, with this request in: concurrent requests each see those inserted before them.
    const waiting = this.#store.pending({ agent: agent.name }).length;

    try {
      await this.#audit.append({
        event: 'approval.requested',
        callId: input.callId,
        agent: agent.name,
        owner: agent.owner,
        server: input.server,
        tool: input.tool,
        args: input.args,
        decision: 'pending',
        reason: input.reason,
        detail: {
          approvalId: id,
          rule: input.rule,
          consequence: input.consequence,
          argsHash: hash,
          expiresAt: now + timeoutMs,
          approvers,
        },
      });
    } catch (err) {
      // Nobody may approve a request the audit trail does not know about.
      this.#logger.error(
        { err: describeError(err), approvalId: id },
        'approval.requested could not be audited; failing closed',
      );
      this.#store.transition(id, {
        status: 'failed',
        at: this.#clock.now(),
        reason: `audit write failed: ${describeError(err)}`,
      });
      return this.#outcomeOf(this.#store.get(id)!);
    }
    input.onRequested?.({ approvalId: id, expiresAt: now + timeoutMs, channel: agent.channel });

    if (waiting > agent.maxPending) {
      await this.#settle(id, {
        status: 'failed',
        at: this.#clock.now(),
        reason: `${agent.name} already has ${agent.maxPending} calls waiting for approval (max_pending: ${agent.maxPending}); decide or wait for those first`,
      });
      return this.#outcomeOf(this.#store.get(id)!);
    }

    const hidden = countRedacted(this.#store.get(id)?.args);
    if (hidden > 0 && agent.onRedacted === 'refuse') {
      // The human would approve content they cannot see; this agent's policy says not to ask.
      await this.#settle(id, {
        status: 'failed',
        at: this.#clock.now(),
        reason: `${hidden} ${hidden === 1 ? 'value' : 'values'} in the arguments would be hidden from the approver (redacted secrets) and ${agent.name} has on_redacted: refuse`,
      });
      return this.#outcomeOf(this.#store.get(id)!);
    }

    const outcome = new Promise<ApprovalOutcome>((resolve) => {
      const onAbort = () => void this.#onAbort(id, input.signal.reason);
      const timer = this.#clock.setTimeout(
        () => void this.#expire(id),
        Math.max(0, now + timeoutMs - this.#clock.now()),
      );
      this.#waiters.set(id, {
        id,
        signal: input.signal,
        onWaiting: input.onWaiting,
        deferred: false,
        startedAt: now,
        lastNotified: now,
        timer,
        graceGiven: false,
        onAbort,
        resolve,
      });
      input.signal.addEventListener('abort', onAbort, { once: true });
      this.#ensurePolling();
    });

    if (input.signal.aborted) {
      await this.#onAbort(id, input.signal.reason);
    } else {
      await this.#postCard(id);
    }
    return outcome;
  }

  /**
   * A person's decision. Authorisation first (owner or listed approver, else
   * refused and audited), then one compare-and-set: of any number of
   * concurrent calls, exactly one returns ok.
   */
  async decide(
    approvalId: string,
    userId: string,
    decision: 'approve' | 'reject',
    reason?: string,
    options: { forMs?: number | undefined } = {},
  ): Promise<DecideResult> {
    const checked = await this.precheck(approvalId, userId, decision);
    if (!checked.ok) return checked;
    // A grant that could not be given must not leave a one-off approval behind: check before deciding.
    if (options.forMs !== undefined) this.#grantableOrThrow(checked.record!, options.forMs);
    const note = reason?.trim() ? reason.trim() : undefined;
    const status = decision === 'approve' ? 'approved' : 'rejected';
    const won = await this.#settle(approvalId, { status, at: this.#clock.now(), by: userId, reason: note });
    let record = this.#store.get(approvalId)!;
    // Lost to the deadline (the compare-and-set refuses expired rows): record the expiry the timer has not yet.
    if (!won && (await this.#expireIfDue(record))) record = this.#store.get(approvalId)!;
    if (!won) return { ok: false, code: 'not_pending', message: statusSentence(record), record };
    // Won, but the decision did not stand (its audit row could not be written): tell the clicker.
    if (record.status !== status) return { ok: false, code: 'not_pending', message: statusSentence(record), record };
    if (options.forMs !== undefined && status === 'approved') {
      const grant = await this.grants.create(this.#policy!(), {
        agent: record.agent,
        server: record.server,
        tool: record.tool,
        by: userId,
        forMs: options.forMs,
        approvalId,
      });
      return { ok: true, record, grant };
    }
    return { ok: true, record };
  }

  #grantableOrThrow(record: ApprovalRecord, forMs: number): void {
    if (record.grantable === false) {
      throw new WardenError('INVALID_INPUT', `for: ${record.tool} is held by a rule with grant: never; approve once`, {
        details: { field: 'for' },
      });
    }
    const max = this.#policy?.().agents[record.agent]?.grantMaxMs;
    if (max === undefined) {
      throw new WardenError('INVALID_INPUT', `for: agent ${record.agent} has no grants in the policy; approve once`, {
        details: { field: 'for' },
      });
    }
    if (!(forMs > 0) || forMs > max) {
      throw new WardenError(
        'INVALID_INPUT',
        `for: a grant for ${record.agent} lasts at most ${formatPolicyDuration(max)} (grants.max), got ${formatPolicyDuration(forMs)}`,
        { details: { field: 'for' } },
      );
    }
  }

  /**
   * The checks `decide` makes, without deciding: lets an edge refuse (and
   * audit) before asking the user for more, e.g. before opening a reject modal.
   */
  async precheck(approvalId: string, userId: string, decision: 'approve' | 'reject'): Promise<DecideResult> {
    const record = this.#store.get(approvalId);
    if (!record) return { ok: false, code: 'not_found', message: `Approval ${approvalId} does not exist.` };
    const why = this.#refusal(record, userId);
    if (why !== null) {
      await this.#auditSafely({
        event: 'approval.refused',
        ...heldCallFields(record),
        decision: decision === 'approve' ? 'approve' : 'reject',
        approver: userId,
        reason: why,
        detail: { approvalId, attempted: decision, status: record.status },
      });
      return { ok: false, code: 'forbidden', message: `You can't decide this call: ${why}.`, record };
    }
    if (await this.#expireIfDue(record)) {
      const expired = this.#store.get(approvalId)!;
      return { ok: false, code: 'not_pending', message: statusSentence(expired), record: expired };
    }
    if (record.status !== 'pending') return { ok: false, code: 'not_pending', message: statusSentence(record), record };
    return { ok: true, record };
  }

  /** Ends the grants of a halted agent (undefined: every agent). Returns how many it ended. */
  async endGrantsOnHalt(agent: string | undefined, by: string): Promise<number> {
    return (await this.grants.halted(agent, by)).length;
  }

  /** Cancels pending approvals (all, or one agent's), e.g. when agents are halted. Returns how many it cancelled. */
  async cancelPending(filter: { agent?: string | undefined }, reason: string): Promise<number> {
    let n = 0;
    for (const record of this.#store.pending(filter)) {
      if (await this.#settle(record.id, { status: 'cancelled', at: this.#clock.now(), reason })) n++;
    }
    return n;
  }

  /**
   * At start-up: pending rows nobody is waiting for any more (their process
   * is gone) are marked abandoned and their cards redrawn, so nobody approves
   * a call whose agent already gave up. Returns how many it abandoned.
   *
   * A row of a process on another host cannot be checked from here; until it
   * expires it belongs to that process (which decides or expires it itself),
   * so only an expired one is taken for orphaned.
   */
  async recover(reason = 'Warden restarted'): Promise<number> {
    let n = 0;
    // A deferred call's agent is not waiting on the request: it checks back, so the approval goes on (adoptHeldCalls).
    const deferred = new Set(this.heldCalls.waiting().map((call) => call.approvalId));
    for (const record of this.#store.pending()) {
      if (deferred.has(record.id)) continue;
      if (this.#waiters.has(record.id) || record.processId === this.processId) continue;
      if (record.expiresAt > this.#clock.now() && this.#ownerMayBeWaiting(record.processId)) continue;
      if (await this.#settle(record.id, { status: 'abandoned', at: this.#clock.now(), reason })) n++;
    }
    return n;
  }

  async reportOutcome(approvalId: string, outcome: ApprovalResultReport): Promise<void> {
    // A call under a grant has no card of its own; its rows name the grant.
    if (approvalId.startsWith(GRANT_APPROVAL_PREFIX)) return;
    const record = this.#store.get(approvalId);
    if (!record) {
      this.#logger.warn({ approvalId }, 'reportOutcome for an unknown approval');
      return;
    }
    this.#store.setOutcome(approvalId, outcome);
    if (!this.#notifier || !record.messageTs) return;
    try {
      await this.#notifier.postOutcome({ ...record, outcome }, outcome);
    } catch (err) {
      // The call already ran; a missing thread reply must not turn into a failure for the agent.
      this.#logger.warn({ approvalId, err: describeError(err) }, 'could not post the outcome in the card thread');
    }
  }

  async deferred(
    approvalId: string,
    info: { agent: string; callId: string; taskId?: string | undefined },
  ): Promise<void> {
    const waiter = this.#waiters.get(approvalId);
    if (waiter) waiter.deferred = true;
    const record = this.#store.get(approvalId);
    await this.#auditSafely({
      event: 'approval.deferred',
      callId: info.callId,
      agent: info.agent,
      server: record?.server,
      tool: record?.tool,
      decision: 'pending',
      reason:
        info.taskId === undefined
          ? 'the agent was answered "not run yet" and told to check back; the approval goes on'
          : `the agent was answered with task ${info.taskId} and polls it; the approval goes on`,
      detail: {
        approvalId,
        expiresAt: record?.expiresAt,
        ...(info.taskId === undefined ? {} : { taskId: info.taskId }),
      },
    });
    if (!this.#notifier || !record?.messageTs) return;
    try {
      await this.#notifier.postNote(
        record,
        info.taskId === undefined
          ? 'The agent was told the call has not run yet and to check back. A decision here still counts: on approval the call runs at once, and the agent collects the result.'
          : 'The agent polls this call as an MCP task. A decision here still counts, across a Warden restart too: on approval the call runs at once, and the task ends with the result.',
      );
    } catch (err) {
      // The card itself still stands and still decides; only the note is missing.
      this.#logger.warn({ approvalId, err: describeError(err) }, 'could not post the deferral note in the card thread');
    }
  }

  async collected(approvalId: string, info: { agent: string; callId: string; how: CollectedHow }): Promise<void> {
    const record = this.#store.get(approvalId);
    await this.#auditSafely({
      event: 'approval.collected',
      callId: info.callId,
      agent: info.agent,
      server: record?.server,
      tool: record?.tool,
      decision: record?.status ?? 'failed',
      reason: COLLECTED_REASONS[info.how],
      detail: { approvalId, how: info.how },
    });
  }

  /**
   * At start-up, before serving: takes over the deferred held calls of a
   * process that is gone (the same test as `recover()`), each claimed by one
   * compare-and-set so two starting processes do not both run it. The caller
   * waits for each decision with `awaitDecision()` and runs the call on approval.
   *
   * A held call whose approval is no longer pending and that has no ending was
   * approved and may have run when its process stopped: it is ended as unknown
   * and its arguments erased, never run a second time.
   */
  async adoptHeldCalls(): Promise<HeldCall[]> {
    this.heldCalls.sweep();
    const adopted: HeldCall[] = [];
    const now = this.#clock.now();
    for (const call of this.heldCalls.waiting()) {
      if (this.#waiters.has(call.approvalId)) continue;
      const record = this.#store.get(call.approvalId);
      // The process that asked for it is still here (this one, or another that is alive): it is its to run.
      const ownerHere = record?.processId === this.processId || this.#ownerMayBeWaiting(record?.processId);
      if (record?.status === 'pending') {
        if (record.processId === this.processId || (record.expiresAt > now && ownerHere)) continue;
        if (this.#store.claim(record.id, record.processId, this.processId)) adopted.push(call);
        continue;
      }
      if (record?.status === 'approved' && call.runner === undefined) {
        // Approved while no Warden could run it (the CLI, with Warden down), or just before its process stopped.
        // Not run yet; whoever wins the run claim (HeldCallBook.claimRun) runs it.
        if (!ownerHere) adopted.push(call);
        continue;
      }
      if (record?.status === 'approved') {
        if (call.runner === this.processId || this.#ownerMayBeWaiting(call.runner)) continue;
        this.heldCalls.end(
          call.approvalId,
          heldRefusal(
            `${call.name} was approved, but the Warden running it stopped before it finished: whether it ran is unknown, so Warden will not run it again. Check before repeating it.`,
          ),
        );
        continue;
      }
      if (ownerHere) continue;
      this.heldCalls.end(
        call.approvalId,
        heldRefusal(
          `${call.name} was not run: it needs a human's approval and the request was ${record ? outcomeReason(record) : 'lost'}`,
        ),
      );
    }
    return adopted;
  }

  /**
   * Waits for the decision on a held call this process adopted, with the
   * expiry re-armed; resolves like `request()` does. An abort (a halt) cancels it.
   */
  awaitDecision(approvalId: string, signal: AbortSignal): Promise<ApprovalOutcome> {
    const record = this.#store.get(approvalId);
    if (!record) {
      return Promise.resolve({
        approvalId,
        status: 'failed',
        reason: 'approval failed: the approval is gone',
        at: this.#clock.now(),
      });
    }
    if (record.status !== 'pending' && this.#isFinal(record)) return Promise.resolve(this.#outcomeOf(record));
    const now = this.#clock.now();
    const outcome = new Promise<ApprovalOutcome>((resolve) => {
      const onAbort = () => void this.#onAbort(approvalId, signal.reason);
      const timer = this.#clock.setTimeout(() => void this.#expire(approvalId), Math.max(0, record.expiresAt - now));
      this.#waiters.set(approvalId, {
        id: approvalId,
        signal,
        deferred: true,
        startedAt: now,
        lastNotified: now,
        timer,
        graceGiven: false,
        onAbort,
        resolve,
      });
      signal.addEventListener('abort', onAbort, { once: true });
      this.#ensurePolling();
    });
    if (signal.aborted) void this.#onAbort(approvalId, signal.reason);
    // Decided between the read and the waiter (another process): resolve now rather than at the next poll.
    else this.#wake(approvalId);
    return outcome;
  }

  /** The replicas' answer when they know the process, else the same-host pid check. */
  #ownerMayBeWaiting(processId: string | undefined): boolean {
    if (!processId) return false;
    return this.#ownerAlive?.(processId) ?? ownerMayBeWaiting(processId);
  }

  /** Stops polling and abandons this process's waiting requests (their callers get an answer). */
  async close(): Promise<void> {
    for (const waiter of [...this.#waiters.values()]) {
      // Stays pending: the next Warden takes it over and still runs it on approval. Its caller was detached already.
      if (waiter.deferred) this.#drop(waiter);
    }
    for (const id of [...this.#waiters.keys()]) {
      await this.#settle(id, { status: 'abandoned', at: this.#clock.now(), reason: 'Warden shut down' });
    }
    // Still waiting: approved elsewhere but not yet on the audit trail. The call must not run unrecorded.
    for (const waiter of [...this.#waiters.values()]) {
      this.#release(waiter, {
        approvalId: waiter.id,
        status: 'abandoned',
        reason: 'abandoned: Warden shut down before the approval was recorded in the audit trail',
        at: this.#clock.now(),
      });
    }
    this.#stopPolling();
    this.heldCalls.close();
  }

  // ---- internals ----

  async #postCard(id: string): Promise<void> {
    if (!this.#notifier) {
      this.#logger.warn(
        { approvalId: id },
        'no approval notifier configured: the request waits for a decision via the CLI',
      );
      return;
    }
    try {
      const { channel, ts } = await this.#notifier.postCard(this.#store.get(id)!);
      this.#store.setMessage(id, channel, ts);
    } catch (err) {
      const reason = `the approval card could not be posted: ${describeError(err)}`;
      this.#logger.error({ approvalId: id, err: describeError(err) }, 'approval card not posted; failing closed');
      await this.#settle(id, { status: 'failed', at: this.#clock.now(), reason });
      return;
    }
    // Decided while the card was being posted (another process, a halt): draw the result now.
    let record = this.#store.get(id)!;
    if (record.status !== 'pending') {
      await this.#redraw(record);
      return;
    }
    if (!this.#notifier.postDetails) return;
    try {
      await this.#notifier.postDetails(record);
    } catch (err) {
      // The card says the full arguments are in its thread; without them nobody can judge the call.
      const reason = `the full arguments could not be posted in the card's thread: ${describeError(err)}`;
      this.#logger.error({ approvalId: id, err: describeError(err) }, 'approval details not posted; failing closed');
      await this.#settle(id, { status: 'failed', at: this.#clock.now(), reason });
      return;
    }
    record = this.#store.get(id)!;
    if (record.status !== 'pending') await this.#redraw(record);
  }

  /**
   * The compare-and-set and everything owed by whoever wins it. The decision
   * is released to waiters only after its audit row is committed: until then
   * its id is in `auditing` (this process) and `decision_seq` is NULL (every
   * process), so an approval whose append then fails is failed before anyone
   * acts on it.
   */
  async #settle(id: string, t: Transition): Promise<boolean> {
    if (!this.#store.transition(id, t)) {
      this.#wake(id);
      return false;
    }
    this.#auditing.set(id, t.status);
    const record = this.#store.get(id)!;
    try {
      const { seq } = await this.#audit.append(
        decidedEntry(record, { decision: t.status, approver: t.by, reason: t.reason }),
      );
      if (!this.#store.setDecisionSeq(id, t.status, seq)) {
        // Failed meanwhile (its audit row was too slow past the deadline): that stands, the call does not run.
        this.#logger.warn(
          { approvalId: id, seq, status: this.#store.status(id) },
          'decision audited after it was failed; the failure stands',
        );
      }
    } catch (err) {
      this.#logger.error({ approvalId: id, err: describeError(err) }, 'approval.decided could not be audited');
      // An approval the trail does not record is not an approval: fail closed.
      if (t.status === 'approved') await this.#failUnaudited(id, `audit write failed: ${describeError(err)}`);
    } finally {
      this.#auditing.delete(id);
    }
    this.#wake(id);
    await this.#redraw(this.#store.get(id)!);
    return true;
  }

  /** approved -> failed while its audit row is missing; audits the failure (best effort), wakes and redraws. */
  async #failUnaudited(id: string, reason: string): Promise<boolean> {
    if (!this.#store.failUnaudited(id, reason)) return false;
    const record = this.#store.get(id)!;
    await this.#auditSafely(
      decidedEntry(record, {
        decision: 'failed',
        approver: record.decidedBy,
        reason,
        detail: { failedApproval: true },
      }),
    );
    this.#wake(id);
    await this.#redraw(record);
    return true;
  }

  /** Resolves the waiter once the stored decision may be acted on. True when it resolved. */
  #wake(id: string): boolean {
    const waiter = this.#waiters.get(id);
    if (!waiter) return false;
    const record = this.#store.get(id);
    if (!record || !this.#isFinal(record)) return false;
    this.#release(waiter, this.#outcomeOf(record));
    return true;
  }

  #release(waiter: Waiter, outcome: ApprovalOutcome): void {
    this.#drop(waiter);
    waiter.resolve(outcome);
  }

  /** Stops waiting, without an answer. */
  #drop(waiter: Waiter): void {
    this.#waiters.delete(waiter.id);
    this.#clock.clearTimeout(waiter.timer);
    waiter.signal.removeEventListener('abort', waiter.onAbort);
    if (this.#waiters.size === 0) this.#stopPolling();
  }

  /** Whether a waiter may act on this stored state. */
  #isFinal(record: ApprovalRecord): boolean {
    if (record.status === 'pending') return false;
    // This process is still writing this very decision's audit row.
    if (this.#auditing.get(record.id) === record.status) return false;
    // Whoever decided (this process or another), an approval counts once the trail holds it.
    if (record.status === 'approved') return record.decisionSeq !== undefined;
    return true;
  }

  async #redraw(record: ApprovalRecord): Promise<void> {
    if (!this.#notifier || !record.messageTs) return;
    try {
      await this.#notifier.updateCard(record);
    } catch (err) {
      // The decision stands; the card is only a view of it.
      this.#logger.warn({ approvalId: record.id, err: describeError(err) }, 'could not redraw the approval card');
    }
  }

  async #expire(id: string): Promise<void> {
    if (await this.#settle(id, { status: 'expired', at: this.#clock.now(), reason: 'no decision in time' })) return;
    const record = this.#store.get(id);
    const waiter = this.#waiters.get(id);
    if (!record || !waiter || record.status !== 'approved' || record.decisionSeq !== undefined) return;
    // Approved before the deadline, but its audit row is not there yet: wait a little for it, then fail it.
    if (!waiter.graceGiven) {
      waiter.graceGiven = true;
      waiter.timer = this.#clock.setTimeout(() => void this.#expire(id), UNAUDITED_APPROVAL_GRACE_MS);
      return;
    }
    this.#logger.error({ approvalId: id }, 'approval never reached the audit trail; failing it');
    await this.#failUnaudited(
      id,
      'the approval was not recorded in the audit trail in time (the deciding process stopped or its audit write hung)',
    );
  }

  /** Records the expiry of a pending request past its deadline whose timer has not fired (or lives in a dead process). */
  async #expireIfDue(record: ApprovalRecord): Promise<boolean> {
    if (record.status !== 'pending' || record.expiresAt > this.#clock.now()) return false;
    await this.#settle(record.id, { status: 'expired', at: this.#clock.now(), reason: 'no decision in time' });
    return this.#store.status(record.id) === 'expired';
  }

  async #onAbort(id: string, reason: unknown): Promise<void> {
    const t = abortTransition(reason);
    await this.#settle(id, { ...t, at: this.#clock.now() });
  }

  #ensurePolling(): void {
    if (this.#poller !== undefined) return;
    this.#poller = this.#clock.setInterval(() => this.#poll(), this.#pollMs);
    this.#poller.unref?.();
  }

  #stopPolling(): void {
    if (this.#poller === undefined) return;
    this.#clock.clearInterval(this.#poller);
    this.#poller = undefined;
  }

  /** Sees decisions made by other processes sharing the database, and keeps the edge informed. */
  #poll(): void {
    const now = this.#clock.now();
    for (const waiter of [...this.#waiters.values()]) {
      if (this.#store.status(waiter.id) !== 'pending' && this.#wake(waiter.id)) {
        // Decided elsewhere (the CLI, a process without Slack): this process posted the card, so it redraws it.
        const record = this.#store.get(waiter.id);
        if (record) void this.#redraw(record);
        continue;
      }
      if (waiter.onWaiting && now - waiter.lastNotified >= this.#waitingNotifyMs) {
        waiter.lastNotified = now;
        try {
          waiter.onWaiting(now - waiter.startedAt);
        } catch (err) {
          this.#logger.warn({ approvalId: waiter.id, err: describeError(err) }, 'onWaiting threw');
        }
      }
    }
  }

  /** Null when the user may decide; otherwise why not. */
  #refusal(record: ApprovalRecord, userId: string): string | null {
    let allowed: string[];
    if (this.#policy) {
      const agent = this.#policy().agents[record.agent];
      if (!agent) return `agent ${record.agent} is no longer in the policy`;
      allowed = unique([agent.owner, ...agent.approvers]);
    } else {
      allowed = record.approvers;
    }
    if (allowed.includes(userId)) return null;
    return `<@${userId}> is not the owner or an approver of ${record.agent}`;
  }

  #outcomeOf(record: ApprovalRecord): ApprovalOutcome {
    const at = record.decidedAt ?? this.#clock.now();
    if (record.status === 'approved' && record.decisionSeq !== undefined) {
      // The hash is the stored one, bound when the call was held: the gateway compares it with what it forwards.
      return {
        approvalId: record.id,
        status: 'approved',
        approver: record.decidedBy ?? 'unknown',
        at,
        argsHash: record.argsHash,
      };
    }
    if (record.status === 'approved') {
      return {
        approvalId: record.id,
        status: 'failed',
        approver: record.decidedBy,
        reason: 'failed: the approval is not recorded in the audit trail',
        at,
      };
    }
    const status = record.status === 'pending' ? 'failed' : record.status;
    return { approvalId: record.id, status, approver: record.decidedBy, reason: outcomeReason(record), at };
  }

  async #auditSafely(entry: AuditEntry): Promise<void> {
    try {
      await this.#audit.append(entry);
    } catch (err) {
      this.#logger.error({ err: describeError(err), event: entry.event }, 'audit write failed');
    }
  }
}

/** A held call's ending that says why it did not run (as the gateway would have answered). */
function heldRefusal(text: string): HeldCallEnding {
  return { kind: 'result', result: { content: [{ type: 'text', text: `Refused by Warden: ${text}` }], isError: true } };
}

/** How many values the stored (redacted) arguments hide from people. */
function countRedacted(displayArgs: unknown): number {
  return (JSON.stringify(displayArgs ?? null).match(/\[redacted\]/g) ?? []).length;
}

/** The audit fields naming the held call an approval event is about. */
function heldCallFields(r: ApprovalRecord): Pick<AuditEntry, 'callId' | 'agent' | 'owner' | 'server' | 'tool'> {
  return { callId: r.callId, agent: r.agent, owner: r.owner, server: r.server, tool: r.tool };
}

/** An `approval.decided` entry; its detail always binds the approval id and the exact arguments' hash. */
function decidedEntry(
  r: ApprovalRecord,
  d: {
    decision: AuditDecision;
    approver: string | undefined;
    reason: string | undefined;
    detail?: Record<string, unknown>;
  },
): AuditEntry {
  return {
    event: 'approval.decided',
    ...heldCallFields(r),
    decision: d.decision,
    approver: d.approver,
    reason: d.reason,
    detail: { approvalId: r.id, argsHash: r.argsHash, ...d.detail },
  };
}

function unique(ids: Array<string | undefined>): string[] {
  return [...new Set(ids.filter((x): x is string => typeof x === 'string' && x.length > 0))];
}

/**
 * Halts abort with a WardenError('HALTED') (or a HaltState), and an agent's
 * own cancel of a task with a WardenError('CALL_CANCELLED'): the call is
 * cancelled. Any other abort means the agent went away: abandoned.
 */
function abortTransition(reason: unknown): Pick<Transition, 'status' | 'reason'> {
  if (isWardenError(reason, 'HALTED')) return { status: 'cancelled', reason: reason.message };
  if (reason && typeof reason === 'object' && 'scope' in reason && 'reason' in reason) {
    const r = reason as { scope: unknown; agent?: unknown; reason: unknown };
    const who = r.scope === 'org' ? 'all agents' : `agent ${String(r.agent)}`;
    return { status: 'cancelled', reason: `agents halted (${who}: ${String(r.reason)})` };
  }
  // The agent withdrew the call itself (tasks/cancel): nobody should still decide it.
  if (isWardenError(reason, 'CALL_CANCELLED')) return { status: 'cancelled', reason: reason.message };
  // The gateway says how the agent went away (connection dropped, session ended, shutdown).
  if (isWardenError(reason, 'CALL_ABANDONED')) return { status: 'abandoned', reason: reason.message };
  return { status: 'abandoned', reason: 'the agent went away before a decision' };
}

/** The abort reason the gateway should use when a halt cancels a waiting call. */
export function haltAbortReason(detail?: string): WardenError {
  return new WardenError('HALTED', detail ? `agents halted: ${detail}` : 'agents halted');
}

function formatDuration(ms: number): string {
  // Seconds below a minute: rounding 30 s to minutes would say "1 min".
  const seconds = Math.max(1, Math.round(ms / 1000));
  return seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
}

/** A sentence for the agent (and the model behind it) saying why the call did not run. */
function outcomeReason(record: ApprovalRecord): string {
  switch (record.status) {
    case 'rejected':
      return `rejected by ${record.decidedBy ?? 'an approver'}${record.decisionReason ? `: ${record.decisionReason}` : ''}`;
    case 'expired':
      return `left without a decision for ${formatDuration(record.expiresAt - record.requestedAt)} and expired; the call was not made`;
    case 'cancelled':
      return `cancelled: ${record.decisionReason ?? 'agents halted'}`;
    case 'abandoned':
      return `abandoned: ${record.decisionReason ?? 'Warden restarted'}`;
    case 'failed':
      return `failed: ${record.decisionReason ?? 'unknown reason'}`;
    default:
      return record.status;
  }
}

/** What to tell someone who clicks a card that is no longer pending. */
export function statusSentence(record: ApprovalRecord): string {
  switch (record.status) {
    case 'pending':
      return 'This call is waiting for a decision.';
    case 'approved':
      return `This call was already approved by <@${record.decidedBy}>.`;
    case 'rejected':
      return `This call was already rejected by <@${record.decidedBy}>.`;
    case 'expired':
      return 'This request expired before anyone decided.';
    case 'cancelled':
      return `This request was cancelled: ${record.decisionReason ?? 'agents halted'}.`;
    case 'abandoned':
      return `This request was abandoned: ${record.decisionReason ?? 'Warden restarted'}.`;
    case 'failed':
      return `This request failed: ${record.decisionReason ?? 'unknown reason'}.`;
  }
}

/**
 * Whether the process that made a row may still be waiting on it. On this
 * host that is checked: a pid that is no longer running (or is this process's
 * own, from an earlier life) is gone. A process on another host cannot be
 * checked from here, so it is presumed to be waiting; a row naming no
 * process is not.
 */
function ownerMayBeWaiting(processId: string | undefined): boolean {
  if (!processId) return false;
  const [host, pidText] = processId.split(':');
  if (host !== hostname()) return Boolean(host);
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
