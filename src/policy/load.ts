import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { WardenError } from '../errors.ts';
import {
  KNOWN_KEYS,
  SERVER_NAME_RE,
  TOOL_NAME_RE,
  policyFileSchema,
  SANDBOX_EXPECTED,
  SANDBOX_SEED,
  type AgentBlock,
  type PolicyFile,
  type ServerBlock,
} from './schema.ts';
import { compileCondition, type CompiledCondition } from './rules.ts';
import type {
  AgentPolicy,
  ControlPolicy,
  Policy,
  PolicyRule,
  SandboxPolicy,
  Scope,
  ServerPolicy,
  ToolClass,
  Transport,
} from './types.ts';

/** The namespace of Warden's own tools (`warden__await_approval`): no upstream may take it. */
export const RESERVED_SERVER = 'warden';
/** Held calls per agent pending at once, unless the policy says otherwise. */
export const DEFAULT_MAX_PENDING = 20;

export const POLICY_DEFAULTS = {
  approvalTimeoutMs: 15 * 60_000,
  /** Under the 60 s after which the MCP SDK's client, and most clients built on it, give up on a request. */
  answerWithinMs: 45_000,
  denialWindowMs: 10 * 60_000,
  timeoutMs: 30_000,
  maxResultBytes: 1_048_576,
  canaryAgent: 'warden-canary',
  overdueAfterDays: 35,
  stopGraceMs: 5_000,
} as const;

type PathSegment = string | number;

/** One problem in a policy file, positioned for an editor. */
export interface PolicyProblem {
  file: string;
  line: number;
  col: number;
  /** Field path such as `agents[0].mcp_scopes.tickets[0]`; empty for the document itself. */
  field: string;
  message: string;
}

/** `agents[0].mcp_scopes.tickets[0]`; odd keys are quoted so the path stays unambiguous. */
export function formatFieldPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export function formatProblem(p: PolicyProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

/**
 * Text → Policy. Throws POLICY_INVALID listing every problem found, one a line,
 * each as `file:line:col: field: message`.
 * `env` supplies `${VAR}` references in server env and headers; resolved values
 * are never put in messages.
 */
export function parsePolicy(text: string, source: string, env: NodeJS.ProcessEnv = process.env): Policy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number, field: string, message: string): PolicyProblem => {
    const { line, col } = lineCounter.linePos(Math.max(0, Math.min(offset, text.length)));
    return { file: source, line, col, field, message };
  };

  if (doc.errors.length > 0) {
    fail(doc.errors.map((e) => at(e.pos[0], '', `YAML syntax error: ${e.message.split('\n')[0]}`)));
  }
  if (doc.contents === null) fail([at(0, '', 'policy file is empty')]);

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // An alias bomb: the yaml library refuses to expand it. A policy problem, not a crash.
    fail([at(0, '', `YAML error: ${err instanceof Error ? err.message : String(err)}`)]);
  }
  const parsed = policyFileSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const problems: PolicyProblem[] = [];
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          const path = [...issue.path, key] as PathSegment[];
          const hint = suggestKey(key);
          problems.push(
            at(
              offsetOf(doc, path, true),
              formatFieldPath(path),
              `unknown key${hint ? ` (did you mean "${hint}"?)` : ''}`,
            ),
          );
        }
        continue;
      }
      const path = issue.path as PathSegment[];
      problems.push(at(offsetOf(doc, path, false), formatFieldPath(path), describeIssue(issue, path)));
    }
    fail(problems);
  }

  const file = parsed.data;
  const problems: { path: PathSegment[]; message: string; key?: boolean }[] = [];
  const policy = normalise(file, source, env, (path, message, key = false) => problems.push({ path, message, key }));
  if (problems.length > 0) {
    fail(problems.map((p) => at(offsetOf(doc, p.path, p.key ?? false), formatFieldPath(p.path), p.message)));
  }
  return policy;
}

/** Reads and parses a policy file; POLICY_NOT_FOUND when it cannot be read. */
export function loadPolicyFile(path: string, env: NodeJS.ProcessEnv = process.env): Policy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WardenError('POLICY_NOT_FOUND', `${path}: cannot read policy file${code ? ` (${code})` : ''}`, {
      cause: err,
      details: { file: path },
    });
  }
  return parsePolicy(text, path, env);
}

