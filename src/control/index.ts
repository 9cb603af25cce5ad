export type * from './types.ts';
export {
  KillSwitch,
  type KillSwitchOptions,
  type HaltEventInfo,
  type HaltListener,
  type ResumeListener,
  type HaltRequest,
  type ResumeRequest,
} from './kill-switch.ts';
export { LogAlertSink, FanOutAlertSink, MemoryAlertSink, alertChannels, type ChannelPoster } from './alerts.ts';
export { actorLabel, canHalt, canResume, canDrill, type ControlActor, type ControlAuthz } from './authorize.ts';
export {
  wireHaltEffects,
  isDrillActor,
  type HaltEffectsOptions,
  type PendingApprovalCanceller,
} from './halt-effects.ts';
export { agentStatuses, daysUntilReview, type AgentStatus } from './status.ts';
export { AnomalyDetector, type AnomalyEvent, type AnomalyOptions, type AnomalyRule } from './anomaly.ts';
export {
  DEFAULT_MAX_TIME_TO_HALT_MS,
  DrillRunner,
  drillOverdue,
  drillReportPoster,
  listDrills,
  planDrillTools,
  type CanaryCallResult,
  type CanaryConnection,
  type CanaryConnector,
  type DrillMode,
  type DrillOptions,
  type DrillOverdue,
  type DrillRecord,
  type DrillResult,
  type DrillTokens,
  type DrillToolPlan,
} from './drill.ts';
export {
  CHECKPOINT_GRACE_MS,
  ControlScheduler,
  checkpointMaxGapMs,
  checkpointText,
  type CheckpointTargets,
  type ControlSchedulerOptions,
} from './scheduler.ts';
export { createControlPlane, type ControlPlane, type ControlPlaneOptions } from './plane.ts';
export {
  recoverAbandonedCalls,
  recoveryGraceMs,
  ABANDONED_CALL_REASON,
  DEFAULT_RECOVERY_GRACE_MS,
  type CallRecoveryOptions,
  type RecoveredCall,
} from './recovery.ts';
export { RunStore, type RunCause, type RunRecord } from './runs.ts';
