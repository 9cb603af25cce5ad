import type { Command } from 'commander';
import { registerAgentsControl } from './agents-control.ts';
import { registerApprovals, registerGrants } from './approvals.ts';
import { registerAgentsToken } from './agents-token.ts';
import { registerAuditCheckpoint } from './audit-checkpoint.ts';
import { registerAuditKeygen } from './audit-keygen.ts';
import { registerAuditQuery } from './audit-query.ts';
import { registerAuditVerify } from './audit-verify.ts';
import { registerCanaryServer } from './canary-server.ts';
import { registerConnect } from './connect.ts';
import { registerPolicyCheck } from './policy-check.ts';
import { registerPolicyDiff } from './policy-diff.ts';
import { registerPolicyTest } from './policy-test.ts';
import { registerServe } from './serve.ts';
import { registerTools } from './tools.ts';

/**
 * Each command lives in its own file and registers itself here.
 * Keep this list sorted; one line per command module.
 */
export function registerCommands(program: Command): void {
  registerAgentsControl(program);
  registerApprovals(program);
  registerAgentsToken(program);
  registerAuditCheckpoint(program);
  registerAuditKeygen(program);
  registerAuditQuery(program);
  registerAuditVerify(program);
  registerCanaryServer(program);
  registerConnect(program);
  registerGrants(program);
  registerPolicyCheck(program);
  registerPolicyDiff(program);
  registerPolicyTest(program);
  registerServe(program);
  registerTools(program);
}
