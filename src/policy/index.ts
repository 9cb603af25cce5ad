export type * from './types.ts';
export {
  parsePolicy,
  loadPolicyFile,
  formatFieldPath,
  formatProblem,
  POLICY_DEFAULTS,
  type PolicyProblem,
} from './load.ts';
export {
  decide,
  classifyTool,
  classifyToolDetailed,
  matchesApprovalRule,
  qualifiedToolName,
  splitQualifiedName,
  type ClassifiedTool,
} from './decide.ts';
export { PolicyStore, type ReloadResult } from './store.ts';
export { policyWarnings, hostAllowed, reachesModelApi, MODEL_API_HOSTS } from './warnings.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { policyGetter, type PolicySource } from './source.ts';
