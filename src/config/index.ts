import { z } from 'zod';
import { WardenError } from '../errors.ts';

/**
 * Environment → typed config. Validated once at start-up; a bad value stops
 * Warden with a message that names the variable.
 */
const envSchema = z.object({
  WARDEN_DB: z.string().min(1).default('./data/warden.db'),
  WARDEN_POLICY: z.string().min(1).default('./examples/policy.yml'),
  WARDEN_HOST: z.string().min(1).default('127.0.0.1'),
  WARDEN_PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  /** Extra Host header values accepted by the gateway (comma separated). */
  WARDEN_ALLOWED_HOSTS: z.string().default(''),
  /** Extra Origin values accepted by the gateway (comma separated). */
  WARDEN_ALLOWED_ORIGINS: z.string().default(''),
  /** Ed25519 private key (PEM, or base64 of PKCS#8 DER) for signing audit checkpoints. */
  WARDEN_CHECKPOINT_KEY: z.string().optional(),
  /** File that each checkpoint is also appended to (one JSON line each): a witness for setups without Slack. */
  WARDEN_CHECKPOINT_WITNESS: z.string().optional(),
  /** fast: reads' fsync overlaps the upstream call, completions are fsynced ≤ 20 ms later; strict: every audit row fsynced first. */
  WARDEN_AUDIT_DURABILITY: z.enum(['fast', 'strict']).default('fast'),
  /** Gateway edge limits (see GatewayLimits); unset keeps the gateway's default. */
  WARDEN_MAX_CONNECTIONS: z.coerce.number().int().positive().optional(),
  WARDEN_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().positive().optional(),
  WARDEN_HEADERS_TIMEOUT_MS: z.coerce.number().int().positive().optional(),
  WARDEN_BODY_TIMEOUT_MS: z.coerce.number().int().positive().optional(),
  WARDEN_KEEP_ALIVE_TIMEOUT_MS: z.coerce.number().int().positive().optional(),
  /** Replicas sharing the database: how often each heartbeats, and how long without one before it is dead for the others. */
  WARDEN_HEARTBEAT_MS: z.coerce.number().int().min(100).default(2_000),
  WARDEN_REPLICA_LEASE_MS: z.coerce.number().int().min(500).default(10_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SLACK_BOT_TOKEN: z.string().optional(),
  SLACK_SIGNING_SECRET: z.string().optional(),
  SLACK_APP_TOKEN: z.string().optional(),
  /** Port of Bolt's HTTP receiver when Socket Mode is off. */
  SLACK_PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** Override of Slack's Web API base URL (tests point it at a local server). */
  SLACK_API_URL: z.string().url().optional(),
});

export type Env = z.infer<typeof envSchema>;

export interface Config {
  dbPath: string;
  policyPath: string;
  host: string;
  port: number;
  allowedHosts: string[];
  allowedOrigins: string[];
  checkpointKey?: string | undefined;
  checkpointWitness?: string | undefined;
  auditDurability: Env['WARDEN_AUDIT_DURABILITY'];
  logLevel: Env['LOG_LEVEL'];
  /** The replica lease (control/replicas.ts). */
  replicas: { heartbeatMs: number; leaseMs: number };
  /** Only the limits set in the environment; the gateway fills in the rest. */
  gatewayLimits: GatewayLimits;
  slack?:
    | {
        botToken: string;
        signingSecret: string;
        appToken?: string | undefined;
        port: number;
        apiUrl?: string | undefined;
      }
    | undefined;
}

export interface GatewayLimits {
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
}

const list = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/**
 * `slack: false` for commands that only read Slack with the bot token (see
 * slackReaderConfig): they must not need the receiver's signing secret.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, options: { slack?: boolean } = {}): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new WardenError('CONFIG_INVALID', `invalid environment: ${problems}`);
  }
  const e = parsed.data;
  // A lease shorter than two beats would make a live replica dead to its peers
  // after one late heartbeat, and a survivor would then abandon its approvals.
  if (e.WARDEN_REPLICA_LEASE_MS < 2 * e.WARDEN_HEARTBEAT_MS) {
    throw new WardenError(
      'CONFIG_INVALID',
      `WARDEN_REPLICA_LEASE_MS (${e.WARDEN_REPLICA_LEASE_MS}) must be at least twice WARDEN_HEARTBEAT_MS (${e.WARDEN_HEARTBEAT_MS})`,
    );
  }
  let slack: Config['slack'];
  if (options.slack !== false && (e.SLACK_BOT_TOKEN || e.SLACK_SIGNING_SECRET || e.SLACK_APP_TOKEN)) {
    if (!e.SLACK_BOT_TOKEN)
      throw new WardenError('CONFIG_INVALID', 'SLACK_BOT_TOKEN is required when Slack is configured');
    if (!e.SLACK_APP_TOKEN && !e.SLACK_SIGNING_SECRET) {
      throw new WardenError(
        'CONFIG_INVALID',
        'SLACK_SIGNING_SECRET is required for the HTTP receiver (or set SLACK_APP_TOKEN for Socket Mode)',
      );
    }
    slack = {
      botToken: e.SLACK_BOT_TOKEN,
      signingSecret: e.SLACK_SIGNING_SECRET ?? '',
      appToken: e.SLACK_APP_TOKEN,
      port: e.SLACK_PORT,
      apiUrl: e.SLACK_API_URL,
    };
  }
  return {
    dbPath: e.WARDEN_DB,
    policyPath: e.WARDEN_POLICY,
    host: e.WARDEN_HOST,
    port: e.WARDEN_PORT,
    allowedHosts: list(e.WARDEN_ALLOWED_HOSTS),
    allowedOrigins: list(e.WARDEN_ALLOWED_ORIGINS),
    checkpointKey: e.WARDEN_CHECKPOINT_KEY,
    // Empty is unset, as with the key: a blanked variable turns the witness off rather than failing start-up.
    checkpointWitness: e.WARDEN_CHECKPOINT_WITNESS || undefined,
    auditDurability: e.WARDEN_AUDIT_DURABILITY,
    logLevel: e.LOG_LEVEL,
    replicas: { heartbeatMs: e.WARDEN_HEARTBEAT_MS, leaseMs: e.WARDEN_REPLICA_LEASE_MS },
    gatewayLimits: Object.fromEntries(
      Object.entries({
        maxConnections: e.WARDEN_MAX_CONNECTIONS,
        maxConnectionsPerAddress: e.WARDEN_MAX_CONNECTIONS_PER_ADDRESS,
        headersTimeoutMs: e.WARDEN_HEADERS_TIMEOUT_MS,
        bodyTimeoutMs: e.WARDEN_BODY_TIMEOUT_MS,
        keepAliveTimeoutMs: e.WARDEN_KEEP_ALIVE_TIMEOUT_MS,
      }).filter(([, v]) => v !== undefined),
    ),
    slack,
  };
}

const slackReaderSchema = z.object({
  SLACK_BOT_TOKEN: z.string().min(1, 'is required to read the compliance channel'),
  SLACK_API_URL: z.string().url().optional(),
});

/**
 * What a CLI command needs to read from Slack with the bot token: no signing
 * secret or app token, since it receives nothing from Slack.
 */
export function slackReaderConfig(env: NodeJS.ProcessEnv = process.env): {
  botToken: string;
  apiUrl?: string | undefined;
} {
  const parsed = slackReaderSchema.safeParse({
    SLACK_BOT_TOKEN: env.SLACK_BOT_TOKEN ?? '',
    SLACK_API_URL: env.SLACK_API_URL || undefined,
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ');
    throw new WardenError('CONFIG_INVALID', `invalid environment: ${problems}`);
  }
  return { botToken: parsed.data.SLACK_BOT_TOKEN, apiUrl: parsed.data.SLACK_API_URL };
}
