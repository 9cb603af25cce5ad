import type { Command } from 'commander';
import { registerAgentsControl } from './agents-control.ts';
import { registerApprovals } from './approvals.ts';
import { registerAgentsToken } from './agents-token.ts';
import { registerAuditCheckpoint } from './audit-checkpoint.ts';
import { registerAuditKeygen } from './audit-keygen.ts';
import { registerAuditQuery } from './audit-query.ts';
import { registerAuditVerify } from './audit-verify.ts';
import { registerCanaryServer } from './canary-server.ts';
import { registerConnect } from './connect.ts';
import { registerPolicyCheck } from './policy-check.ts';
import { registerRun } from './run.ts';
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
  registerPolicyCheck(program);
  registerRun(program);
  registerServe(program);
  registerTools(program);
}
