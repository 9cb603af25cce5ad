/**
 * A local Slack Web API for tests: a real node:http server on 127.0.0.1:0
 * that speaks the methods Warden uses, records every call, enforces Block Kit
 * limits the way Slack does, and can simulate Slack being down or
 * rate-limiting.
 *
 * Usage (any Slack-facing test, e.g. the /agents and /audit commands):
 *
 *   const slack = await startSlackApiServer({ botToken: 'xoxb-test' });
 *   const app = createSlackApp({ config: { botToken: 'xoxb-test', signingSecret, port: 0, apiUrl: slack.apiUrl }, ... });
 *   ... send signed requests (test/support/slack-sign.ts) ...
 *   const post = await slack.waitForCall('chat.postMessage', (c) => c.args.channel === 'C1');
 *   expect(post.args.blocks).toHaveLength(6);           // args are parsed: blocks/view/files are objects
 *   slack.message('C1', post.response.ts)                // latest text/blocks after chat.update
 *   slack.fail({ mode: 'ratelimited', retryAfter: 2, times: 1, methods: ['chat.postMessage'] });
 *   slack.fail({ mode: 'down' });                        // connection dropped, no response
 *   slack.clearFailures();
 *   await slack.close();                                 // in afterAll
 *
 * Socket Mode: `apps.connections.open` with an app-level token (option
 * `appToken`, default 'xapp-test') answers a one-time ws:// URL on this same
 * port; `slack.socket` pushes envelopes and records acks
 * (test/support/slack-socket-server.ts).
 *
 * Implemented methods: api.test, auth.test, apps.connections.open, chat.postMessage, chat.update,
 * chat.delete, chat.postEphemeral, views.open, views.update, views.publish,
 * conversations.info, conversations.history (top-level messages recorded by
 * chat.postMessage or `postAsUser`, newest first, cursor-paged), conversations.open, users.info, files.getUploadURLExternal, the upload URL
 * it hands out, files.completeUploadExternal; plus response_url endpoints
 * (`slack.responseUrl()` makes one; posts to it are recorded as method
 * 'response_url'). Unknown methods answer {ok:false, error:'unknown_method'}.
 *
 * conversations.open with `users=U1` answers the DM id `dmChannelId('U1')`
 * (`DU1`: deterministic, so tests can expect it; the same id on every open,
 * `already_open` after the first); several users get a G… group DM. Opened
 * DMs exist for later calls (postMessage, files.completeUploadExternal) even
 * when `channels` restricts the others.
 *
 * Limits enforced (answer {ok:false, error:'invalid_blocks'} with the reasons
 * in response_metadata.messages): 50 blocks per message, 100 per view;
 * section text 3000, section fields 10 × 2000; header 150 (plain_text);
 * context 10 elements; actions 25 elements; button text 75 (plain_text),
 * value 2000, url 3000; action_id / block_id / callback_id 255; modal title,
 * submit and close 24 (plain_text); private_metadata 3000; input label 2000;
 * plain_text_input max_length ≤ 3000; placeholder 150.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parse as parseQuery } from 'node:querystring';
import { attachSocketModeServer, type SocketModeAttachment, type SocketModeServer } from './slack-socket-server.ts';

export interface RecordedCall {
  method: string;
  /** Parsed arguments (form or JSON); JSON-valued fields (blocks, view, files…) are objects. */
  args: Record<string, any>;
  /** The Authorization header as sent. */
  authorization: string | undefined;
  /** The token used (Authorization bearer, or a `token` argument). */
  token: string | undefined;
  contentType: string | undefined;
  at: number;
  /** What the server answered (undefined when it dropped the connection). */
  response: Record<string, any> | undefined;
  httpStatus: number | undefined;
}

export interface FailureSpec {
  /** down: drop the connection; ratelimited: 429 + Retry-After; http_error: status with an HTML body; error: ok:false with `error`. */
  mode: 'down' | 'ratelimited' | 'http_error' | 'error';
  /** Only these methods (default: every method). */
  methods?: string[];
  /** How many calls fail before the server behaves again (default: until cleared). */
  times?: number;
  /** Seconds, for ratelimited (default 1). */
  retryAfter?: number;
  /** For http_error (default 503). */
  status?: number;
  /** For error (default 'internal_error'). */
  error?: string;
}

