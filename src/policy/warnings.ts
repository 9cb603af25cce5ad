import { matchesApprovalRule, splitQualifiedName } from './decide.ts';
import type { Policy, SandboxPolicy } from './types.ts';

/** Where agents' models live: an isolated agent that can reach none of these cannot think. */
export const MODEL_API_HOSTS: readonly string[] = [
  'api.anthropic.com',
  'api.openai.com',
  'generativelanguage.googleapis.com',
  'aiplatform.googleapis.com',
  'bedrock-runtime.us-east-1.amazonaws.com',
  'openrouter.ai',
];

/** Whether an allow entry (`host`, `*.domain`, either with `:port`) lets a connection to `host` through. */
export function hostAllowed(entry: string, host: string): boolean {
  const name = entry.replace(/:\d+$/, '').toLowerCase();
  const target = host.toLowerCase();
  return name.startsWith('*.') ? target.endsWith(name.slice(1)) : target === name;
}

/** Whether the sandbox lets the agent reach a model API (Bedrock and Azure OpenAI by their suffixes). */
export function reachesModelApi(sandbox: SandboxPolicy): boolean {
  return sandbox.networkAllow.some(
    (entry) =>
      MODEL_API_HOSTS.some((host) => hostAllowed(entry, host)) ||
      /(^|\.)openai\.azure\.com(:\d+)?$/.test(entry) ||
      /^bedrock-runtime\./.test(entry),
  );
}

/**
 * Things that load but are probably not what the author meant. Never errors:
 * a policy with warnings is still enforced exactly as written.
 */
export function policyWarnings(policy: Policy, now: number): string[] {
  const out: string[] = [];
  const today = new Date(now).toISOString().slice(0, 10);

  for (const a of Object.values(policy.agents)) {
    if (a.reviewBy !== undefined && a.reviewBy < today) {
      out.push(`agent ${a.name}: review_by ${a.reviewBy} has passed; review its access and set a new date`);
    }
    if (a.owner === undefined || a.channel === undefined) {
      const missing = [a.owner === undefined ? 'owner' : '', a.channel === undefined ? 'channel' : '']
        .filter(Boolean)
        .join(' and ');
      out.push(`agent ${a.name}: no ${missing}, so approval cards and alerts for it have nowhere to go`);
    }
    if (a.sandbox.mode === 'none') {
      out.push(
        `agent ${a.name}: sandbox: none, so \`warden run\` starts it with the host's files, credentials and network`,
      );
    } else if (!reachesModelApi(a.sandbox) && a.name !== policy.control.drill.canaryAgent) {
      // (The drill canary is Warden's own scripted client: it has no model to reach.)
      out.push(
        `agent ${a.name}: its sandbox allows no model API host (e.g. api.anthropic.com in sandbox.network.allow), so an agent started with \`warden run\` cannot reach its model`,
      );
    }
    for (const entry of a.approvalRequired) {
      const q = splitQualifiedName(entry);
      if (q !== null && policy.servers[q.server] !== undefined) {
        if ((a.scopes[q.server] ?? []).length === 0) {
          out.push(
            `agent ${a.name}: approval_required ${entry} names server ${q.server}, where ${a.name} has no scope, so it is always denied`,
          );
        } else if (policy.servers[q.server]!.tools[q.tool] === undefined) {
          out.push(`agent ${a.name}: approval_required ${entry}: server ${q.server} classifies no tool ${q.tool}`);
        }
        continue;
      }
      // With an unclassified server in reach we cannot tell what it offers; its own warning covers it.
      const reachable = Object.keys(a.scopes).filter((server) => (a.scopes[server] ?? []).length > 0);
      if (reachable.some((server) => Object.keys(policy.servers[server]?.tools ?? {}).length === 0)) continue;
      const offered = reachable.some((server) =>
        Object.keys(policy.servers[server]?.tools ?? {}).some((tool) => matchesApprovalRule(entry, server, tool)),
      );
      if (!offered) out.push(`agent ${a.name}: approval_required ${entry} is a tool no server in its scopes offers`);
    }
  }

  for (const s of Object.values(policy.servers)) {
    const granted = Object.values(policy.agents).some((a) => (a.scopes[s.name] ?? []).length > 0);
    if (!granted) out.push(`server ${s.name}: no agent has a scope on it`);
    if (s.transport === undefined)
      out.push(`server ${s.name}: no command or url, so the gateway cannot reach it (add it under servers:)`);
    if (Object.keys(s.tools).length === 0) {
      out.push(`server ${s.name}: no tools classified, so every tool on it counts as write (irreversible)`);
    }
  }

  const canary = policy.agents[policy.control.drill.canaryAgent];
  if (canary !== undefined && Object.values(canary.scopes).some((s) => s.includes('write'))) {
    out.push(`agent ${canary.name}: the drill canary has a write scope; a canary should only read`);
  }
  return out;
}
