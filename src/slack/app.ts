import type { Server } from 'node:http';
import {
  defaultProcessEventErrorHandler,
  App,
  HTTPModuleFunctions,
  HTTPReceiver,
  SocketModeReceiver,
  type AnyMiddlewareArgs,
  type Middleware,
} from '@slack/bolt';
import { z } from 'zod';
import { systemClock, type Clock } from '../clock.ts';
import { describeError, isWardenError, ReplayedRequestError, WardenError } from '../errors.ts';
import type { Db } from '../store/db.ts';
import { policyGetter, type PolicySource } from '../policy/source.ts';
import { boltLogger } from './bolt-logger.ts';
import { slackClientOptions, type WebClient, type WebClientOptions } from './client.ts';
import type { SlackDeps } from './deps.ts';
import { registerListeners } from './listeners/index.ts';
import { ReplayGuard } from './replay-guard.ts';

const configSchema = z.object({
  botToken: z.string().min(1, 'SLACK_BOT_TOKEN is required'),
  signingSecret: z.string(),
  appToken: z.string().min(1).optional(),
  port: z.number().int().min(0).max(65535),
  apiUrl: z.string().url('SLACK_API_URL must be a URL').optional(),
});

export type SlackAppConfig = z.input<typeof configSchema>;

export interface CreateSlackAppOptions extends Omit<SlackDeps, 'clock' | 'policy' | 'db'> {
  config: SlackAppConfig;
  policy: PolicySource;
  clock?: Clock | undefined;
  /** Holds the replay guard's seen signatures (shared by every process on it), and serves read-side commands. */
  db: Db;
  /** Interface the HTTP receiver binds to (default: all). Ignored in Socket Mode. */
  host?: string | undefined;
  /** Extra Web API client options (e.g. a shorter timeout in tests). */
  clientOptions?: Partial<WebClientOptions> | undefined;
  /** What a peer may hold of the HTTP receiver (default SLACK_HTTP_LIMITS). Ignored in Socket Mode. */
  httpLimits?: Partial<SlackHttpLimits> | undefined;
}

/**
 * The HTTP receiver faces the internet (Slack calls it), and a peer needs no
 * signature to open a socket: Bolt's server is Node's default one, which
 * holds any number of connections and waits 60 s for headers and 5 min for
 * a body. These bound what an unsigned peer can hold open. Slack sends one
 * small request and reads the answer at once, so none of them touches it.
 */
export interface SlackHttpLimits {
  /** Connections at once; past it Node drops new ones until some close. */
  maxConnections: number;
  /** All request headers within this. */
  headersTimeoutMs: number;
  /** The whole request, headers and body, within this. */
  requestTimeoutMs: number;
  /** A kept-alive connection with no request is closed after this. */
  keepAliveTimeoutMs: number;
  /** How often Node checks the two request timeouts. */
  timeoutCheckEveryMs: number;
}

const DROP_LOG_EVERY_MS = 60_000;

export const SLACK_HTTP_LIMITS: SlackHttpLimits = {
  maxConnections: 256,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  timeoutCheckEveryMs: 1_000,
};

const httpLimitsSchema = z
  .object({
    maxConnections: z.number().int().positive(),
    headersTimeoutMs: z.number().int().positive(),
    requestTimeoutMs: z.number().int().positive(),
    keepAliveTimeoutMs: z.number().int().positive(),
    timeoutCheckEveryMs: z.number().int().positive(),
  })
  .refine((l) => l.requestTimeoutMs >= l.headersTimeoutMs, {
    message: 'requestTimeoutMs must be at least headersTimeoutMs (it counts from the same start)',
    path: ['requestTimeoutMs'],
  });

export interface SlackApp {
  app: App;
  /** The bot's Web API client (same options as the listeners' client): use it for SlackNotifier and SlackAlertSink. */
  client: WebClient;
  mode: 'socket' | 'http';
  /** Starts receiving. In HTTP mode resolves with the bound port (useful with port 0). */
  start(): Promise<{ port?: number | undefined }>;
  stop(): Promise<void>;
}

/**
 * The Bolt app: Socket Mode when an app token is configured, otherwise
 * Bolt's HTTPReceiver, which verifies the v0 signature and rejects stale
 * timestamps; a replay guard in front of every listener rejects a signed
 * request seen before. The Web API client's base URL comes from config.apiUrl.
 */
