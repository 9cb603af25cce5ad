import type { Command } from 'commander';
import { systemClock } from '../../clock.ts';
import { WardenError } from '../../errors.ts';
import { decide, describeRule, loadPolicyFile, splitQualifiedName, type Decision } from '../../policy/index.ts';
import { commandGroup } from './shared.ts';

/**
 * `warden policy test FILE --agent NAME --tool SERVER__TOOL --args JSON`: what
 * the policy decides for one call, with no server, database or Slack. The
 * first word is the decision, so scripts can branch on it.
 */
export function registerPolicyTest(program: Command): void {
  const policy = commandGroup(program, 'policy', 'Policy file tools');
  policy
    .command('test')
    .description('Dry-run one tool call against a policy file: prints allow, approve or deny, the reason and the rule')
    .argument('<file>', 'policy YAML file')
    .requiredOption('--agent <name>', 'agent making the call')
    .requiredOption('--tool <server__tool>', 'tool as the agent names it, e.g. crm__refund_request')
    .option('--args <json>', 'the call arguments as a JSON object', '{}')
    .option('--now <iso>', 'the time of the call, for conditions that read `now` (default: the current time)')
    .action((file: string, opts: { agent: string; tool: string; args: string; now?: string }) => {
      const loaded = loadPolicyFile(file, process.env);
      const split = splitQualifiedName(opts.tool);
      if (split === null)
        throw badInput('--tool', `expected SERVER__TOOL such as crm__refund_request, got ${JSON.stringify(opts.tool)}`);
      if (loaded.agents[opts.agent] === undefined) {
        throw badInput(
          '--agent',
          `${file} has no agent "${opts.agent}"; it declares ${Object.keys(loaded.agents).join(', ')}`,
        );
      }
      if (loaded.servers[split.server] === undefined) {
        throw badInput(
          '--tool',
          `${file} has no server "${split.server}"; it declares ${Object.keys(loaded.servers).join(', ') || 'none'}`,
        );
      }
      let args: unknown;
      try {
        args = JSON.parse(opts.args);
      } catch (err) {
        throw badInput('--args', `not valid JSON (${(err as Error).message})`);
      }
      if (args === null || typeof args !== 'object' || Array.isArray(args)) {
        throw badInput('--args', 'expected a JSON object, as MCP tool arguments are');
      }
      let now = systemClock.now();
      if (opts.now !== undefined) {
        now = Date.parse(opts.now);
        if (Number.isNaN(now))
          throw badInput('--now', `expected an ISO time like 2026-12-03T12:00:00Z, got ${JSON.stringify(opts.now)}`);
      }
      const decision = decide(loaded, opts.agent, split.server, split.tool, args, { now });
      process.stdout.write(explainDecision(decision, opts.agent, split.server, split.tool));
    });
}

/** `allow|approve|deny`, then `reason: …` and `rule: …` lines. */
export function explainDecision(decision: Decision, agent: string, server: string, tool: string): string {
  const reason =
    decision.kind === 'allow'
      ? decision.policyRule !== undefined
        ? `${agent} may call ${tool} on ${server} without approval: ${describeRule(decision.policyRule)}`
        : `${agent} may call ${tool} on ${server} without approval (${decision.tool.scope}, ${decision.tool.consequence})`
      : decision.reason;
  const rule =
    decision.policyRule !== undefined
      ? `rules[${decision.policyRule.index}]${decision.policyRule.when !== undefined ? ` when ${decision.policyRule.when}` : ''} then ${decision.policyRule.effect}`
      : decision.kind === 'approve'
        ? decision.rule
        : decision.kind === 'deny'
          ? decision.code
          : 'scopes';
  return `${decision.kind}\nreason: ${reason}\nrule: ${rule}\n`;
}

function badInput(field: string, message: string): WardenError {
  return new WardenError('INVALID_INPUT', `${field}: ${message}`, { details: { field } });
}