function fail(problems: PolicyProblem[]): never {
  const sorted = [...problems].sort((a, b) => a.line - b.line || a.col - b.col);
  throw new WardenError('POLICY_INVALID', sorted.map(formatProblem).join('\n'), {
    details: { file: sorted[0]?.file, problems: sorted },
  });
}

// ---------------------------------------------------------------------------
// Positions

/**
 * Offset of the node at `path` (or of its key, for unknown keys). When the path
 * runs out (a missing required field), the deepest node that exists is used,
 * so the message still points at the block that lacks the field.
 */
function offsetOf(doc: Document, path: readonly PathSegment[], wantKey: boolean): number {
  let node: unknown = doc.contents;
  let best = rangeStart(node) ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    const last = i === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg),
      );
      if (!pair) return best;
      if (last && wantKey) return rangeStart(pair.key) ?? best;
      node = pair.value;
      // `key:` with no value has a null node; point at the key instead.
      best = rangeStart(node) ?? rangeStart(pair.key) ?? best;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return best;
      node = item;
      best = rangeStart(node) ?? best;
    } else {
      return best;
    }
  }
  return best;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as YamlNode | null | undefined)?.range;
  return Array.isArray(range) ? range[0] : undefined;
}

// ---------------------------------------------------------------------------
// Messages

// Fields that may carry credentials (tokens in headers/env, in a URL's query, in args).
const SECRET_PARENTS = new Set(['env', 'headers', 'url', 'args']);

function describeIssue(issue: z.core.$ZodIssue, path: readonly PathSegment[]): string {
  // Values under env/headers may be credentials; never echo them.
  const secret = path.some((seg) => typeof seg === 'string' && SECRET_PARENTS.has(seg));
  const hasInput = 'input' in issue;
  const got = hasInput && !secret ? `, got ${show(issue.input)}` : '';
  switch (issue.code) {
    case 'invalid_type':
      if (!hasInput || issue.input === undefined) return `required (expected ${article(issue.expected)})`;
      return `expected ${article(issue.expected)}${got}`;
    case 'invalid_value': {
      // A schema-written message explains why (e.g. audit); zod's own starts with "Invalid".
      if (!issue.message.startsWith('Invalid')) return `${issue.message}${got}`;
      const expected = `expected ${issue.values.length === 1 ? String(issue.values[0]) : `one of ${issue.values.map(String).join('|')}`}`;
      return hasInput && issue.input === undefined ? `required (${expected})` : `${expected}${got}`;
    }
    case 'invalid_format':
    case 'too_small':
    case 'too_big':
    case 'not_multiple_of':
      return `${friendly(issue)}${got}`;
    default:
      return issue.message;
  }
}

function friendly(issue: z.core.$ZodIssue): string {
  // Custom messages (e.g. the Slack id format) are already readable; zod's own start with "Too"/"Invalid".
  if (issue.code === 'too_small' && issue.origin === 'number') {
    return issue.minimum === 0 && !issue.inclusive
      ? 'expected a positive number'
      : `expected a number >= ${issue.minimum}`;
  }
  if (issue.code === 'too_small' && issue.origin === 'string') return 'expected a non-empty string';
  if (issue.code === 'invalid_type' || /^(Too|Invalid)/.test(issue.message))
    return issue.message.replace(/^Invalid input: /, '');
  return issue.message;
}

function article(expected: string): string {
  if (expected === 'array') return 'a list';
  if (expected === 'int') return 'a whole number';
  if (expected === 'object' || expected === 'record') return 'a mapping';
  return `a ${expected}`;
}

