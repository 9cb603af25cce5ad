import type { AuditEntry, AuditSink } from './types.ts';

/**
 * How much of a call's record is on stable storage, and when. Either way
 * each row is committed before the step it records is acted on, and
 * call.decided is fsynced before a call that can change something (write
 * scope, a consequence beyond reversible, or held for a human) is
 * forwarded.
 * 'fast' (default): a plain read is forwarded once its call.decided is
 * committed, the fsync running alongside, and answered once it is done;
 * call.completed is fsynced by the next synced commit or within the audit
 * log's syncWithinMs (20 ms). A crash of Warden loses nothing; a power or
 * OS failure in that window can lose those rows, and crash recovery then
 * records the call's outcome as unknown.
 * 'strict': every row is fsynced before the step after it (two fsyncs per
 * call on the path).
 */
export type AuditDurability = 'fast' | 'strict';

/**
 * A tool call's two rows, written as durably as `AuditDurability` says. The
 * gateway says what the call is (whether it can change anything); when to
 * fsync is decided here, next to the sink that does it.
 */
export class CallRecords {
  readonly #sink: AuditSink;
  readonly #durability: AuditDurability;

  constructor(sink: AuditSink, durability: AuditDurability = 'fast') {
    this.#sink = sink;
    this.#durability = durability;
  }

  /**
   * Writes call.decided; rejects when it cannot be written. Resolves once the
   * row is committed, and for a call that can change something once it is on
   * stable storage. Otherwise `durable` settles when it is: the caller may
   * start the call meanwhile but gives no answer before then.
   * `alone`: asked once the row is committed; whether no other call is
   * running, so the fsync may run on the event loop (SyncOptions.quiet).
   */
  async decided(
    entry: AuditEntry,
    call: { changesNothing: boolean; alone: () => boolean },
  ): Promise<{ durable: Promise<void> | undefined }> {
    const alongside = this.#durability !== 'strict' && call.changesNothing && this.#sink.sync !== undefined;
    await this.#sink.append(entry, { sync: !alongside });
    if (!alongside) return { durable: undefined };
    const durable = this.#sink.sync!({ quiet: call.alone() });
    // A failure is handled where the answer awaits it; until then it must not surface as unhandled.
    durable.catch(() => {});
    return { durable };
  }

  /** Writes call.completed: committed when it resolves, fsynced too under 'strict'. */
  async completed(entry: AuditEntry): Promise<void> {
    await this.#sink.append(entry, { sync: this.#durability === 'strict' });
  }
}
