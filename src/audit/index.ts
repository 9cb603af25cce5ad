export type { AuditEntry, AuditRow, AuditSink } from './types.ts';
export { GENESIS_HASH, canonicalJson, canonicalRow, rowHash, sha256Hex } from './canonical.ts';
export { DEFAULT_MAX_RESULT_CHARS, REDACTED, isSecretKey, redact, redactString, truncateText } from './redact.ts';
export { AuditLog, type AuditLogOptions, type ChainHead } from './log.ts';
export {
  checkpointLag,
  checkpointMessage,
  createCheckpoint,
  generateCheckpointKeyPair,
  listCheckpoints,
  loadPrivateKey,
  loadPublicKey,
  markCheckpointPosted,
  parseCheckpointRef,
  publicKeyBase64,
  verifyCheckpoint,
  type Checkpoint,
  type CheckpointRef,
  type GeneratedKeyPair,
} from './checkpoint.ts';
export { appendWitness, readWitness } from './witness.ts';
export { CHECKPOINT_TEXT_PREFIX, checkpointText, parseCheckpointText } from './checkpoint-text.ts';
export {
  verifyChain,
  type ExternalCheckpoint,
  type ProblemKind,
  type SignedCheckpointSeen,
  type VerifyOptions,
  type VerifyProblem,
  type VerifyReport,
} from './verify.ts';
export {
  DEFAULT_QUERY_LIMIT,
  MAX_QUERY_LIMIT,
  QUERY_EXAMPLE,
  QUERY_KEYS,
  parseQuery,
  runQuery,
  type AuditQuery,
  type OutputFormat,
  type QueryPage,
} from './query.ts';
export {
  AuditReader,
  type AgentActivity,
  type AuditTailRow,
  type DecidedCallMatch,
  type OpenCall,
} from './reader.ts';
export { csvCell, formatCsv, formatJson, formatRows, formatTable } from './format.ts';
