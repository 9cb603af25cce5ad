import { celEnv, isCelError, isCelList, isCelMap, parse, plan, type CelInput } from '@bufbuild/cel';
import { strings } from '@bufbuild/cel/ext';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';

/**
 * Rule conditions: CEL expressions (https://cel.dev) over the call, compiled
 * once at load and evaluated inside `decide()`. Evaluation is pure: the
 * bindings are the call's arguments, names and the time the caller passes in.
 */

/** The names a condition may read. Anything else is a compile error, not a runtime surprise. */
export const CONDITION_VARIABLES = ['args', 'agent', 'server', 'tool', 'now'] as const;

export interface ConditionInput {
  args: unknown;
  agent: string;
  server: string;
  /** The bare tool name, as the upstream calls it. */
  tool: string;
  /** Milliseconds since the epoch; absent, a condition that reads `now` cannot be evaluated. */
  now?: number | undefined;
}

export type ConditionResult = { ok: true; value: boolean } | { ok: false; error: string };

export interface CompiledCondition {
  readonly source: string;
  evaluate(input: ConditionInput): ConditionResult;
}

export type CompileResult = { ok: true; condition: CompiledCondition } | { ok: false; error: string };

type Expr = ReturnType<typeof parse>['expr'];

// One environment for every condition: the standard library plus the strings
// extension (indexOf, lowerAscii, …), which readers of a policy expect.
const ENV = celEnv({ funcs: strings });

export function compileCondition(source: string): CompileResult {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(source);
  } catch (err) {
    return { ok: false, error: celMessage(err) };
  }
  const problem = staticProblem(parsed.expr);
  if (problem !== undefined) return { ok: false, error: problem };
  let program: ReturnType<typeof plan>;
  try {
    program = plan(ENV, parsed);
  } catch (err) {
    return { ok: false, error: celMessage(err) };
  }
  return {
    ok: true,
    condition: {
      source,
      evaluate(input) {
        const bindings: Record<string, CelInput> = {
          args: toCel(input.args ?? {}),
          agent: input.agent,
          server: input.server,
          tool: input.tool,
        };
        if (input.now !== undefined) bindings.now = timestampFromMs(input.now);
        let value: unknown;
        try {
          value = program(bindings);
        } catch (err) {
          return { ok: false, error: celMessage(err) };
        }
        if (isCelError(value)) return { ok: false, error: value.message };
        if (typeof value !== 'boolean')
          return { ok: false, error: `the condition gave ${describeValue(value)}, not true or false` };
        return { ok: true, value };
      },
    },
  };
}

/**
 * JSON arguments → CEL values. CEL keeps int and double apart; a JSON number
 * that is a whole number becomes an int, so `args.amount + 1` and
 * `args.amount == 10` read as written, and comparisons (`<=`, `>`) work
 * across int and double, so `args.amount <= 50` holds for 10 and for 10.5.
 * Objects become Maps: a key such as `__proto__` stays an ordinary key.
 */
export function toCel(value: unknown): CelInput {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value;
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (Array.isArray(value)) return value.map(toCel);
  if (typeof value === 'object') {
    const out = new Map<string, CelInput>();
    for (const [k, v] of Object.entries(value)) out.set(k, toCel(v));
    return out;
  }
  return null;
}

/**
 * What CEL's type checker would catch and this library's public API does not
 * offer: names that are not variables, functions that do not exist, and
 * parts that use no variable yet fail (`1 + 'a'`). Argument types cannot be
 * known before a call, so those errors surface at evaluation and fail closed.
 */
