import { validate as validateCron, validateDetailed as validateCronDetailed } from 'node-cron';
import { z } from 'zod';
import { parseDuration } from './duration.ts';

/**
 * The policy file as written (snake_case YAML). Every object is strict: a typo
 * such as `mcp_scope` is an error, never a silently ignored key, because an
 * ignored key in a permissions file is a permission nobody meant to give or take.
 * Defaults and cross-references are applied after parsing (see load.ts), so
 * this file is only the shape.
 */

export const SLACK_USER_RE = /^[UW][A-Z0-9]{2,}$/;
export const SLACK_CHANNEL_RE = /^[CG][A-Z0-9]{2,}$/;
/** Server names end up in `<server>__<tool>`, so they may not contain `__` or end in `_`. */
export const SERVER_NAME_RE = /^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$/;
/** MCP tool names: letters, digits, `_`, `-`, `.` (SEP-986). */
export const TOOL_NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;
export const AGENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const slackUser = z.string().regex(SLACK_USER_RE, 'expected a Slack user id like U0123ABCD');
const slackChannel = z.string().regex(SLACK_CHANNEL_RE, 'expected a Slack channel id like C0123ABCD or G0123ABCD');

const duration = z.unknown().transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    const expected = 'a duration like 30s, 15m, 1h, 7d or a number of milliseconds';
    ctx.addIssue({
      code: 'custom',
      // Only a required duration (grants.max) can be missing: the optional ones are skipped when absent.
      message:
        value === undefined
          ? `required (expected ${expected})`
          : `expected ${expected}, got ${JSON.stringify(value) ?? String(value)}`,
    });
    return z.NEVER;
  }
  return ms;
});

const cron = z.string().superRefine((expr, ctx) => {
  if (validateCron(expr)) return;
  const detail = validateCronDetailed(expr)
    .errors.map((e) => e.message)
    .join('; ');
  ctx.addIssue({
    code: 'custom',
    message: `expected a cron expression like "0 9 1 * *", got ${JSON.stringify(expr)}${detail ? ` (${detail})` : ''}`,
  });
});

const isoDate = z.string().superRefine((s, ctx) => {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  const d = m ? new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]))) : undefined;
  // Round-tripping catches 2026-02-30, which Date would roll over to March.
  if (!d || d.toISOString().slice(0, 10) !== s) {
    ctx.addIssue({ code: 'custom', message: `expected a date as YYYY-MM-DD, got ${JSON.stringify(s)}` });
  }
});

const positiveInt = z.number().int().positive();

export const scopeSchema = z.enum(['read', 'write']);
export const consequenceSchema = z.enum(['reversible', 'irreversible', 'customer-facing']);

export const limitsSchema = z.strictObject({
  calls_per_minute: positiveInt.optional(),
  max_denials: positiveInt.optional(),
  denial_window: duration.optional(),
  max_rejections: positiveInt.optional(),
  max_call_duration: duration.optional(),
  auto_halt: z.boolean().optional(),
});

/** One argument rule; `when` is CEL, compiled in load.ts so errors carry the field's position. */
export const ruleSchema = z.strictObject({
  tool: z.string().min(1),
  when: z.string().min(1).optional(),
  // biome-ignore lint/suspicious/noThenProperty: the policy file's key, as the issue and README spell it; load.ts maps it to `effect`.
  then: z.enum(['allow', 'approve', 'deny']),
  reason: z.string().min(1).max(500).optional(),
  // `never`: a call this rule holds is always seen; an approver cannot grant it for a while.
  grant: z.literal('never').optional(),
});

/** The seed's sandbox line: the strict default (egress only to Warden and `network.allow`, empty here). */
export const SANDBOX_SEED = 'isolated, network egress = allowlist only';
/** A host, or `*.` and a domain for its subdomains, with an optional `:port`; no scheme, no path. */
export const SANDBOX_HOST_RE =
  /^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(?::\d{1,5})?$/;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const sandboxPath = z
  .string()
  .regex(/^(?:\/|~\/|~$)/, 'expected an absolute path or one under ~/')
  .refine((p) => !p.split('/').includes('..'), 'a sandbox path may not contain ".."');

/**
 * The structured form of `sandbox:`. Every list only ever widens what the
 * strict default allows by what it names, so a typo makes the sandbox
 * stricter, never looser (and strict keys make it an error anyway).
 */
export const sandboxBlockSchema = z.strictObject({
  network: z
    .strictObject({
      allow: z
        .array(z.string().regex(SANDBOX_HOST_RE, 'expected a host such as api.anthropic.com or *.github.com'))
        .optional(),
    })
    .optional(),
  filesystem: z
    .strictObject({
      read_deny: z.array(sandboxPath).optional(),
      write: z.array(sandboxPath).optional(),
    })
    .optional(),
  env: z.array(z.string().regex(ENV_NAME_RE, 'expected an environment variable name')).optional(),
  stop_grace: duration.optional(),
});

export const SANDBOX_EXPECTED = `expected "${SANDBOX_SEED}", "none" or a mapping with network, filesystem, env, stop_grace`;

/**
 * A string or the block. Not a z.union: with more than one problem inside the
 * block a union reports only "Invalid input" on `sandbox`, hiding which field.
 * Which strings are accepted is checked after parsing (load.ts).
 */
