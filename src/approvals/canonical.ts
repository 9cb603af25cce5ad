import { canonicalJson, sha256Hex } from '../audit/canonical.ts';

export { canonicalJson };

/** sha256 (hex) of the canonical JSON: what an approval is bound to. */
export function argsHash(args: unknown): string {
  return sha256Hex(canonicalJson(args));
}
