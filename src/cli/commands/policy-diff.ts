import type { Command } from 'commander';
import { diffPolicies, loadPolicyFile } from '../../policy/index.ts';
import { ExitCode } from '../exit-codes.ts';
import { commandGroup } from './shared.ts';

/**
 * `warden policy diff OLD NEW`: what a change to the policy does, for review
 * before it is deployed. Exit 0 when nothing changes, 1 when something does
 * (like diff(1)), 2 when either file is invalid.
 */
export function registerPolicyDiff(program: Command): void {
  const policy = commandGroup(program, 'policy', 'Policy file tools');
  policy
    .command('diff')
    .description(
      'List what changes between two policy files: tool outcomes per agent, rules, owners, approvers, limits',
    )
    .argument('<old>', 'the policy in force')
    .argument('<new>', 'the proposed policy')
    .action((oldFile: string, newFile: string) => {
      const lines = diffPolicies(loadPolicyFile(oldFile, process.env), loadPolicyFile(newFile, process.env));
      if (lines.length === 0) {
        process.stdout.write('no changes\n');
        return;
      }
      process.stdout.write(`${lines.join('\n')}\n`);
      process.exitCode = ExitCode.CHECK_FAILED;
    });
}
