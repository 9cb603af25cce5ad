export {
  ApprovalService,
  DEFAULT_APPROVAL_TIMEOUT_MS,
  DEFAULT_POLL_MS,
  UNAUDITED_APPROVAL_GRACE_MS,
  haltAbortReason,
  statusSentence,
} from './service.ts';
export type { ApprovalPolicySource, ApprovalServiceOptions } from './service.ts';
export { argsHash, canonicalJson } from './canonical.ts';
export type {
  ApprovalGate,
  ApprovalNotifier,
  ApprovalOutcome,
  ApprovalRecord,
  ApprovalRequestInput,
  ApprovalResultReport,
  ApprovalStatus,
  DecideResult,
  HeldCall,
  HeldCallBook,
  HeldCallEnding,
  NewHeldCall,
} from './types.ts';
