/**
 * Signed Slack requests for tests: what Slack itself sends to a Bolt HTTP
 * receiver. The signature is Slack's v0 scheme: `v0=` + hex HMAC-SHA256 of
 * `v0:{timestamp}:{raw body}` with the signing secret, sent with
 * x-slack-request-timestamp.
 *
 * Usage (approvals, /agents, /audit tests alike):
 *
 *   const slack = new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, signingSecret);
 *   await slack.command({ command: '/agents', text: 'halt all', user: 'U1', channel: 'C1' });
 *   await slack.blockAction({ user: 'U1', actionId: 'approval_approve', value: approvalId, channel: 'C1', messageTs });
 *   await slack.viewSubmission({ user: 'U1', callbackId: 'approval_reject_modal', privateMetadata, values });
 *   // Attacks: a wrong secret, an old timestamp, or the same request twice.
 *   const sent = await slack.blockAction({...});           // sent.request can be re-sent verbatim
 *   await slack.replay(sent.request);
 *   await slack.blockAction({...}, { timestampSec: now - 600 });
 *   await slack.blockAction({...}, { secret: 'wrong' });
 *
 * Each call resolves with { status, body, request } once the receiver
 * answers (Bolt answers at ack(); work may continue after).
 */
import { createHmac, randomUUID } from 'node:crypto';

export interface SignedRequest {
  body: string;
  headers: Record<string, string>;
}

export interface SendResult {
  status: number;
  body: string;
  request: SignedRequest;
}

export interface SignOptions {
  /** Seconds since the epoch; default now. */
  timestampSec?: number;
  /** Sign with this secret instead (forgery). */
  secret?: string;
  /** Send this exact signature header instead of computing one. */
  signature?: string;
}

export const FORM = 'application/x-www-form-urlencoded';

export function slackSignature(secret: string, timestampSec: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestampSec}:${body}`).digest('hex')}`;
}

export function signRequest(
  secret: string,
  body: string,
  contentType: string = FORM,
  opts: SignOptions = {},
): SignedRequest {
  const ts = opts.timestampSec ?? Math.floor(Date.now() / 1000);
  return {
    body,
    headers: {
      // Bolt compares the content type exactly: no charset suffix.
      'content-type': contentType,
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': opts.signature ?? slackSignature(opts.secret ?? secret, ts, body),
    },
  };
}

export function formBody(fields: Record<string, string | undefined>): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) params.set(k, v);
  return params.toString();
}

/** Interactivity payloads travel as a form with one `payload` field holding JSON. */
export function payloadBody(payload: unknown): string {
  return formBody({ payload: JSON.stringify(payload) });
}

export interface SlashCommandInput {
  command: string;
  text?: string;
  user: string;
  userName?: string;
  channel?: string;
  team?: string;
  triggerId?: string;
  responseUrl?: string;
}

export function slashCommandFields(input: SlashCommandInput): Record<string, string> {
  return {
    token: 'legacy-verification-token',
    team_id: input.team ?? 'T0WARDEN',
    team_domain: 'warden-test',
    channel_id: input.channel ?? 'C0TEST',
    channel_name: 'test',
    user_id: input.user,
    user_name: input.userName ?? input.user.toLowerCase(),
    command: input.command,
    text: input.text ?? '',
    api_app_id: 'A0WARDEN',
    is_enterprise_install: 'false',
    response_url: input.responseUrl ?? 'https://hooks.slack.com/commands/T0WARDEN/1/abc',
    trigger_id: input.triggerId ?? `trigger-${randomUUID()}`,
  };
}

export interface BlockActionInput {
  user: string;
  actionId: string;
  value?: string;
  blockId?: string;
  channel?: string;
  messageTs?: string;
  team?: string;
  triggerId?: string;
  responseUrl?: string;
}

