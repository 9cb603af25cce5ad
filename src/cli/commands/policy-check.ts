import type { Command } from 'commander';
import { commandGroup } from './shared.ts';
import { systemClock, type Clock } from '../../clock.ts';
import { formatDuration, loadPolicyFile, policyWarnings, type AgentPolicy, type Policy } from '../../policy/index.ts';

/**
 * `warden policy check FILE`: load, validate and summarise a policy; exit 0.
 * A bad file throws, and the CLI's one error printer reports it (exit 2).
 */
export function registerPolicyCheck(program: Command): void {
  const policy = commandGroup(program, 'policy', 'Policy file tools');
  policy
    .command('check')
    .description('Validate a policy file and print what it grants')
    .argument('<file>', 'policy YAML file')
    .action((file: string) => {
      const loaded = loadPolicyFile(file, process.env);
      process.stdout.write(summarisePolicy(loaded, systemClock));
    });
}

/** The summary `policy check` prints. Pure apart from the clock it is given. */
export function summarisePolicy(p: Policy, clock: Clock): string {
  const lines: string[] = [`${p.source}: ok`];
  const agents = Object.values(p.agents);
  lines.push(`agents (${agents.length}):`);
  for (const a of agents) {
    const scopes = Object.entries(a.scopes)
      .map(([s, list]) => `${s}:${list.join('+') || 'none'}`)
      .join(', ');
    lines.push(`  ${a.name}  scopes ${scopes || 'none'}`);
    if (a.approvalRequired.length) lines.push(`    approval required: ${a.approvalRequired.join(', ')}`);
    const who = [
      a.owner && `owner ${a.owner}`,
      a.channel && `channel ${a.channel}`,
      a.approvers.length && `approvers ${a.approvers.join(', ')}`,
    ]
      .filter(Boolean)
      .join(', ');
    if (who) lines.push(`    ${who}`);
    lines.push(`    sandbox ${describeSandbox(a)}`);
    lines.push(
      `    approval timeout ${formatDuration(a.approvalTimeoutMs)}${a.reviewBy ? `, review by ${a.reviewBy}` : ''}`,
    );
  }
  const servers = Object.values(p.servers);
  let classified = 0;
  lines.push(`servers (${servers.length}):`);
  for (const s of servers) {
    const tools = Object.entries(s.tools);
    classified += tools.length;
    const how =
      s.transport === undefined
        ? 'not configured'
        : s.transport.type === 'stdio'
          ? `stdio: ${s.transport.command}`
          : `http: ${s.transport.url}`;
    lines.push(`  ${s.name}  (${how})  ${tools.length} tool${tools.length === 1 ? '' : 's'} classified`);
    for (const [name, t] of tools)
      lines.push(`    ${name}: ${t.scope}${t.scope === 'write' ? ` (${t.consequence})` : ''}`);
  }
  lines.push(`tools classified: ${classified}`);
  const c = p.control;
  const jobs = [
    c.drill.schedule && `drill '${c.drill.schedule}' (canary ${c.drill.canaryAgent})`,
    c.checkpointSchedule && `checkpoints '${c.checkpointSchedule}'`,
    c.checkpointEveryRows && `checkpoints every ${c.checkpointEveryRows} rows`,
    c.reviewReminderSchedule && `review reminders '${c.reviewReminderSchedule}'`,
  ].filter(Boolean);
  lines.push(`control: ${jobs.length ? jobs.join(', ') : 'no scheduled jobs'}`);
  const warnings = policyWarnings(p, clock.now());
  lines.push(`warnings (${warnings.length}):`);
  for (const w of warnings) lines.push(`  - ${w}`);
  return `${lines.join('\n')}\n`;
}

function describeSandbox(agent: AgentPolicy): string {
  const box = agent.sandbox;
  if (box.mode === 'none') return 'NONE (runs unsandboxed)';
  const egress = box.networkAllow.length ? box.networkAllow.join(', ') : 'none';
  return `isolated: egress to Warden and ${egress}; stop grace ${formatDuration(box.stopGraceMs)}`;
}
