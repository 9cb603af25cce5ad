import type { Command } from 'commander';

type Register = (program: Command) => void;

/**
 * Each command lives in its own file and registers itself here, keyed by its top-level name.
 * Modules are imported only for the command being run: Bolt, the MCP SDK and zod cost
 * hundreds of milliseconds to load, and `warden connect` should not wait for Bolt.
 * Keep this table sorted; one line per command module.
 */
const COMMANDS: Record<string, (() => Promise<Register>)[]> = {
  agents: [
    () => import('./agents-control.ts').then((m) => m.registerAgentsControl),
    () => import('./agents-token.ts').then((m) => m.registerAgentsToken),
  ],
  approvals: [() => import('./approvals.ts').then((m) => m.registerApprovals)],
  audit: [
    () => import('./audit-checkpoint.ts').then((m) => m.registerAuditCheckpoint),
    () => import('./audit-keygen.ts').then((m) => m.registerAuditKeygen),
    () => import('./audit-query.ts').then((m) => m.registerAuditQuery),
    () => import('./audit-verify.ts').then((m) => m.registerAuditVerify),
  ],
  'canary-server': [() => import('./canary-server.ts').then((m) => m.registerCanaryServer)],
  connect: [() => import('./connect.ts').then((m) => m.registerConnect)],
  grants: [() => import('./approvals.ts').then((m) => m.registerGrants)],
  policy: [
    () => import('./policy-check.ts').then((m) => m.registerPolicyCheck),
    () => import('./policy-diff.ts').then((m) => m.registerPolicyDiff),
    () => import('./policy-test.ts').then((m) => m.registerPolicyTest),
  ],
  run: [() => import('./run.ts').then((m) => m.registerRun)],
  serve: [() => import('./serve.ts').then((m) => m.registerServe)],
  store: [() => import('./store-migrate.ts').then((m) => m.registerStoreMigrate)],
  tools: [() => import('./tools.ts').then((m) => m.registerTools)],
};

/**
 * Registers the command `argv` names, or every command when it names none we know
 * (help, a typo), so commander can list them all.
 */
export async function registerCommands(program: Command, argv: readonly string[]): Promise<void> {
  const name = argv.slice(2).find((arg) => !arg.startsWith('-'));
  const loaders =
    name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name]! : Object.values(COMMANDS).flat();
  for (const register of await Promise.all(loaders.map((load) => load()))) register(program);
}