function staticProblem(root: Expr): string | undefined {
  const allowed = new Set<string>(CONDITION_VARIABLES);
  let problem: string | undefined;
  const walk = (expr: Expr | undefined, bound: ReadonlySet<string>): boolean => {
    // Returns whether the subexpression reads a variable.
    if (expr === undefined || problem !== undefined) return false;
    const kind = expr.exprKind;
    switch (kind.case) {
      case 'identExpr':
        if (!allowed.has(kind.value.name) && !bound.has(kind.value.name)) {
          problem = `unknown name "${kind.value.name}"; a condition may read ${CONDITION_VARIABLES.join(', ')}`;
        }
        return true;
      case 'selectExpr':
        return walk(kind.value.operand, bound);
      case 'callExpr': {
        const fn = kind.value.function;
        if (!fn.startsWith('_') && !fn.startsWith('@') && fn !== 'has' && ENV.funcs.find(fn) === undefined) {
          problem = `unknown function "${fn}"`;
          return false;
        }
        let reads = walk(kind.value.target, bound);
        for (const arg of kind.value.args) reads = walk(arg, bound) || reads;
        return reads;
      }
      case 'listExpr': {
        let reads = false;
        for (const el of kind.value.elements) reads = walk(el, bound) || reads;
        return reads;
      }
      case 'structExpr': {
        // `Foo{a: 1}` builds a message; no condition needs one, and an unknown type would only
        // fail on every call (a rule that never matches, or always does): refuse it at load.
        if (kind.value.messageName !== '') {
          problem = `unknown type "${kind.value.messageName}"; a condition may build lists and maps, not messages`;
          return false;
        }
        let reads = false;
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case === 'mapKey') reads = walk(entry.keyKind.value, bound) || reads;
          reads = walk(entry.value, bound) || reads;
        }
        return reads;
      }
      case 'comprehensionExpr': {
        const c = kind.value;
        const inner = new Set([...bound, c.iterVar, c.iterVar2, c.accuVar].filter(Boolean));
        let reads = walk(c.iterRange, bound);
        reads = walk(c.accuInit, bound) || reads;
        reads = walk(c.loopCondition, inner) || reads;
        reads = walk(c.loopStep, inner) || reads;
        reads = walk(c.result, inner) || reads;
        return reads;
      }
      default:
        return false;
    }
  };
  const reads = walk(root, new Set());
  if (problem !== undefined) return problem;
  if (!reads) {
    // A condition that reads nothing is a constant: evaluate it now so a type error stops the load.
    const value = plan(ENV, root)({});
    if (isCelError(value)) return value.message;
    if (typeof value !== 'boolean') return `the condition is always ${describeValue(value)}, not true or false`;
    return undefined;
  }
  // Parts that read nothing are constants too: `args.n > 1 + 'a'` fails on every call, so it fails the load.
  return constantParts(root);
}

function constantParts(root: Expr): string | undefined {
  let problem: string | undefined;
  const readsVariable = (expr: Expr | undefined): boolean => {
    if (expr === undefined) return false;
    const kind = expr.exprKind;
    switch (kind.case) {
      case 'identExpr':
        return true;
      case 'selectExpr':
        return readsVariable(kind.value.operand);
      case 'callExpr':
        return readsVariable(kind.value.target) || kind.value.args.some(readsVariable);
      case 'listExpr':
        return kind.value.elements.some(readsVariable);
      case 'structExpr':
        return kind.value.entries.some(
          (e) => (e.keyKind.case === 'mapKey' && readsVariable(e.keyKind.value)) || readsVariable(e.value),
        );
      case 'comprehensionExpr':
        return true;
      default:
        return false;
    }
  };
  const visit = (expr: Expr | undefined): void => {
    if (expr === undefined || problem !== undefined) return;
    if (!readsVariable(expr)) {
      const value = plan(ENV, expr)({});
      if (isCelError(value)) problem = value.message;
      return;
    }
    const kind = expr.exprKind;
    if (kind.case === 'callExpr') {
      visit(kind.value.target);
      for (const arg of kind.value.args) visit(arg);
    } else if (kind.case === 'listExpr') {
      for (const el of kind.value.elements) visit(el);
    }
  };
  visit(root);
  return problem;
}

function celMessage(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // The parser prefixes `<input>:1:13: `; keep the column, which points into the expression.
  return message.replace(/^<input>:(\d+):(\d+): /, 'at $1:$2 of the expression: ').split('\n')[0] ?? message;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `a string`;
  if (typeof value === 'bigint' || typeof value === 'number') return `a number`;
  if (value === null) return 'null';
  if (isCelList(value)) return 'a list';
  if (isCelMap(value)) return 'a map';
  return 'a value of another type';
}
