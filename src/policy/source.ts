import type { Policy } from './types.ts';

/**
 * The policy in force, as services take it: a fixed policy, anything with
 * `current()` (PolicyStore, so reloads are seen without restarts), or a getter.
 */
export type PolicySource = Policy | { current(): Policy } | (() => Policy);

/** One way to read any PolicySource: call the result each time the policy is needed. */
export function policyGetter(source: PolicySource): () => Policy {
  if (typeof source === 'function') return source;
  if ('current' in source && typeof source.current === 'function') return () => source.current();
  return () => source as Policy;
}