export interface StoredMessage {
  channel: string;
  ts: string;
  text?: string | undefined;
  blocks?: any[] | undefined;
  threadTs?: string | undefined;
  updates: number;
  /** Who posted it: the bot for chat.postMessage (as Slack records a bot token's messages). */
  user?: string | undefined;
  botId?: string | undefined;
}

export interface SlackApiServerOptions {
  /** Accepted bot tokens (default ['xoxb-test']); other tokens get invalid_auth. */
  botToken?: string | string[];
  /** Accepted app-level tokens for apps.connections.open (default ['xapp-test']). */
  appToken?: string | string[];
  teamId?: string;
  botUserId?: string;
  /** When set, only these channels exist (others: channel_not_found). */
  channels?: string[];
  /** users.info answers: id → profile fields. Unknown ids: user_not_found. */
  users?: Record<string, { name?: string; real_name?: string; tz?: string; is_bot?: boolean }>;
  /** Clock for `RecordedCall.at` (default Date.now); pass a test's fake clock to see when, in its time, calls arrived. */
  now?: () => number;
  /**
   * Slack's chat.postMessage limit, about one message a second per channel (threads included):
   * a post sooner than this after the channel's last accepted one gets 429 with Retry-After
   * (whole seconds, as Slack sends it). Off unless set; times come from `now`.
   */
  postIntervalPerChannelMs?: number;
}

export interface SlackApiServer {
  /** Base for `slackApiUrl` / SLACK_API_URL, ending in `/api/`. */
  apiUrl: string;
  url: string;
  calls: RecordedCall[];
  callsOf(method: string): RecordedCall[];
  waitForCall(method: string, predicate?: (c: RecordedCall) => boolean, timeoutMs?: number): Promise<RecordedCall>;
  /** A message posted by a person (not the bot), e.g. look-alike text in the compliance channel. */
  postAsUser(channel: string, user: string, text: string): StoredMessage;
  /** The message as Slack would show it now (after updates). */
  message(channel: string, ts: string): StoredMessage | undefined;
  messages(): StoredMessage[];
  uploads: Map<
    string,
    { filename: string; length: number; bytes: Buffer; completed: boolean; channel?: string; title?: string }
  >;
  responseUrl(): string;
  /** Socket Mode: the WebSocket side of apps.connections.open. */
  socket: SocketModeServer;
  fail(spec: FailureSpec): void;
  clearFailures(): void;
  reset(): void;
  close(): Promise<void>;
}

/** The DM channel the local server opens with one user (conversations.open users=<id>). */
export function dmChannelId(user: string): string {
  return `D${user}`;
}

/** bot_id of the bot token's messages and of auth.test. */
const BOT_ID = 'BWARDEN';

const JSON_FIELDS = new Set(['blocks', 'attachments', 'view', 'files', 'metadata']);

// ---------- Block Kit validation ----------

type TextObj = { type?: string; text?: unknown } | undefined;

function textLen(t: TextObj): number {
  return typeof t?.text === 'string' ? t.text.length : 0;
}

function checkText(errors: string[], where: string, t: TextObj, max: number, plainOnly = false): void {
  if (t === undefined) return;
  if (typeof t !== 'object' || typeof t.text !== 'string') {
    errors.push(`${where}: must be a text object`);
    return;
  }
  if (t.type !== 'plain_text' && t.type !== 'mrkdwn') errors.push(`${where}: unknown text type ${String(t.type)}`);
  if (plainOnly && t.type !== 'plain_text') errors.push(`${where}: must be plain_text`);
  if (t.text.length === 0) errors.push(`${where}: must not be empty`);
  if (textLen(t) > max) errors.push(`${where}: must be at most ${max} characters (got ${textLen(t)})`);
}

function checkId(errors: string[], where: string, id: unknown): void {
  if (id === undefined) return;
  if (typeof id !== 'string' || id.length === 0 || id.length > 255) errors.push(`${where}: must be 1-255 characters`);
}

