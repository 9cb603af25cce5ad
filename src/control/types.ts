export interface HaltState {
  scope: 'org' | 'agent';
  agent?: string | undefined;
  reason: string;
  actor: string;
  at: number;
}

/** What the gateway needs from the kill switch. `check` is synchronous and cheap: it reads memory. */
export interface HaltCheck {
  check(agent: string): HaltState | null;
  /** Called on every newly observed halt (this process or another sharing the DB). Returns an unsubscribe. */
  onHalt(listener: (state: HaltState) => void): () => void;
}

export type AlertKind =
  | 'denied'
  | 'auth_failed'
  | 'pin_changed'
  | 'upstream_failed'
  | 'anomaly'
  | 'drill_failed'
  | 'drill_overdue'
  | 'halted'
  | 'review_due'
  | 'policy_changed';

export interface Alert {
  kind: AlertKind;
  severity: 'info' | 'warning' | 'critical';
  agent?: string | undefined;
  /** A human sentence; no secrets. */
  text: string;
  detail?: Record<string, unknown> | undefined;
}

/** Where alerts go (Slack owner channel and on-call, or a log). Must not throw. */
export interface AlertSink {
  alert(alert: Alert): void;
}