function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  const s = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function suggestKey(key: string): string | undefined {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const known of KNOWN_KEYS) {
    const d = editDistance(key.toLowerCase(), known);
    if (d < bestDist) {
      best = known;
      bestDist = d;
    }
  }
  return best !== undefined && bestDist <= Math.max(1, Math.floor(key.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}

// ---------------------------------------------------------------------------
// Normalisation and cross-references

type Report = (path: PathSegment[], message: string, key?: boolean) => void;

const AGENT_ONLY_KEYS = [
  'agent',
  'sandbox',
  'mcp_scopes',
  'approval_required',
  'audit',
  'kill_switch',
  'owner',
  'channel',
  'approvers',
  'review_by',
  'limits',
  'approval_timeout',
  'answer_within',
  'on_redacted',
  'max_pending',
  'rules',
  'grants',
] as const;

function normalise(file: PolicyFile, source: string, env: NodeJS.ProcessEnv, report: Report): Policy {
  // Which form: top-level `agent:` (seed) or an `agents:` list (full). Not both.
  const blocks: { block: AgentBlock; path: PathSegment[] }[] = [];
  const topLevelAgentKeys = AGENT_ONLY_KEYS.filter((k) => file[k] !== undefined);
  if (file.agents !== undefined) {
    for (const k of topLevelAgentKeys) {
      report([k], 'agent fields belong inside an `agents:` entry when `agents:` is used', true);
    }
    for (const [i, block] of file.agents.entries()) blocks.push({ block, path: ['agents', i] });
  } else if (file.agent !== undefined) {
    if (file.mcp_scopes === undefined) report(['mcp_scopes'], 'required (expected a mapping of server → [read|write])');
    blocks.push({ block: { ...file, agent: file.agent, mcp_scopes: file.mcp_scopes ?? {} }, path: [] });
  } else if (topLevelAgentKeys.length > 0) {
    report([topLevelAgentKeys[0]!], 'the seed form needs `agent:` naming the agent', true);
  } else {
    report([], 'policy declares no agents: add `agent:` (seed form) or `agents:` (full form)');
  }

  const servers = normaliseServers(file.servers, env, report);
  const declaredServers = file.servers !== undefined;

  const agents: Record<string, AgentPolicy> = dict();
  for (const { block, path } of blocks) {
    if (agents[block.agent] !== undefined) {
      report([...path, 'agent'], `duplicate agent "${block.agent}"`);
      continue;
    }
    for (const [serverName, scopes] of Object.entries(block.mcp_scopes)) {
      const scopePath = [...path, 'mcp_scopes', serverName];
      if (serverName === RESERVED_SERVER) {
        report(scopePath, `"${RESERVED_SERVER}" is reserved for Warden's own tools, not an upstream server`, true);
        continue;
      }
      if (!SERVER_NAME_RE.test(serverName)) {
        report(scopePath, 'server names are letters and digits joined by single "-" or "_"', true);
        continue;
      }
      if (declaredServers && servers[serverName] === undefined) {
        const known = Object.keys(servers);
        report(
          scopePath,
          `unknown server "${serverName}"; servers declares ${known.length ? known.join(', ') : 'none'}`,
          true,
        );
      } else if (!declaredServers && servers[serverName] === undefined) {
        // Seed form: a server named in scopes exists, with nothing classified,
        // so every tool on it counts as write + irreversible until classified.
        servers[serverName] = {
          name: serverName,
          tools: dict(),
          timeoutMs: POLICY_DEFAULTS.timeoutMs,
          maxResultBytes: POLICY_DEFAULTS.maxResultBytes,
        };
      }
      if (new Set(scopes).size !== scopes.length) report(scopePath, 'a scope is listed twice');
    }
    (block.approval_required ?? []).forEach((entry, i) => {
      if (!TOOL_NAME_RE.test(entry)) report([...path, 'approval_required', i], `"${entry}" is not a tool name`);
    });
    const rules = normaliseRules(block.rules ?? [], [...path, 'rules'], report);
    const limits = block.limits ?? {};
    agents[block.agent] = {
      name: block.agent,
      owner: block.owner,
      channel: block.channel,
      approvers: block.approvers ?? [],
      reviewBy: block.review_by,
      scopes: Object.assign(
        dict<Scope[]>(),
        Object.fromEntries(Object.entries(block.mcp_scopes).map(([s, list]) => [s, [...new Set(list)]])),
      ),
      approvalRequired: block.approval_required ?? [],
      rules,
      grantMaxMs: typeof block.grants?.max === 'number' ? block.grants.max : undefined,
      approvalTimeoutMs: numberOr(block.approval_timeout, POLICY_DEFAULTS.approvalTimeoutMs),
      answerWithinMs:
        block.answer_within === 'never' ? undefined : numberOr(block.answer_within, POLICY_DEFAULTS.answerWithinMs),
      onRedacted: block.on_redacted ?? 'hold_and_warn',
      maxPending: block.max_pending ?? DEFAULT_MAX_PENDING,
      limits: {
        callsPerMinute: limits.calls_per_minute,
        maxDenials: limits.max_denials,
        denialWindowMs: numberOr(limits.denial_window, POLICY_DEFAULTS.denialWindowMs),
        maxRejections: limits.max_rejections,
        maxCallDurationMs: limits.max_call_duration,
        autoHalt: limits.auto_halt ?? false,
      },
      audit: block.audit ?? 'all_tool_calls',
      sandbox: normaliseSandbox(block.sandbox, [...path, 'sandbox'], report),
      killSwitch: block.kill_switch,
    };
  }

  const control = normaliseControl(file.control, agents, report);
  return { servers, agents, control, source };
}

/** Compiles each rule's condition; a syntax or name error is reported at the `when` field. */
function normaliseRules(raw: NonNullable<AgentBlock['rules']>, path: PathSegment[], report: Report): PolicyRule[] {
  return raw.map((r, index) => {
    if (!TOOL_NAME_RE.test(r.tool)) report([...path, index, 'tool'], `"${r.tool}" is not a tool name`);
    let condition: CompiledCondition | undefined;
    if (r.when !== undefined) {
      const compiled = compileCondition(r.when);
      if (compiled.ok) condition = compiled.condition;
      else report([...path, index, 'when'], `invalid condition: ${compiled.error}`);
    }
    if (r.grant !== undefined && r.then !== 'approve') {
      report([...path, index, 'grant'], '`grant: never` applies to `then: approve` rules only');
    }
    return {
      index,
      tool: r.tool,
      when: r.when,
      condition,
      effect: r.then,
      reason: r.reason,
      grantNever: r.grant === 'never',
    };
  });
}

/**
 * Maps keyed by names an agent controls (agent, server, tool) have no
 * prototype, so `constructor` or `__proto__` is just an unknown name, never an
 * inherited member that slips past a lookup.
 */
function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * The seed's string and `none` are the only strings: anything else (a typo,
 * "isolated, egress open") would be a promise nobody keeps, so it is an error.
 */
