import type { Policy } from '../policy/types.ts';

/** A fixed policy or anything with `current()` (PolicyStore), so reloads are seen without restarts. */
export type PolicySource = Policy | { current(): Policy };

export function policyGetter(source: PolicySource): () => Policy {
  return 'current' in source && typeof source.current === 'function' ? () => source.current() : () => source as Policy;
}