function checkElement(errors: string[], where: string, el: any): void {
  if (!el || typeof el !== 'object') {
    errors.push(`${where}: must be an element`);
    return;
  }
  checkId(errors, `${where}.action_id`, el.action_id);
  if (el.type === 'button') {
    checkText(errors, `${where}.text`, el.text, 75, true);
    if (el.value !== undefined && (typeof el.value !== 'string' || el.value.length > 2000))
      errors.push(`${where}.value: must be at most 2000 characters`);
    if (el.url !== undefined && (typeof el.url !== 'string' || el.url.length > 3000))
      errors.push(`${where}.url: must be at most 3000 characters`);
    if (el.style !== undefined && el.style !== 'primary' && el.style !== 'danger')
      errors.push(`${where}.style: must be primary or danger`);
  }
  if (el.type === 'plain_text_input') {
    if (el.max_length !== undefined && (typeof el.max_length !== 'number' || el.max_length > 3000))
      errors.push(`${where}.max_length: must be at most 3000`);
  }
  if (el.placeholder !== undefined) checkText(errors, `${where}.placeholder`, el.placeholder, 150, true);
}

export function validateBlocks(blocks: unknown, surface: 'message' | 'modal'): string[] {
  const errors: string[] = [];
  if (!Array.isArray(blocks)) return ['blocks: must be an array'];
  const max = surface === 'message' ? 50 : 100;
  if (blocks.length > max) errors.push(`blocks: must contain at most ${max} blocks (got ${blocks.length})`);
  blocks.forEach((b: any, i: number) => {
    const where = `blocks[${i}]`;
    if (!b || typeof b !== 'object' || typeof b.type !== 'string') {
      errors.push(`${where}: must have a type`);
      return;
    }
    checkId(errors, `${where}.block_id`, b.block_id);
    switch (b.type) {
      case 'section':
        if (b.text === undefined && b.fields === undefined) errors.push(`${where}: needs text or fields`);
        checkText(errors, `${where}.text`, b.text, 3000);
        if (b.fields !== undefined) {
          if (!Array.isArray(b.fields) || b.fields.length > 10) errors.push(`${where}.fields: at most 10 items`);
          else
            for (const [j, f] of (b.fields as TextObj[]).entries()) checkText(errors, `${where}.fields[${j}]`, f, 2000);
        }
        if (b.accessory !== undefined) checkElement(errors, `${where}.accessory`, b.accessory);
        break;
      case 'header':
        checkText(errors, `${where}.text`, b.text, 150, true);
        break;
      case 'context':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 10)
          errors.push(`${where}.elements: 1-10 items`);
        break;
      case 'actions':
        if (!Array.isArray(b.elements) || b.elements.length === 0 || b.elements.length > 25)
          errors.push(`${where}.elements: 1-25 items`);
        else for (const [j, el] of (b.elements as any[]).entries()) checkElement(errors, `${where}.elements[${j}]`, el);
        break;
      case 'input':
        checkText(errors, `${where}.label`, b.label, 2000, true);
        if (b.hint !== undefined) checkText(errors, `${where}.hint`, b.hint, 2000, true);
        checkElement(errors, `${where}.element`, b.element);
        if (surface === 'message') errors.push(`${where}: input blocks are not allowed in messages`);
        break;
      case 'divider':
      case 'image':
      case 'rich_text':
      case 'markdown':
        break;
      default:
        errors.push(`${where}: unsupported block type ${b.type}`);
    }
  });
  return errors;
}

export function validateView(view: any): string[] {
  const errors: string[] = [];
  if (!view || typeof view !== 'object') return ['view: must be an object'];
  if (view.type !== 'modal' && view.type !== 'home') errors.push('view.type: must be modal or home');
  if (view.type === 'modal') {
    checkText(errors, 'view.title', view.title, 24, true);
    if (view.title === undefined) errors.push('view.title: required');
  }
  if (view.submit !== undefined) checkText(errors, 'view.submit', view.submit, 24, true);
  if (view.close !== undefined) checkText(errors, 'view.close', view.close, 24, true);
  if (
    view.private_metadata !== undefined &&
    (typeof view.private_metadata !== 'string' || view.private_metadata.length > 3000)
  ) {
    errors.push('view.private_metadata: must be at most 3000 characters');
  }
  checkId(errors, 'view.callback_id', view.callback_id);
  errors.push(...validateBlocks(view.blocks, 'modal').map((e) => `view.${e}`));
  return errors;
}

