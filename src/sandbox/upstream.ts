import type { ServerPolicy } from '../policy/types.ts';
import { checkSandboxTools, inspectPath, WARDEN_INSTALL_DIR, type SandboxTools } from './preflight.ts';
import { upstreamBwrapArgs } from './profile.ts';

/**
 * How the gateway starts a stdio server whose policy has `sandbox:`: in
 * bubblewrap with no network, writes only under its `cwd`, Warden's files and
 * the homes hidden, and tied to the gateway's life (setpriv's parent-death
 * signal). The tools are checked at the first sandboxed start; if they are
 * missing that server fails to start (SANDBOX_UNAVAILABLE), the rest run.
 */
export function createStdioSandboxer(options: {
  env: NodeJS.ProcessEnv;
  wardenFiles: readonly string[];
}): (server: ServerPolicy, command: string, args: readonly string[]) => { command: string; args: string[] } {
  let tools: SandboxTools | undefined;
  return (server, command, args) => {
    tools ??= checkSandboxTools(options.env);
    const cwd = server.transport?.type === 'stdio' ? server.transport.cwd : undefined;
    const box = upstreamBwrapArgs(
      {
        sandbox: server.sandbox!,
        root: cwd,
        hostHome: options.env.HOME ?? '/root',
        wardenFiles: options.wardenFiles,
        inspect: inspectPath,
        readable: [WARDEN_INSTALL_DIR],
      },
      command,
      args,
    );
    return { command: tools.setpriv, args: ['--pdeathsig', 'KILL', '--', tools.bwrap, ...box] };
  };
}
