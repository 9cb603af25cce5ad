/**
 * What Warden forwards as a tool call's arguments: plain JSON, small enough
 * for the audit trail to hold whole, shallow enough for an approver's card to
 * show, and free of the keys that rewrite prototypes in a JavaScript upstream
 * that merges them into its own objects. Pure; iterative, so a hostile nesting
 * depth cannot overflow the stack here.
 */

export interface ArgumentLimits {
  /** Largest JSON text of the arguments, in UTF-8 bytes. */
  maxBytes: number;
  /** Deepest nesting (the arguments object itself is level 1). */
  maxDepth: number;
}

/**
 * 64 KiB is the audit log's default cap on stored args: a larger object
 * would be recorded truncated, i.e. Warden would forward what it cannot show.
 * The audit redactor stops at depth 64; cards show far less.
 */
export const DEFAULT_ARGUMENT_LIMITS: ArgumentLimits = { maxBytes: 64 * 1024, maxDepth: 32 };

export type ArgumentProblemCode = 'not_an_object' | 'not_plain_json' | 'prototype_key' | 'too_deep' | 'too_large';

export interface ArgumentProblem {
  code: ArgumentProblemCode;
  /** A sentence naming where and what, e.g. `arguments.filter.__proto__ is a key …`. */
  message: string;
}

interface Node {
  value: unknown;
  parent: Node | undefined;
  key: string | number | undefined;
  depth: number;
}

/** Null when the arguments may be forwarded; otherwise the first problem found. */
export function argumentProblem(
  args: unknown,
  limits: ArgumentLimits = DEFAULT_ARGUMENT_LIMITS,
): ArgumentProblem | null {
  if (args === undefined) return null;
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    return { code: 'not_an_object', message: 'arguments must be a JSON object' };
  }
  const stack: Node[] = [{ value: args, parent: undefined, key: undefined, depth: 1 }];
  while (stack.length > 0) {
    const node = stack.pop()!;
    const { value, depth } = node;
    if (value === null) continue;
    switch (typeof value) {
      case 'string':
      case 'boolean':
        continue;
      case 'number':
        if (Number.isFinite(value)) continue;
        return { code: 'not_plain_json', message: `${pathOf(node)} is not a JSON number` };
      case 'object':
        break;
      default:
        return { code: 'not_plain_json', message: `${pathOf(node)} is not JSON (${typeof value})` };
    }
    if (depth > limits.maxDepth) {
      return {
        code: 'too_deep',
        message: `${pathOf(node)} is nested deeper than ${limits.maxDepth} levels, more than Warden forwards`,
      };
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--)
        stack.push({ value: value[i], parent: node, key: i, depth: depth + 1 });
      continue;
    }
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) {
      return { code: 'not_plain_json', message: `${pathOf(node)} is not a plain JSON object` };
    }
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const child: Node = { value: obj[key], parent: node, key, depth: depth + 1 };
      if (key === '__proto__' || (key === 'prototype' && node.key === 'constructor')) {
        return {
          code: 'prototype_key',
          message: `${pathOf(child)} is a key Warden does not forward: it can rewrite object prototypes in an upstream that merges arguments`,
        };
      }
      stack.push(child);
    }
  }
  // Depth is bounded now, so serialising cannot overflow.
  const bytes = Buffer.byteLength(JSON.stringify(args), 'utf8');
  if (bytes > limits.maxBytes) {
    return {
      code: 'too_large',
      message: `arguments are ${bytes} bytes of JSON, over Warden's limit of ${limits.maxBytes} bytes for one call`,
    };
  }
  return null;
}

/**
 * Whether a parsed JSON value holds an own key named `__proto__` anywhere.
 * JSON.parse keeps such keys as plain data, but the SDK's validation drops
 * them from a record without a word; Warden refuses instead of forwarding
 * something other than what the agent sent.
 */
export function findProtoKey(value: unknown): string | null {
  const stack: Node[] = [{ value, parent: undefined, key: undefined, depth: 0 }];
  while (stack.length > 0) {
    const node = stack.pop()!;
    const v = node.value;
    if (v === null || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push({ value: v[i], parent: node, key: i, depth: node.depth + 1 });
      continue;
    }
    for (const key of Object.keys(v)) {
      const child: Node = { value: (v as Record<string, unknown>)[key], parent: node, key, depth: node.depth + 1 };
      if (key === '__proto__') return pathOf(child, 'body');
      stack.push(child);
    }
  }
  return null;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

function pathOf(node: Node, root = 'arguments'): string {
  const parts: string[] = [];
  for (let n: Node | undefined = node; n && n.key !== undefined; n = n.parent) {
    const k = n.key;
    if (typeof k === 'number') parts.push(`[${k}]`);
    else if (IDENT.test(k)) parts.push(`.${k}`);
    else parts.push(`[${JSON.stringify(k.length > 60 ? `${k.slice(0, 60)}…` : k)}]`);
  }
  return root + parts.reverse().join('');
}