// ---------- server ----------

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseArgs(raw: Buffer, contentType: string | undefined): Record<string, any> {
  const text = raw.toString('utf8');
  if (contentType?.startsWith('application/json')) return text ? (JSON.parse(text) as Record<string, any>) : {};
  const out: Record<string, any> = {};
  for (const [k, v] of Object.entries(parseQuery(text))) {
    const value = Array.isArray(v) ? v[v.length - 1] : v;
    if (typeof value === 'string' && JSON_FIELDS.has(k)) {
      try {
        out[k] = JSON.parse(value);
        continue;
      } catch {
        // keep the raw string: the method answers invalid_arguments
      }
    }
    out[k] = value;
  }
  return out;
}

export async function startSlackApiServer(options: SlackApiServerOptions = {}): Promise<SlackApiServer> {
  const tokens = new Set(Array.isArray(options.botToken) ? options.botToken : [options.botToken ?? 'xoxb-test']);
  const appTokens = new Set(Array.isArray(options.appToken) ? options.appToken : [options.appToken ?? 'xapp-test']);
  // Assigned once the http server exists (the WebSocket shares its port).
  let socket: SocketModeAttachment | undefined;
  const teamId = options.teamId ?? 'T0WARDEN';
  const botUserId = options.botUserId ?? 'UBOTWARDEN';
  const channels = options.channels ? new Set(options.channels) : undefined;
  const users = options.users ?? {};
  const now = options.now ?? Date.now;
  const calls: RecordedCall[] = [];
  const failures: FailureSpec[] = [];
  const store = new Map<string, StoredMessage>();
  const lastPostAt = new Map<string, number>();
  const uploads: SlackApiServer['uploads'] = new Map();
  let seq = 0;
  let base = '';

  const nextTs = () => {
    seq += 1;
    return `${Math.floor(Date.now() / 1000)}.${String(seq).padStart(6, '0')}`;
  };
  const opened = new Set<string>();
  const channelExists = (c: unknown) =>
    typeof c === 'string' && c.length > 0 && (!channels || channels.has(c) || opened.has(c));
  const invalidBlocks = (errors: string[]) => ({
    ok: false,
    error: 'invalid_blocks',
    errors,
    response_metadata: { messages: errors.map((e) => `[ERROR] ${e}`) },
  });

  function takeFailure(method: string): FailureSpec | undefined {
    const i = failures.findIndex((f) => !f.methods || f.methods.includes(method));
    if (i === -1) return undefined;
    const f = failures[i]!;
    if (f.times !== undefined) {
      f.times -= 1;
      if (f.times <= 0) failures.splice(i, 1);
    }
    return f;
  }

  function handle(method: string, args: Record<string, any>, token: string | undefined): Record<string, any> {
    if (method === 'api.test') return { ok: true, args };
    if (method === 'apps.connections.open') {
      // Slack: only an app-level token may open a Socket Mode connection.
      if (token && tokens.has(token)) return { ok: false, error: 'not_allowed_token_type' };
      if (!token || !appTokens.has(token)) return { ok: false, error: token ? 'invalid_auth' : 'not_authed' };
      return { ok: true, url: socket!.openConnectionUrl() };
    }
    if (!token || !tokens.has(token)) return { ok: false, error: token ? 'invalid_auth' : 'not_authed' };
    switch (method) {
      case 'auth.test':
        return {
          ok: true,
          url: 'https://warden-test.slack.com/',
          team: 'Warden Test',
          user: 'warden',
          team_id: teamId,
          user_id: botUserId,
          bot_id: BOT_ID,
        };
      case 'chat.postMessage': {
        if (!channelExists(args.channel)) return { ok: false, error: 'channel_not_found' };
        if (!args.text && !args.blocks && !args.attachments) return { ok: false, error: 'no_text' };
        if (args.blocks !== undefined) {
          const errors = validateBlocks(args.blocks, 'message');
          if (errors.length) return invalidBlocks(errors);
        }
        if (args.thread_ts !== undefined && !store.has(`${args.channel}:${args.thread_ts}`))
          return { ok: false, error: 'thread_not_found' };
        const ts = nextTs();
        const m: StoredMessage = {
          channel: args.channel,
          ts,
          text: args.text,
          blocks: args.blocks,
          threadTs: args.thread_ts,
          updates: 0,
          user: botUserId,
          botId: BOT_ID,
        };
        store.set(`${args.channel}:${ts}`, m);
        return {
          ok: true,
          channel: args.channel,
          ts,
          message: { type: 'message', text: args.text, blocks: args.blocks, ts, thread_ts: args.thread_ts },
        };
      }
      case 'chat.update': {
        const m = store.get(`${args.channel}:${args.ts}`);
        if (!m) return { ok: false, error: 'message_not_found' };
        if (args.blocks !== undefined) {
          const errors = validateBlocks(args.blocks, 'message');
          if (errors.length) return invalidBlocks(errors);
        }
        m.text = args.text ?? m.text;
        m.blocks = args.blocks ?? m.blocks;
        m.updates += 1;
        return { ok: true, channel: args.channel, ts: args.ts, text: m.text };
      }
      case 'chat.delete': {
        if (!store.delete(`${args.channel}:${args.ts}`)) return { ok: false, error: 'message_not_found' };
        return { ok: true, channel: args.channel, ts: args.ts };
      }
      case 'chat.postEphemeral': {
        if (!channelExists(args.channel)) return { ok: false, error: 'channel_not_found' };
        if (typeof args.user !== 'string' || !args.user) return { ok: false, error: 'user_not_found' };
        if (!args.text && !args.blocks) return { ok: false, error: 'no_text' };
        if (args.blocks !== undefined) {
          const errors = validateBlocks(args.blocks, 'message');
          if (errors.length) return invalidBlocks(errors);
        }
        return { ok: true, message_ts: nextTs() };
      }
      case 'views.open':
      case 'views.update':
      case 'views.publish': {
        if (method === 'views.open' && !args.trigger_id) return { ok: false, error: 'invalid_trigger_id' };
        const errors = validateView(args.view);
        if (errors.length) return invalidBlocks(errors);
        return { ok: true, view: { id: `V${String(++seq).padStart(8, '0')}`, team_id: teamId, ...args.view } };
      }
      case 'conversations.info':
        if (!channelExists(args.channel)) return { ok: false, error: 'channel_not_found' };
        return {
          ok: true,
          channel: {
            id: args.channel,
            name: `channel-${String(args.channel).toLowerCase()}`,
            is_channel: true,
            is_member: true,
          },
        };
      case 'conversations.history': {
        // Top-level messages, newest first, paged by an opaque cursor (here: an offset), as Slack does.
        if (!channelExists(args.channel)) return { ok: false, error: 'channel_not_found' };
        const limit = Math.min(Math.max(Number(args.limit ?? 100) || 100, 1), 999);
        const offset = args.cursor ? Number(Buffer.from(String(args.cursor), 'base64').toString('utf8')) : 0;
        if (!Number.isInteger(offset) || offset < 0) return { ok: false, error: 'invalid_cursor' };
        const all = [...store.values()]
          .filter((m) => m.channel === args.channel && m.threadTs === undefined)
          .sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0));
        const page = all.slice(offset, offset + limit);
        const more = offset + limit < all.length;
        return {
          ok: true,
          messages: page.map((m) => ({
            type: 'message',
            ts: m.ts,
            text: m.text,
            ...(m.blocks ? { blocks: m.blocks } : {}),
            ...(m.user ? { user: m.user } : {}),
            ...(m.botId ? { bot_id: m.botId } : {}),
          })),
          has_more: more,
          response_metadata: { next_cursor: more ? Buffer.from(String(offset + limit)).toString('base64') : '' },
        };
      }
      case 'conversations.open': {
        // Slack: `users` (comma-separated ids) opens or finds a DM; `channel` resumes one already opened.
        if (typeof args.channel === 'string' && args.channel) {
          if (!opened.has(args.channel)) return { ok: false, error: 'channel_not_found' };
          return { ok: true, no_op: true, already_open: true, channel: { id: args.channel } };
        }
        const ids =
          typeof args.users === 'string'
            ? args.users
                .split(',')
                .map((u) => u.trim())
                .filter(Boolean)
            : [];
        if (ids.length === 0) return { ok: false, error: 'users_list_not_supplied' };
        if (ids.length > 8) return { ok: false, error: 'too_many_users' };
        for (const id of ids) {
          if (!/^[UW][A-Z0-9]{2,}$/.test(id) || (options.users && !users[id]))
            return { ok: false, error: 'user_not_found' };
        }
        const sorted = [...new Set(ids)].sort();
        const id = sorted.length === 1 ? dmChannelId(sorted[0]!) : `G${sorted.join('')}`;
        const already = opened.has(id);
        opened.add(id);
        return { ok: true, ...(already ? { no_op: true, already_open: true } : {}), channel: { id } };
      }
      case 'users.info': {
        const u = users[args.user as string];
        if (!u) return { ok: false, error: 'user_not_found' };
        return {
          ok: true,
          user: {
            id: args.user,
            team_id: teamId,
            name: u.name ?? args.user,
            real_name: u.real_name ?? u.name ?? args.user,
            tz: u.tz ?? 'UTC',
            is_bot: u.is_bot ?? false,
            profile: { real_name: u.real_name ?? u.name ?? args.user },
          },
        };
      }
      case 'files.getUploadURLExternal': {
        const length = Number(args.length);
        if (!args.filename || !Number.isFinite(length) || length < 0) return { ok: false, error: 'invalid_arguments' };
        const id = `F${String(++seq).padStart(8, '0')}`;
        uploads.set(id, { filename: String(args.filename), length, bytes: Buffer.alloc(0), completed: false });
        return { ok: true, upload_url: `${base}/upload/${id}`, file_id: id };
      }
      case 'files.completeUploadExternal': {
        const files = Array.isArray(args.files) ? (args.files as Array<{ id: string; title?: string }>) : undefined;
        if (!files || files.length === 0) return { ok: false, error: 'invalid_arguments' };
        if (args.channel_id !== undefined && !channelExists(args.channel_id))
          return { ok: false, error: 'channel_not_found' };
        const out = [];
        for (const f of files) {
          const up = uploads.get(f.id);
          if (!up) return { ok: false, error: 'file_not_found' };
          up.completed = true;
          up.channel = args.channel_id;
          up.title = f.title;
          out.push({ id: f.id, name: up.filename, title: f.title ?? up.filename, size: up.bytes.length });
        }
        return { ok: true, files: out };
      }
      default:
        return { ok: false, error: 'unknown_method' };
    }
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const raw = await readBody(req);
    const contentType = req.headers['content-type'];
    const authorization = req.headers.authorization;
    const bearer = authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined;

    if (url.pathname.startsWith('/upload/')) {
      const id = url.pathname.slice('/upload/'.length);
      const up = uploads.get(id);
      let bytes = raw;
      if (contentType?.startsWith('multipart/form-data')) {
        const form = await new Request('http://localhost/', {
          method: 'POST',
          headers: { 'content-type': contentType },
          body: raw,
        }).formData();
        const file = [...form.values()].find((v) => typeof v !== 'string') as Blob | undefined;
        if (file) bytes = Buffer.from(await file.arrayBuffer());
      }
      const call: RecordedCall = {
        method: 'upload',
        args: { fileId: id, length: bytes.length },
        authorization,
        token: bearer,
        contentType,
        at: now(),
        response: undefined,
        httpStatus: up ? 200 : 404,
      };
      calls.push(call);
      if (up) up.bytes = bytes;
      res.writeHead(up ? 200 : 404, { 'content-type': 'text/plain' });
      res.end(up ? `OK - ${bytes.length}` : 'not found');
      return;
    }

    if (url.pathname.startsWith('/response/')) {
      let args: Record<string, any> = {};
      try {
        args = parseArgs(raw, contentType ?? 'application/json');
      } catch {
        args = { raw: raw.toString('utf8') };
      }
      calls.push({
        method: 'response_url',
        args: { ...args, responseUrlId: url.pathname.slice('/response/'.length) },
        authorization,
        token: bearer,
        contentType,
        at: now(),
        response: { ok: true },
        httpStatus: 200,
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
      return;
    }

    const match = /^\/api\/([A-Za-z0-9_.]+)$/.exec(url.pathname);
    if (!match || req.method !== 'POST') {
      res.writeHead(404).end();
      return;
    }
    const method = match[1]!;
    let args: Record<string, any>;
    try {
      args = parseArgs(raw, contentType);
    } catch {
      args = {};
    }
    const token = bearer ?? (typeof args.token === 'string' ? args.token : undefined);
    const call: RecordedCall = {
      method,
      args,
      authorization,
      token,
      contentType,
      at: now(),
      response: undefined,
      httpStatus: undefined,
    };
    calls.push(call);

    const failure = takeFailure(method);
    if (failure) {
      switch (failure.mode) {
        case 'down':
          req.socket.destroy();
          return;
        case 'ratelimited': {
          const retryAfter = failure.retryAfter ?? 1;
          call.httpStatus = 429;
          call.response = { ok: false, error: 'ratelimited' };
          res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(retryAfter) });
          res.end(JSON.stringify(call.response));
          return;
        }
        case 'http_error':
          call.httpStatus = failure.status ?? 503;
          res.writeHead(call.httpStatus, { 'content-type': 'text/html' });
          res.end('<html><body>Slack is having trouble</body></html>');
          return;
        case 'error':
          call.httpStatus = 200;
          call.response = { ok: false, error: failure.error ?? 'internal_error' };
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(call.response));
          return;
      }
    }
    if (method === 'chat.postMessage' && options.postIntervalPerChannelMs && typeof args.channel === 'string') {
      const last = lastPostAt.get(args.channel);
      const waitMs = last === undefined ? 0 : last + options.postIntervalPerChannelMs - now();
      if (waitMs > 0) {
        call.httpStatus = 429;
        call.response = { ok: false, error: 'ratelimited' };
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(Math.ceil(waitMs / 1000)) });
        res.end(JSON.stringify(call.response));
        return;
      }
    }
    const response = handle(method, args, token);
    if (method === 'chat.postMessage' && response.ok === true && typeof args.channel === 'string')
      lastPostAt.set(args.channel, now());
    call.response = response;
    call.httpStatus = 200;
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(response));
  }

  const server: Server = createServer((req, res) => {
    onRequest(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  socket = attachSocketModeServer({ server, wsBase: () => `ws://127.0.0.1:${port}`, now });
  const socketServer = socket;
  let responseSeq = 0;

  return {
    apiUrl: `${base}/api/`,
    url: base,
    calls,
    callsOf: (method) => calls.filter((c) => c.method === method),
    async waitForCall(method, predicate = () => true, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = calls.find((c) => c.method === method && predicate(c));
        if (found) return found;
        if (Date.now() > deadline) {
          const seen = calls.map((c) => c.method).join(', ') || 'none';
          throw new Error(`no ${method} call matched within ${timeoutMs} ms (calls so far: ${seen})`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    postAsUser: (channel, user, text) => {
      const m: StoredMessage = { channel, ts: nextTs(), text, updates: 0, user };
      store.set(`${channel}:${m.ts}`, m);
      return m;
    },
    message: (channel, ts) => store.get(`${channel}:${ts}`),
    messages: () => [...store.values()],
    uploads,
    responseUrl: () => `${base}/response/${++responseSeq}`,
    socket: socketServer,
    fail: (spec) => {
      failures.push({ ...spec });
    },
    clearFailures: () => {
      failures.length = 0;
    },
    reset: () => {
      calls.length = 0;
      failures.length = 0;
      store.clear();
      lastPostAt.clear();
      uploads.clear();
      opened.clear();
      socketServer.reset();
    },
    close: async () => {
      await socketServer.close();
      await new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      });
    },
  };
}