function normaliseSandbox(raw: AgentBlock['sandbox'], path: PathSegment[], report: Report): SandboxPolicy {
  const strict: SandboxPolicy = {
    mode: 'isolated',
    declared: 'default',
    networkAllow: [],
    readDeny: [],
    write: [],
    env: [],
    stopGraceMs: POLICY_DEFAULTS.stopGraceMs,
  };
  if (raw === undefined) return strict;
  if (typeof raw === 'string') {
    if (raw.trim() === SANDBOX_SEED) return { ...strict, declared: 'seed' };
    if (raw.trim() === 'none') return { ...strict, mode: 'none', declared: 'none' };
    report(path, SANDBOX_EXPECTED);
    return strict;
  }
  return {
    mode: 'isolated',
    declared: 'block',
    networkAllow: [...new Set(raw.network?.allow ?? [])],
    readDeny: [...new Set(raw.filesystem?.read_deny ?? [])],
    write: [...new Set(raw.filesystem?.write ?? [])],
    env: [...new Set(raw.env ?? [])],
    stopGraceMs: numberOr(raw.stop_grace, POLICY_DEFAULTS.stopGraceMs),
  };
}

function numberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

function normaliseServers(
  raw: Record<string, ServerBlock> | undefined,
  env: NodeJS.ProcessEnv,
  report: Report,
): Record<string, ServerPolicy> {
  const servers: Record<string, ServerPolicy> = dict();
  for (const [name, s] of Object.entries(raw ?? {})) {
    const path: PathSegment[] = ['servers', name];
    if (name === RESERVED_SERVER) {
      report(
        path,
        `"${RESERVED_SERVER}" is reserved for Warden's own tools (${RESERVED_SERVER}__await_approval)`,
        true,
      );
      continue;
    }
    if (!SERVER_NAME_RE.test(name)) {
      report(
        path,
        'server names are letters and digits joined by single "-" or "_" (they prefix tool names as <server>__<tool>)',
        true,
      );
    }
    let transport: Transport | undefined;
    if (s.command !== undefined && s.url !== undefined) {
      report([...path, 'url'], 'a server has either `command` (stdio) or `url` (HTTP), not both', true);
    } else if (s.command !== undefined) {
      if (s.headers !== undefined)
        report([...path, 'headers'], '`headers` is for HTTP servers (`url`); use `env` for a stdio server', true);
      transport = {
        type: 'stdio',
        command: s.command,
        args: s.args ?? [],
        env: resolveRefs(s.env ?? {}, [...path, 'env'], env, report),
        ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
      };
    } else if (s.url !== undefined) {
      for (const k of ['args', 'env', 'cwd', 'sandbox'] as const) {
        if (s[k] !== undefined) report([...path, k], `\`${k}\` is for stdio servers (\`command\`)`, true);
      }
      transport = {
        type: 'http',
        url: s.url,
        headers: resolveRefs(s.headers ?? {}, [...path, 'headers'], env, report),
      };
    } else {
      report(path, 'a server needs `command` (stdio child) or `url` (Streamable HTTP)');
    }
    const tools: Record<string, ToolClass> = dict();
    for (const [tool, t] of Object.entries(s.tools ?? {})) {
      if (!TOOL_NAME_RE.test(tool))
        report([...path, 'tools', tool], 'tool names are letters, digits, "_", "-" or "."', true);
      // A write tool without a stated consequence is taken at its worst.
      tools[tool] = {
        scope: t.scope,
        consequence: t.consequence ?? (t.scope === 'read' ? 'reversible' : 'irreversible'),
      };
    }
    let sandbox: SandboxPolicy | undefined;
    if (s.sandbox !== undefined && s.command !== undefined) {
      const box = normaliseSandbox(s.sandbox, [...path, 'sandbox'], report);
      // An upstream has no egress proxy of its own: a list it could not honour is refused, not ignored.
      if (box.networkAllow.length > 0)
        report([...path, 'sandbox', 'network', 'allow'], 'a sandboxed upstream gets no network; leave allow empty');
      if (box.mode === 'isolated') sandbox = box;
    }
    servers[name] = {
      name,
      transport,
      tools,
      timeoutMs: s.timeout_ms ?? POLICY_DEFAULTS.timeoutMs,
      maxResultBytes: s.max_result_bytes ?? POLICY_DEFAULTS.maxResultBytes,
      ...(sandbox ? { sandbox } : {}),
    };
  }
  return servers;
}