export const sandboxSchema = z.unknown().transform((value, ctx): string | z.output<typeof sandboxBlockSchema> => {
  if (typeof value === 'string') return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    ctx.addIssue({ code: 'custom', message: SANDBOX_EXPECTED });
    return z.NEVER;
  }
  const parsed = sandboxBlockSchema.safeParse(value, { reportInput: true });
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.addIssue({ ...issue } as Parameters<typeof ctx.addIssue>[0]);
  return z.NEVER;
});

/** One agent, in the seed's shape plus the full form's extras. */
export const agentFields = {
  agent: z.string().regex(AGENT_NAME_RE, 'expected an agent name of letters, digits, "_", "-" or "."'),
  sandbox: sandboxSchema.optional(),
  mcp_scopes: z.record(z.string(), z.array(scopeSchema)),
  approval_required: z.array(z.string().min(1)).optional(),
  rules: z.array(ruleSchema).optional(),
  // Time-boxed grants: an approver may say "yes for the next N minutes", up to `max`. Absent: approve once only.
  grants: z.strictObject({ max: duration }).optional(),
  // Warden audits every call whatever the file says; the field exists so the
  // seed loads, and anything else would be a promise Warden does not keep.
  audit: z
    .literal('all_tool_calls', { error: 'Warden always audits every tool call; expected all_tool_calls' })
    .optional(),
  kill_switch: z.string().optional(),
  owner: slackUser.optional(),
  channel: slackChannel.optional(),
  approvers: z.array(slackUser).optional(),
  review_by: isoDate.optional(),
  limits: limitsSchema.optional(),
  approval_timeout: duration.optional(),
  /**
   * How long a held call keeps the agent's request open before Warden answers
   * "not run yet, check back" (most MCP clients give up on a request at 60 s).
   * `never` holds the request open until the decision.
   */
  answer_within: z
    .union([z.literal('never'), duration], {
      // zod's own message for a union is only "Invalid input".
      error: 'expected never or a duration like 30s, 15m, 1h, 7d or a number of milliseconds',
    })
    .optional(),
  // What to do with a held call whose card hides values (redacted secrets): show it with a warning, or refuse it.
  on_redacted: z.enum(['hold_and_warn', 'refuse']).optional(),
  // Held calls waiting for a decision at once; further ones are refused (an approval storm must not bury the channel).
  max_pending: z.number().int().min(1).max(10_000).optional(),
};

export const agentSchema = z.strictObject(agentFields);

export const toolSchema = z.strictObject({
  scope: scopeSchema,
  consequence: consequenceSchema.optional(),
  description: z.string().optional(),
});

export const serverSchema = z.strictObject({
  command: z.string().min(1).optional(),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().min(1).optional(),
  url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  tools: z.record(z.string(), toolSchema).optional(),
  timeout_ms: positiveInt.optional(),
  max_result_bytes: positiveInt.optional(),
  /** A stdio server run in a sandbox: no network, writes only under its `cwd`. */
  sandbox: sandboxSchema.optional(),
});

export const controlSchema = z.strictObject({
  halters: z.array(slackUser).optional(),
  resumers: z.array(slackUser).optional(),
  auditors: z.array(slackUser).optional(),
  oncall_channel: slackChannel.optional(),
  compliance_channel: slackChannel.optional(),
  drill: z
    .strictObject({
      schedule: cron.optional(),
      canary_agent: z.string().min(1).optional(),
      overdue_after_days: positiveInt.optional(),
    })
    .optional(),
  checkpoint_schedule: cron.optional(),
  checkpoint_every_rows: positiveInt.optional(),
  review_reminder_schedule: cron.optional(),
});

/**
 * The whole file. The seed form writes one agent's fields at the top level;
 * the full form lists agents under `agents:`. Which one is present is checked
 * after parsing so both forms share one strict key set (and one typo check).
 */
export const policyFileSchema = z.strictObject({
  ...Object.fromEntries(Object.entries(agentFields).map(([k, v]) => [k, v.optional()])),
  servers: z.record(z.string(), serverSchema).optional(),
  agents: z.array(agentSchema).optional(),
  control: controlSchema.optional(),
} as {
  [K in keyof typeof agentFields]: z.ZodOptional<(typeof agentFields)[K]>;
} & {
  servers: z.ZodOptional<z.ZodRecord<z.ZodString, typeof serverSchema>>;
  agents: z.ZodOptional<z.ZodArray<typeof agentSchema>>;
  control: z.ZodOptional<typeof controlSchema>;
});

export type PolicyFile = z.output<typeof policyFileSchema>;
export type AgentBlock = z.output<typeof agentSchema>;
export type ServerBlock = z.output<typeof serverSchema>;
export type SandboxBlock = z.output<typeof sandboxBlockSchema>;

/** Every key the schema knows, for "did you mean" hints on a typo. */
export const KNOWN_KEYS: readonly string[] = [
  ...new Set([
    ...Object.keys(policyFileSchema.shape),
    ...Object.keys(limitsSchema.shape),
    ...Object.keys(toolSchema.shape),
    ...Object.keys(serverSchema.shape),
    ...Object.keys(controlSchema.shape),
    ...Object.keys(ruleSchema.shape),
    ...Object.keys(sandboxBlockSchema.shape),
    'allow',
    'read_deny',
    'write',
    'schedule',
    'canary_agent',
    'overdue_after_days',
    'max',
  ]),
];
