export { runAgent, type RunAgentOptions, type RunOutcome } from './supervisor.ts';
export { checkSandboxTools, findExecutable, type SandboxTools } from './preflight.ts';
export { EgressProxy, GatewayBridge, egressAllowed, forbiddenAddress } from './egress.ts';
export { bwrapArgs, mcpClientConfig, sandboxEnv, type ProfileInput } from './profile.ts';
export { createStdioSandboxer } from './upstream.ts';
export { canaryRunStarter } from './canary.ts';
