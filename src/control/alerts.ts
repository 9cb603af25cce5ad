import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Policy } from '../policy/types.ts';
import type { Alert, AlertSink } from './types.ts';

/** Alerts as structured log lines: the sink of last resort, and the only one in CLI processes. */
export class LogAlertSink implements AlertSink {
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  alert(alert: Alert): void {
    const fields = { alert: { kind: alert.kind, severity: alert.severity, agent: alert.agent, detail: alert.detail } };
    if (alert.severity === 'critical') this.#logger.error(fields, alert.text);
    else if (alert.severity === 'warning') this.#logger.warn(fields, alert.text);
    else this.#logger.info(fields, alert.text);
  }
}

/**
 * Sends each alert to every sink. One sink throwing never stops the others
 * (AlertSink must not throw, but a broken one is logged, not trusted).
 */
export class FanOutAlertSink implements AlertSink {
  readonly #sinks: readonly AlertSink[];
  readonly #logger: Logger | undefined;

  constructor(sinks: readonly AlertSink[], logger?: Logger) {
    this.#sinks = [...sinks];
    this.#logger = logger;
  }

  alert(alert: Alert): void {
    for (const sink of this.#sinks) {
      try {
        sink.alert(alert);
      } catch (err) {
        this.#logger?.error({ err: describeError(err), kind: alert.kind }, 'alert sink threw');
      }
    }
  }
}

/** Collects alerts in memory; for tests and for the drill's own report. */
export class MemoryAlertSink implements AlertSink {
  readonly alerts: Alert[] = [];
  alert(alert: Alert): void {
    this.alerts.push(alert);
  }
}

/**
 * Which channels an alert belongs in. Pure, so Slack (or any poster) just posts.
 * The agent's owner channel hears about its own agent; on-call hears about
 * anything that is not merely informational, and about every halt and drill.
 */
export function alertChannels(policy: Policy, alert: Alert): string[] {
  const channels: string[] = [];
  const agentChannel = alert.agent ? policy.agents[alert.agent]?.channel : undefined;
  if (agentChannel) channels.push(agentChannel);
  const oncall = policy.control.oncallChannel;
  const oncallKinds = new Set<Alert['kind']>(['halted', 'drill_failed', 'drill_overdue']);
  if (
    oncall &&
    (alert.severity !== 'info' || oncallKinds.has(alert.kind) || !agentChannel) &&
    !channels.includes(oncall)
  ) {
    channels.push(oncall);
  }
  return channels;
}

/** The one thing control needs from a chat transport. Slack implements it with chat.postMessage. */
export interface ChannelPoster {
  post(channel: string, message: { text: string; blocks?: unknown[] | undefined }): Promise<void>;
}
