/**
 * Secrets never reach the audit table: `append` runs every free-form value
 * through here before anything is serialised or written.
 */

export const REDACTED = '[redacted]';

/** Default cap on a stored result (characters of its JSON text). */
export const DEFAULT_MAX_RESULT_CHARS = 16 * 1024;

const MAX_DEPTH = 64;

// Compared against the key lower-cased with separators removed, so
// access_token, X-Api-Key, privateKey and Set-Cookie all match.
const SECRET_KEY_PARTS = [
  'token',
  'password',
  'passwd',
  'passphrase',
  'secret',
  'authorization',
  'apikey',
  'cookie',
  'privatekey',
  'credential',
] as const;

export function isSecretKey(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  return SECRET_KEY_PARTS.some((part) => k.includes(part));
}

// Values that look like credentials wherever they appear, even inside prose
// or under an innocent key. Replaced in place so the rest of the text stays
// readable for the auditor.
const SECRET_VALUE_PATTERNS: readonly RegExp[] = [
  /\bxox[abposre]-[A-Za-z0-9-]+/g, // Slack bot/user/app-level/refresh tokens
  /\bxapp-[A-Za-z0-9-]+/g, // Slack app-level tokens
  /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g, // AWS access key ids
  /\bsk-[A-Za-z0-9_-]{16,}/g, // OpenAI / Anthropic style keys (sk-…, sk-proj-…, sk-ant-…)
  /\bgh[pousr]_[A-Za-z0-9]{20,}/g, // GitHub tokens
  /\bgithub_pat_[A-Za-z0-9_]{20,}/g, // GitHub fine-grained tokens
  /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, // JWTs (signature may be empty)
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, // PEM keys
];
// Keeps the scheme so the auditor still sees what kind of header it was.
// 8+ characters so prose like "the bearer of" survives; Basic only as a header.
const BEARER = /\b(Bearer|Authorization:\s*Basic)\s+[A-Za-z0-9\-._~+/]{8,}=*/gi;
// A password in a URL's userinfo (`scheme://user:password@host`): the user and host stay.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi;
// `password=…`, `secret: …` and the like inside prose or a config snippet: the name stays, the value goes.
const SECRET_PAIR =
  /\b(passwords?|passwd|pwd|passphrase|secret|client_secret|api[_-]?key|access[_-]?token)(\s*[=:]\s*)(?!\[redacted\])("[^"]*"|'[^']*'|[^\s&,;"']+)/gi;

/** Replaces credential-looking substrings with [redacted]. */
export function redactString(s: string): string {
  let out = s;
  for (const re of SECRET_VALUE_PATTERNS) {
    re.lastIndex = 0;
    if (re.test(out)) {
      re.lastIndex = 0;
      out = out.replace(re, REDACTED);
    }
  }
  BEARER.lastIndex = 0;
  if (BEARER.test(out)) {
    BEARER.lastIndex = 0;
    out = out.replace(BEARER, (_m, scheme: string) => `${scheme} ${REDACTED}`);
  }
  out = out.replace(URL_USERINFO, (_m, prefix: string) => `${prefix}${REDACTED}@`);
  out = out.replace(SECRET_PAIR, (_m, name: string, sep: string) => `${name}${sep}${REDACTED}`);
  return out;
}

/**
 * A JSON-safe deep copy of `value` with secrets removed: secret-named keys
 * have their whole value replaced, credential-looking strings are replaced in
 * place, cycles become "[circular]", BigInt becomes its decimal string, and
 * things JSON cannot hold (functions, symbols, binary) are described rather
 * than dropped silently.
 */
export function redact(value: unknown): unknown {
  return walk(value, new WeakSet<object>(), 0);
}

function walk(value: unknown, seen: WeakSet<object>, depth: number): unknown {
  switch (typeof value) {
    case 'string':
      return redactString(value);
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'undefined':
      return null;
    case 'symbol':
      return `[symbol ${value.description ?? ''}]`;
    case 'function':
      return '[function]';
  }
  if (value === null) return null;
  const obj = value as object;
  if (seen.has(obj)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[max depth]';
  if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? 'Invalid Date' : obj.toISOString();
  if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer) return `[binary ${obj.byteLength} bytes]`;
  seen.add(obj);
  try {
    if (Array.isArray(obj)) return obj.map((v) => walk(v, seen, depth + 1));
    if (obj instanceof Map) {
      const out = emptyRecord();
      for (const [k, v] of obj) putEntry(out, String(k), v, seen, depth);
      return out;
    }
    if (obj instanceof Set) return [...obj].map((v) => walk(v, seen, depth + 1));
    if (obj instanceof Error) {
      const out = emptyRecord();
      out.name = obj.name;
      out.message = redactString(obj.message);
      for (const [k, v] of Object.entries(obj)) putEntry(out, k, v, seen, depth);
      return out;
    }
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      let replaced: unknown;
      try {
        replaced = toJSON.call(obj);
      } catch {
        replaced = '[toJSON threw]';
      }
      if (replaced !== obj) return walk(replaced, seen, depth + 1);
    }
    const out = emptyRecord();
    for (const [k, v] of Object.entries(obj)) putEntry(out, k, v, seen, depth);
    return out;
  } finally {
    // Only ancestors count as cycles; the same object twice side by side is fine.
    seen.delete(obj);
  }
}

// No prototype: a key named __proto__ from an upstream is kept as data, not
// turned into a prototype swap.
function emptyRecord(): Record<string, unknown> {
  return Object.create(null) as Record<string, unknown>;
}

function putEntry(out: Record<string, unknown>, key: string, v: unknown, seen: WeakSet<object>, depth: number): void {
  const safeKey = redactString(key);
  out[safeKey] = isSecretKey(key) ? REDACTED : walk(v, seen, depth + 1);
}

/**
 * Cuts `text` to at most `maxChars` characters and says how much was cut, so
 * a reader never mistakes a truncated result for the whole one. The marker is
 * appended after the kept prefix; a surrogate pair is never split.
 */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  let keep = Math.max(0, maxChars);
  const last = text.charCodeAt(keep - 1);
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep -= 1;
  return `${text.slice(0, keep)}…[truncated ${text.length - keep} of ${text.length} chars]`;
}

/** Redacts, serialises as JSON and truncates; undefined stays absent (null column). */
export function serialiseRedacted(value: unknown, maxChars: number): string | null {
  if (value === undefined) return null;
  return truncateText(JSON.stringify(redact(value)), maxChars);
}

// SQLite stores UTF-8: a lone surrogate would come back as U+FFFD and the
// row would no longer match its hash, so plain text columns are made
// well-formed before hashing.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
export function wellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, '\uFFFD');
}