export function createSlackApp(opts: CreateSlackAppOptions): SlackApp {
  const parsed = configSchema.safeParse(opts.config);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `slack.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new WardenError('CONFIG_INVALID', `invalid Slack configuration: ${problems}`);
  }
  const config = parsed.data;
  const limitsParsed = httpLimitsSchema.safeParse({ ...SLACK_HTTP_LIMITS, ...opts.httpLimits });
  if (!limitsParsed.success) {
    const problems = limitsParsed.error.issues.map((i) => `httpLimits.${i.path.join('.')}: ${i.message}`).join('; ');
    throw new WardenError('CONFIG_INVALID', `invalid Slack HTTP limits: ${problems}`);
  }
  const limits = limitsParsed.data;
  const socketMode = config.appToken !== undefined;
  if (!socketMode && config.signingSecret.length === 0) {
    throw new WardenError(
      'CONFIG_INVALID',
      'SLACK_SIGNING_SECRET is required for the HTTP receiver (or set SLACK_APP_TOKEN for Socket Mode)',
    );
  }
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger;
  const blog = boltLogger(logger);
  const clientOptions = slackClientOptions(config, logger, opts.clientOptions);
  const guard = new ReplayGuard(opts.db, clock);

  const receiver = socketMode
    ? new SocketModeReceiver({
        appToken: config.appToken!,
        logger: blog,
        // The receiver's SocketModeClient calls apps.connections.open with its
        // own Web API client, built from installerOptions.clientOptions, not
        // the app's clientOptions: without this it would ignore SLACK_API_URL.
        ...(clientOptions.slackApiUrl
          ? { installerOptions: { clientOptions: { slackApiUrl: clientOptions.slackApiUrl } } }
          : {}),
        customPropertiesExtractor: (args: { envelope_id?: unknown }) => ({
          slackEnvelopeId: typeof args.envelope_id === 'string' ? args.envelope_id : undefined,
        }),
        // A redelivered envelope is acked (so Slack stops sending it) and not handled again.
        processEventErrorHandler: async (args) =>
          isWardenError(args.error, 'SLACK_REPLAYED_REQUEST') || defaultProcessEventErrorHandler(args),
      })
    : new HTTPReceiver({
        signingSecret: config.signingSecret,
        port: config.port,
        logger: blog,
        signatureVerification: true,
        // ack() sends the HTTP response at once; work continues after it.
        processBeforeResponse: false,
        // Runs only after Bolt has verified the signature and freshness.
        customPropertiesExtractor: (req) => ({
          slackSignature: HTTPModuleFunctions.getHeader(req, 'x-slack-signature'),
          slackRequestTimestamp: Number(HTTPModuleFunctions.getHeader(req, 'x-slack-request-timestamp')),
        }),
        processEventErrorHandler: async (args) => {
          if (isWardenError(args.error, 'SLACK_REPLAYED_REQUEST')) {
            if (!args.response.headersSent) {
              args.response.writeHead(401);
              args.response.end();
            }
            return true;
          }
          return HTTPModuleFunctions.defaultProcessEventErrorHandler(args);
        },
      });

  const app = new App({
    token: config.botToken,
    receiver,
    logger: blog,
    clientOptions,
    // Bolt would otherwise call auth.test from the constructor and leave a
    // rejected promise nobody awaits when Slack is unreachable; start() runs
    // it instead and reports a clear error.
    deferInitialization: true,
  });
  app.error(async (err) => {
    if (!isWardenError(err, 'SLACK_REPLAYED_REQUEST')) {
      logger.error({ err: err.message, code: (err as { code?: string }).code }, 'Slack listener failed');
    }
    throw err;
  });

  {
    const replayGuard: Middleware<AnyMiddlewareArgs> = async ({ context, next }) => {
      const refusal = socketMode
        ? guard.checkEnvelope(context.slackEnvelopeId as string | undefined)
        : guard.check(context.slackSignature as string | undefined, context.slackRequestTimestamp as number);
      if (refusal !== null) {
        logger.warn({ reason: refusal }, 'Slack request refused');
        throw new ReplayedRequestError(refusal);
      }
      await next();
    };
    app.use(replayGuard);
  }

  const policy = policyGetter(opts.policy);
  const deps: SlackDeps = {
    approvals: opts.approvals,
    policy,
    audit: opts.audit,
    logger,
    clock,
    auditReader: opts.auditReader,
    control: opts.control,
  };
  registerListeners(app, deps);

  let started = false;
  return {
    app,
    client: app.client,
    mode: socketMode ? 'socket' : 'http',
    async start() {
      try {
        await app.init();
      } catch (err) {
        throw new WardenError(
          'SLACK_UNAVAILABLE',
          `Slack rejected or did not answer auth.test for the bot token: ${describeError(err)}`,
          { cause: err },
        );
      }
      if (socketMode) {
        await app.start();
        started = true;
        return {};
      }
      const server = (await app.start(
        { port: config.port, ...(opts.host ? { host: opts.host } : {}) },
        {
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          connectionsCheckingInterval: limits.timeoutCheckEveryMs,
        },
      )) as Server;
      server.maxConnections = limits.maxConnections;
      // Slack's own requests are dropped too while the receiver is full: say so, once a minute at most.
      let lastDropLog = Number.NEGATIVE_INFINITY;
      server.on('drop', (data?: { remoteAddress?: string }) => {
        const now = clock.now();
        if (now - lastDropLog < DROP_LOG_EVERY_MS) return;
        lastDropLog = now;
        logger.warn(
          { limit: limits.maxConnections, remote: data?.remoteAddress },
          'Slack HTTP receiver full: dropping new connections (Slack retries; a proxy with per-address limits in front helps)',
        );
      });
      started = true;
      const addr = server.address();
      return { port: typeof addr === 'object' && addr ? addr.port : config.port };
    },
    async stop() {
      if (!started) return;
      started = false;
      if (receiver instanceof SocketModeReceiver) {
        // receiver.stop() starts the close handshake without awaiting it;
        // wait for the client's 'disconnected' so nothing (socket, ping
        // timer) outlives stop(). disconnect() also cancels any pending
        // reconnect, so the client does not come back.
        const disconnected = new Promise<void>((resolve) => receiver.client.once('disconnected', () => resolve()));
        await app.stop();
        await disconnected;
        return;
      }
      await app.stop();
    },
  };
}
