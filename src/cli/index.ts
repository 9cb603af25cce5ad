import { Command, CommanderError } from 'commander';
import { describeError, isWardenError, type ErrorCode } from '../errors.ts';
import { registerCommands } from './commands/index.ts';

import { ExitCode } from './exit-codes.ts';
import { plainText } from './plain-text.ts';

const BAD_INPUT_CODES: ReadonlySet<ErrorCode> = new Set([
  'CONFIG_INVALID',
  'POLICY_INVALID',
  'POLICY_NOT_FOUND',
  'QUERY_INVALID',
  'INVALID_INPUT',
  'NOT_FOUND',
  'STORE_NOT_EMPTY',
]);

/** The command ran and the answer is no: a check failed, or a decision was refused or lost to another. */
const REFUSED_CODES: ReadonlySet<ErrorCode> = new Set(['AUDIT_CHAIN_BROKEN', 'FORBIDDEN', 'APPROVAL_CONFLICT']);

/** The one error printer: a line on stderr, and an exit code from the error's code. */
export function printError(err: unknown, stderr: NodeJS.WritableStream = process.stderr): number {
  stderr.write(`warden: ${plainText(describeError(err))}\n`);
  if (isWardenError(err))
    return BAD_INPUT_CODES.has(err.code)
      ? ExitCode.BAD_INPUT
      : REFUSED_CODES.has(err.code)
        ? ExitCode.CHECK_FAILED
        : ExitCode.FAILURE;
  return ExitCode.FAILURE;
}

export async function buildProgram(argv: readonly string[]): Promise<Command> {
  const program = new Command('warden')
    .description('Governance for AI agents that use MCP tools')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  await registerCommands(program, argv);
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  try {
    await (await buildProgram(argv)).parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCode.OK;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.OK : ExitCode.BAD_INPUT;
    return printError(err);
  }
}

// Run when executed directly (tsx src/cli/index.ts …), not when imported by tests.
if (import.meta.url === `file://${process.argv[1]}` || /\/cli\/index\.[jt]s$/.test(process.argv[1] ?? '')) {
  main().then((code) => {
    process.exitCode = code;
  });
}
