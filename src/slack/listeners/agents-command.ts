import type { App } from '@slack/bolt';
import { actorLabel, canDrill, canHalt, canResume, type ControlActor } from '../../control/authorize.ts';
import { agentStatuses } from '../../control/status.ts';
import { describeError } from '../../errors.ts';
import type { Policy } from '../../policy/types.ts';
import { AGENTS_USAGE, buildAgentsStatus, buildControlReply } from '../blocks/agents.ts';
import { buildDrillReport } from '../blocks/drill.ts';
import { escapeMrkdwn, truncate } from '../blocks/text.ts';
import type { SlackDeps } from '../deps.ts';
import { ephemeral, recordRefusal } from './respond.ts';

export type AgentsCommand =
  | { verb: 'status'; agent?: string | undefined }
  | { verb: 'halt'; target: { scope: 'org' } | { scope: 'agent'; agent: string }; reason?: string | undefined }
  | { verb: 'resume'; target: { scope: 'org' } | { scope: 'agent'; agent: string } }
  | { verb: 'drill'; mode: 'canary' | 'org' }
  | { verb: 'help'; error?: string | undefined };

/**
 * `/agents` text → a command. A target must be `all` or an agent the policy
 * knows, so `/agents halt runaway loop` is refused rather than guessed at.
 */
export function parseAgentsCommand(text: string, policy: Policy): AgentsCommand {
  const words = text.trim().split(/\s+/).filter(Boolean);
  const verb = (words[0] ?? 'status').toLowerCase();
  const target = (w: string | undefined): { scope: 'org' } | { scope: 'agent'; agent: string } | string => {
    if (w === undefined || w.toLowerCase() === 'all') return { scope: 'org' };
    if (policy.agents[w]) return { scope: 'agent', agent: w };
    const known = Object.keys(policy.agents).sort();
    return `Unknown agent \`${escapeMrkdwn(truncate(w, 100))}\`: use \`all\` or one of ${known.map((k) => `\`${k}\``).join(', ') || '(none)'}.`;
  };
  switch (verb) {
    case 'status': {
      const w = words[1];
      if (w === undefined) return { verb: 'status' };
      const t = target(w);
      return typeof t === 'string'
        ? { verb: 'help', error: t }
        : { verb: 'status', agent: t.scope === 'agent' ? t.agent : undefined };
    }
    case 'halt': {
      const t = target(words[1]);
      if (typeof t === 'string') return { verb: 'help', error: t };
      return { verb: 'halt', target: t, reason: words.slice(2).join(' ') || undefined };
    }
    case 'resume': {
      const t = target(words[1]);
      return typeof t === 'string' ? { verb: 'help', error: t } : { verb: 'resume', target: t };
    }
    case 'drill': {
      const mode = (words[1] ?? 'canary').toLowerCase();
      if (mode !== 'canary' && mode !== 'org')
        return {
          verb: 'help',
          error: `Drill mode must be \`canary\` or \`org\`, not \`${escapeMrkdwn(truncate(mode, 50))}\`.`,
        };
      return { verb: 'drill', mode };
    }
    case 'help':
      return { verb: 'help' };
    default:
      return { verb: 'help', error: `Unknown subcommand \`${escapeMrkdwn(truncate(verb, 50))}\`.` };
  }
}

const describeTarget = (t: { scope: 'org' } | { scope: 'agent'; agent: string }) =>
  t.scope === 'org' ? 'all agents (org-wide)' : `agent \`${t.agent}\``;

/**
 * `/agents status|halt|resume|drill`. Ack at once, authorise against
 * policy.control (the same pure rules as the CLI), then call the kill switch
 * or drill runner; a refusal is audited like the action would have been.
 * The on-call announcement and approval cancellation are the halt's own
 * effects (control/halt-effects.ts), not this listener's.
 */
