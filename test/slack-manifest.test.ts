import { readFileSync } from 'node:fs';
import { App } from '@slack/bolt';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { silentLogger } from '../src/logger.ts';
import { openDb } from '../src/store/db.ts';
import { APPROVE_ACTION_ID, REJECT_ACTION_ID, buildApprovalCard } from '../src/slack/blocks/approval-card.ts';
import { REJECT_MODAL_CALLBACK_ID } from '../src/slack/blocks/reject-modal.ts';
import { createSlackApp } from '../src/slack/app.ts';

interface Manifest {
  display_information: { name: string; description: string };
  features: {
    bot_user: { display_name: string };
    slash_commands: Array<{
      command: string;
      url: string;
      description: string;
      usage_hint?: string;
      should_escape?: boolean;
    }>;
  };
  oauth_config: { scopes: { bot: string[] } };
  settings: {
    interactivity: { is_enabled: boolean; request_url: string };
    socket_mode_enabled: boolean;
    org_deploy_enabled: boolean;
  };
}

const manifest = parse(readFileSync(new URL('../manifest.yml', import.meta.url), 'utf8')) as Manifest;

/** What createSlackApp really registers, captured from Bolt's own registration methods. */
function registrations() {
  const commands: string[] = [];
  const actions: Array<string | RegExp> = [];
  const views: Array<string | RegExp> = [];
  const spies = [
    vi.spyOn(App.prototype, 'command').mockImplementation(function (this: App, id: unknown) {
      commands.push(String(id));
      return this as never;
    } as never),
    vi.spyOn(App.prototype, 'action').mockImplementation(function (this: App, id: unknown) {
      actions.push(id instanceof RegExp ? id : typeof id === 'string' ? id : JSON.stringify(id));
      return this as never;
    } as never),
    vi.spyOn(App.prototype, 'view').mockImplementation(function (this: App, id: unknown) {
      views.push(id instanceof RegExp ? id : typeof id === 'string' ? id : JSON.stringify(id));
      return this as never;
    } as never),
  ];
  try {
    createSlackApp({
      config: { botToken: 'xoxb-manifest', signingSecret: 'secret', port: 0, apiUrl: 'http://127.0.0.1:9/api/' },
      approvals: {} as never,
      policy: () => ({}) as never,
      audit: {} as never,
      auditReader: {} as never,
      control: {} as never,
      logger: silentLogger(),
      db: openDb(':memory:'),
    });
  } finally {
    for (const s of spies) s.mockRestore();
  }
  return { commands, actions, views };
}

const registered = registrations();

afterAll(() => vi.restoreAllMocks());

const handles = (ids: Array<string | RegExp>, id: string) =>
  ids.some((x) => (typeof x === 'string' ? x === id : x.test(id)));

describe('manifest.yml', () => {
  it('declares exactly the slash commands the app registers, each with a description and usage hint', () => {
    const declared = manifest.features.slash_commands.map((c) => c.command).sort();
    expect(declared).toEqual([...registered.commands].sort());
    expect(declared).toEqual(['/agents', '/audit']);
    for (const c of manifest.features.slash_commands) {
      expect(c.description.length).toBeGreaterThan(0);
      expect(c.description.length).toBeLessThanOrEqual(2000);
      expect(c.usage_hint?.length ?? 0).toBeGreaterThan(0);
      expect(c.usage_hint!.length).toBeLessThanOrEqual(1000);
      // Bolt's HTTP receiver listens on /slack/events only.
      expect(new URL(c.url).pathname).toBe('/slack/events');
    }
  });

  it('enables interactivity at the receiver’s endpoint because the app handles actions and views', () => {
    expect(registered.actions.length + registered.views.length).toBeGreaterThan(0);
    expect(manifest.settings.interactivity.is_enabled).toBe(true);
    expect(new URL(manifest.settings.interactivity.request_url).pathname).toBe('/slack/events');
  });

  it('every button and modal the approval card uses has a registered handler', () => {
    const card = buildApprovalCard({
      id: 'apr_00000000-0000-0000-0000-000000000000',
      callId: 'c',
      agent: 'a',
      server: 's',
      tool: 't',
      args: {},
      argsHash: '0'.repeat(64),
      rule: 'approval_required',
      consequence: 'irreversible',
      approvers: [],
      status: 'pending',
      requestedAt: 0,
      expiresAt: 1,
    });
    const ids = card.blocks.flatMap((b) =>
      b.type === 'actions' ? b.elements.map((e) => (e as { action_id: string }).action_id) : [],
    );
    expect(ids.sort()).toEqual([APPROVE_ACTION_ID, REJECT_ACTION_ID].sort());
    for (const id of ids) expect(handles(registered.actions, id)).toBe(true);
    expect(handles(registered.views, REJECT_MODAL_CALLBACK_ID)).toBe(true);
  });

  it('asks for the bot scopes the code uses, runs in Socket Mode, and is not org-deployed', () => {
    // Exactly what the code uses: chat.* (chat:write), slash commands, files.uploadV2 (files:write), conversations.open for CSV DMs
    // (im:write), conversations.history for audit verify --from-slack (channels:history, groups:history for a private channel).
    expect([...manifest.oauth_config.scopes.bot].sort()).toEqual([
      'channels:history',
      'chat:write',
      'commands',
      'files:write',
      'groups:history',
      'im:write',
    ]);
    expect(manifest.settings.socket_mode_enabled).toBe(true);
    expect(manifest.settings.org_deploy_enabled).toBe(false);
    expect(manifest.display_information.name).toBe('Warden');
    expect(manifest.display_information.description.length).toBeLessThanOrEqual(140);
    expect(manifest.features.bot_user.display_name).toBe('Warden');
  });
});