export function blockActionPayload(input: BlockActionInput): Record<string, unknown> {
  const channel = input.channel ?? 'C0TEST';
  const ts = input.messageTs ?? '1700000000.000100';
  return {
    type: 'block_actions',
    api_app_id: 'A0WARDEN',
    token: 'legacy-verification-token',
    team: { id: input.team ?? 'T0WARDEN', domain: 'warden-test' },
    user: {
      id: input.user,
      username: input.user.toLowerCase(),
      name: input.user.toLowerCase(),
      team_id: input.team ?? 'T0WARDEN',
    },
    container: { type: 'message', message_ts: ts, channel_id: channel, is_ephemeral: false },
    trigger_id: input.triggerId ?? `trigger-${randomUUID()}`,
    channel: { id: channel, name: 'test' },
    message: { type: 'message', ts, text: 'card', user: 'UBOTWARDEN' },
    response_url: input.responseUrl ?? 'https://hooks.slack.com/actions/T0WARDEN/1/abc',
    actions: [
      {
        type: 'button',
        action_id: input.actionId,
        block_id: input.blockId ?? 'approval_actions',
        text: { type: 'plain_text', text: 'button', emoji: true },
        value: input.value,
        action_ts: `${Math.floor(Date.now() / 1000)}.000001`,
      },
    ],
  };
}

export interface ViewSubmissionInput {
  user: string;
  callbackId: string;
  privateMetadata?: string;
  /** block_id → action_id → value (plain_text_input). */
  values: Record<string, Record<string, string>>;
  team?: string;
}

export function viewSubmissionPayload(input: ViewSubmissionInput): Record<string, unknown> {
  const values: Record<string, Record<string, { type: string; value: string }>> = {};
  for (const [block, actions] of Object.entries(input.values)) {
    values[block] = {};
    for (const [action, value] of Object.entries(actions)) values[block]![action] = { type: 'plain_text_input', value };
  }
  return {
    type: 'view_submission',
    team: { id: input.team ?? 'T0WARDEN', domain: 'warden-test' },
    user: {
      id: input.user,
      username: input.user.toLowerCase(),
      name: input.user.toLowerCase(),
      team_id: input.team ?? 'T0WARDEN',
    },
    api_app_id: 'A0WARDEN',
    token: 'legacy-verification-token',
    trigger_id: `trigger-${randomUUID()}`,
    view: {
      id: `V${randomUUID().slice(0, 8).toUpperCase()}`,
      team_id: input.team ?? 'T0WARDEN',
      type: 'modal',
      callback_id: input.callbackId,
      private_metadata: input.privateMetadata ?? '',
      blocks: [],
      state: { values },
      hash: '1700000000.abc',
      title: { type: 'plain_text', text: 'Modal' },
      app_id: 'A0WARDEN',
      bot_id: 'BWARDEN',
    },
    response_urls: [],
  };
}

export class SlackRequestSender {
  constructor(
    readonly url: string,
    readonly secret: string,
  ) {}

  async send(req: SignedRequest): Promise<SendResult> {
    const res = await fetch(this.url, { method: 'POST', headers: req.headers, body: req.body });
    return { status: res.status, body: await res.text(), request: req };
  }

  /** Sends a previously sent request again, byte for byte (same signature and timestamp). */
  replay(req: SignedRequest): Promise<SendResult> {
    return this.send(req);
  }

  command(input: SlashCommandInput, opts: SignOptions = {}): Promise<SendResult> {
    return this.send(signRequest(this.secret, formBody(slashCommandFields(input)), FORM, opts));
  }

  blockAction(input: BlockActionInput, opts: SignOptions = {}): Promise<SendResult> {
    return this.send(signRequest(this.secret, payloadBody(blockActionPayload(input)), FORM, opts));
  }

  viewSubmission(input: ViewSubmissionInput, opts: SignOptions = {}): Promise<SendResult> {
    return this.send(signRequest(this.secret, payloadBody(viewSubmissionPayload(input)), FORM, opts));
  }
}