export function registerAgentsCommand(app: App, deps: SlackDeps): void {
  app.command('/agents', async ({ ack, command, respond }) => {
    await ack();
    const policy = deps.policy();
    const control = deps.control;
    const actor: ControlActor = { kind: 'slack', userId: command.user_id };
    const reply = (text: string, icon?: string) => respond(ephemeral(buildControlReply(text, icon)));
    const refuse = async (action: string, reason: string, detail: Record<string, unknown>) => {
      await recordRefusal(deps, 'control.refused', actor, action, reason, detail);
      await reply(`Not allowed: ${reason}`, ':no_entry:');
    };
    try {
      const cmd = parseAgentsCommand(command.text ?? '', policy);
      if (cmd.verb === 'help') {
        await reply(`${cmd.error ? `${cmd.error}\n` : ''}${AGENTS_USAGE}`, cmd.error ? ':x:' : ':information_source:');
        return;
      }
      const ks = control.killSwitch;
      switch (cmd.verb) {
        case 'status': {
          const now = deps.clock.now();
          const rows = agentStatuses(
            { audit: deps.auditReader, approvals: deps.approvals, runs: control.runs },
            policy,
            ks,
            now,
            cmd.agent,
          );
          await respond(ephemeral(buildAgentsStatus(rows, { orgHalt: ks.orgHalt(), now })));
          return;
        }
        case 'halt': {
          const authz = canHalt(policy.control, actor);
          if (!authz.ok) return await refuse('halt', authz.reason, { target: cmd.target });
          const state = await ks.halt({
            ...cmd.target,
            reason: cmd.reason ?? `halted from Slack by ${command.user_id}`,
            actor: actorLabel(actor),
          });
          await reply(
            `Halted ${describeTarget(cmd.target)}: ${escapeMrkdwn(truncate(state.reason, 500))}. New calls are refused and in-flight calls cancelled; pending approvals are being cancelled and on-call notified. Resume with \`/agents resume ${cmd.target.scope === 'org' ? 'all' : cmd.target.agent}\`.`,
            ':octagonal_sign:',
          );
          return;
        }
        case 'resume': {
          const authz = canResume(policy.control, actor);
          if (!authz.ok) return await refuse('resume', authz.reason, { target: cmd.target });
          const r = await ks.resume({ ...cmd.target, actor: actorLabel(actor) });
          const still = ks.status();
          await reply(
            (r.resumed
              ? `Resumed ${describeTarget(cmd.target)}.`
              : `${describeTarget(cmd.target)} was not halted; nothing to resume.`) +
              (still.length > 0
                ? ` Still halted: ${still.map((s) => (s.scope === 'org' ? 'org-wide' : `\`${s.agent}\``)).join(', ')}.`
                : ''),
            r.resumed ? ':large_green_circle:' : ':information_source:',
          );
          return;
        }
        case 'drill': {
          const authz = canDrill(policy.control, actor);
          if (!authz.ok) return await refuse('drill', authz.reason, { mode: cmd.mode });
          if (!control.drill) {
            await reply('Drills are not configured in this Warden process (it runs no gateway).', ':x:');
            return;
          }
          if (control.drill.running) {
            await reply('A drill is already running.', ':hourglass:');
            return;
          }
          await reply(
            cmd.mode === 'org'
              ? 'Starting an *org-wide* drill: every agent is halted for a few seconds, then resumed. The report follows here and in on-call.'
              : `Starting a canary drill with \`${policy.control.drill.canaryAgent}\`. The report follows here and in on-call.`,
            ':fire_extinguisher:',
          );
          const result = await control.drill.run(cmd.mode, actorLabel(actor));
          await respond(ephemeral(buildDrillReport(result)));
          return;
        }
      }
    } catch (err) {
      deps.logger.error({ err: describeError(err), user: command.user_id }, '/agents failed');
      await reply(`That did not work: ${escapeMrkdwn(truncate(describeError(err), 500))}`, ':x:').catch(() => {});
    }
  });
}