const REF_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** Resolves `${VAR}` from `env`. Reports name the field and variable, never a value. */
function resolveRefs(
  values: Record<string, string>,
  path: PathSegment[],
  env: NodeJS.ProcessEnv,
  report: Report,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(values)) {
    out[key] = value.replace(REF_RE, (_match, name: string) => {
      const resolved = env[name];
      if (resolved === undefined || resolved === '') {
        report([...path, key], `environment variable ${name} is ${resolved === undefined ? 'not set' : 'empty'}`);
        return '';
      }
      return resolved;
    });
  }
  return out;
}

function normaliseControl(
  raw: PolicyFile['control'],
  agents: Record<string, AgentPolicy>,
  report: Report,
): ControlPolicy {
  const drill = raw?.drill;
  const canaryAgent = drill?.canary_agent ?? POLICY_DEFAULTS.canaryAgent;
  // A drill against an agent the gateway does not know would "pass" for the wrong reason.
  if (drill?.canary_agent !== undefined && agents[canaryAgent] === undefined) {
    report(['control', 'drill', 'canary_agent'], `canary agent "${canaryAgent}" is not a declared agent`);
  } else if (drill?.schedule !== undefined && agents[canaryAgent] === undefined) {
    report(
      ['control', 'drill', 'schedule'],
      `drills need the canary agent "${canaryAgent}" declared under agents (or set drill.canary_agent)`,
    );
  }
  return {
    halters: raw?.halters ?? [],
    resumers: raw?.resumers ?? [],
    auditors: raw?.auditors ?? [],
    oncallChannel: raw?.oncall_channel,
    complianceChannel: raw?.compliance_channel,
    drill: {
      schedule: drill?.schedule,
      canaryAgent,
      overdueAfterDays: drill?.overdue_after_days ?? POLICY_DEFAULTS.overdueAfterDays,
    },
    checkpointSchedule: raw?.checkpoint_schedule,
    checkpointEveryRows: raw?.checkpoint_every_rows,
    reviewReminderSchedule: raw?.review_reminder_schedule,
  };
}
