/**
 * A second Warden gateway process sharing one database, for multi-process
 * kill-switch tests and bench/halt.ts:
 *   WARDEN_DB=… WARDEN_POLICY=… node --import tsx test/support/control-gateway-child.ts
 * Prints one JSON line {"url": …} on stdout once listening; exits when stdin
 * closes (the parent died or is done) or on SIGTERM.
 */
import { ApprovalService } from '../../src/approvals/index.ts';
import { AuditLog } from '../../src/audit/log.ts';
import { KillSwitch } from '../../src/control/kill-switch.ts';
import { LogAlertSink } from '../../src/control/alerts.ts';
import { startGateway } from '../../src/gateway/index.ts';
import { createLogger } from '../../src/logger.ts';
import { loadPolicyFile } from '../../src/policy/index.ts';
import { openDb } from '../../src/store/db.ts';

const dbPath = process.env.WARDEN_DB;
const policyPath = process.env.WARDEN_POLICY;
if (!dbPath || !policyPath) throw new Error('WARDEN_DB and WARDEN_POLICY are required');

const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn', name: 'warden-child' });
const policy = loadPolicyFile(policyPath);
const db = openDb(dbPath);
const audit = new AuditLog(db, { logger });
const ks = new KillSwitch({ db, audit, logger, pollMs: 50 });
ks.start();
// As `warden serve` builds it (src/cli/runtime.ts): on PostgreSQL it remembers which agents have no held call.
const approvals = new ApprovalService({ db, audit, policy, logger, cacheHeldCalls: true });
const gateway = await startGateway({
  policy,
  db,
  audit,
  approvals,
  halt: ks,
  alerts: new LogAlertSink(logger),
  logger,
  host: '127.0.0.1',
  port: 0,
});
process.stdout.write(`${JSON.stringify({ url: gateway.url, pid: process.pid })}\n`);

let closing = false;
async function shutdown(): Promise<void> {
  if (closing) return;
  closing = true;
  await gateway.close().catch(() => {});
  ks.stop();
  await audit.close().catch(() => {});
  db.close();
  process.exit(0);
}
process.stdin.on('end', () => void shutdown());
process.stdin.on('close', () => void shutdown());
process.stdin.resume();
process.on('SIGTERM', () => void shutdown());
