import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openDb, type Db } from '../src/store/db.ts';
import { connectAgent, controlPolicyText } from './support/control-env.ts';
import { waitFor } from './support/gateway-harness.ts';
import { freshPgDatabase } from './support/postgres.ts';
import { startServeChild, type ServeChild } from './support/serve-child.ts';

/*
 * Replicas: several real `warden serve` processes on one PostgreSQL. Each
 * registers in `replicas` and heartbeats; one killed with SIGKILL is dead for
 * the others once its lease runs out, and a survivor closes what it left.
 */

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const LEASE_ENV = { WARDEN_HEARTBEAT_MS: '200', WARDEN_REPLICA_LEASE_MS: '1500' };

/** A second agent whose every sleep is held for a human. */
const HELD_AGENT = `  - agent: held
    owner: U0OWNER
    channel: C0OWNER
    review_by: 2026-01-10
    mcp_scopes: { slow: [read] }
    approval_required: [sleep]`;

let dir: string;
let policyPath: string;
const children: ServeChild[] = [];
const dbs: Db[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-replicas-'));
  policyPath = join(dir, 'policy.yml');
  writeFileSync(policyPath, controlPolicyText(HELD_AGENT));
});

afterEach(async () => {
  for (const child of children.splice(0)) await child.kill('SIGKILL');
  for (const db of dbs.splice(0)) db.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function replicasOn(url: string, n: number): Promise<ServeChild[]> {
  const started = await Promise.all(
    Array.from({ length: n }, () => startServeChild({ dbPath: url, policyPath, env: LEASE_ENV })),
  );
  children.push(...started);
  return started;
}

function cli(url: string, ...args: string[]) {
  return run(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args, '--db', url], {
    cwd: ROOT,
    env: { ...process.env, WARDEN_POLICY: policyPath, LOG_LEVEL: 'silent' },
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      code: err.code ?? 1,
      stdout: err.stdout ?? '',
      stderr: err.stderr ?? '',
    }),
  );
}

/** Upstreams start in the background: a call made before the catalogue is in is refused, not held. */
async function untilToolListed(agent: Awaited<ReturnType<typeof connectAgent>>): Promise<void> {
  await waitFor(
    async () => (await agent.client.listTools()).tools.some((t) => t.name === 'slow__sleep') || undefined,
    'slow__sleep listed',
    30_000,
  );
}

function replicaIdOf(db: Db, child: ServeChild): string {
  const row = db.prepare('SELECT id FROM replicas WHERE pid = ? AND stopped_at IS NULL').get(child.proc.pid!) as
    | { id: string }
    | undefined;
  if (!row) throw new Error(`no replicas row for pid ${child.proc.pid}`);
  return row.id;
}

interface CallRows {
  call_id: string;
  decided_detail: string;
  completed_decision: string | null;
  completed_detail: string | null;
}

/** Every allowed call.decided row with its completion (if any). */
function callRows(db: Db): Array<CallRows & { replica: string }> {
  const rows = db
    .prepare(
      `SELECT d.call_id, d.detail AS decided_detail, c.decision AS completed_decision, c.detail AS completed_detail
         FROM audit d LEFT JOIN audit c ON c.call_id = d.call_id AND c.event = 'call.completed'
        WHERE d.event = 'call.decided' AND d.decision IN ('allow', 'approve') ORDER BY d.seq`,
    )
    .all() as CallRows[];
  return rows.map((r) => ({ ...r, replica: (JSON.parse(r.decided_detail) as { replica: string }).replica }));
}

describe('replicas on one PostgreSQL', () => {
  it('kill -9 one replica mid-load: no acknowledged row lost, its dangling calls closed by a survivor within the lease, one chain that verifies', async () => {
    const url = await freshPgDatabase();
    const [doomed, survivor] = await replicasOn(url, 2);
    const db = openDb(url);
    dbs.push(db);
    const doomedId = replicaIdOf(db, doomed!);
    const survivorId = replicaIdOf(db, survivor!);
    expect(doomedId).not.toBe(survivorId);

    const onDoomed = await connectAgent(db, doomed!.running.gateway, 'worker');
    const onSurvivor = await connectAgent(db, survivor!.running.gateway, 'worker');
    const answered = { doomed: 0, survivor: 0 };
    let stop = false;
    const load = (agent: typeof onDoomed, key: keyof typeof answered) =>
      (async () => {
        while (!stop) {
          const res = await agent.call('slow__sleep', { ms: 1 }).catch(() => undefined);
          if (res === undefined) return; // its replica is gone
          if (!res.isError) answered[key]++;
        }
      })();
    const loads = [
      load(onDoomed, 'doomed'),
      load(onDoomed, 'doomed'),
      load(onSurvivor, 'survivor'),
      load(onSurvivor, 'survivor'),
    ];
    // Calls in flight on the doomed replica when it dies: decided, never completed.
    const hanging = [1, 2, 3].map(() => onDoomed.call('slow__hang', {}).catch(() => undefined));
    await waitFor(
      () =>
        callRows(db).filter((r) => r.replica === doomedId && r.completed_decision === null).length >= 3 || undefined,
      'three calls hanging on the doomed replica',
      20_000,
    );
    await waitFor(
      () => (answered.doomed >= 10 && answered.survivor >= 10) || undefined,
      'load on both replicas',
      30_000,
    );

    expect(await doomed!.kill('SIGKILL')).toBeNull();
    const acknowledgedOnDoomed = answered.doomed;
    await Promise.all(hanging);

    // The survivor claims the dead replica once its lease (1.5 s) has run out, and says what it closed.
    const closed = await survivor!.waitForLog(
      (l) => l.msg === 'closed what a dead replica left' && l.replica === doomedId,
      'the survivor closing the dead replica',
    );
    expect(closed.calls).toBeGreaterThanOrEqual(3);
    stop = true;
    await Promise.all(loads);
    await onSurvivor.close();

    const rows = callRows(db);
    const ofDoomed = rows.filter((r) => r.replica === doomedId);
    // Every call the doomed replica decided now ends in the trail.
    expect(ofDoomed.filter((r) => r.completed_decision === null)).toEqual([]);
    // Every answer an agent got from it has its completion (ok rows), none lost with the process.
    const abandoned = ofDoomed.filter((r) => r.completed_decision === 'abandoned');
    expect(ofDoomed.length - abandoned.length).toBeGreaterThanOrEqual(acknowledgedOnDoomed);
    expect(abandoned.length).toBeGreaterThanOrEqual(3);
    for (const row of abandoned) {
      expect(JSON.parse(row.completed_detail!)).toMatchObject({
        recovered: true,
        code: 'abandoned',
        why: 'replica_lease_expired',
        replica: doomedId,
      });
    }
    // The survivor's own calls are not touched.
    expect(rows.filter((r) => r.replica === survivorId && r.completed_decision === 'abandoned')).toEqual([]);
    const reaped = db.prepare('SELECT reaped_by FROM replicas WHERE id = ?').get(doomedId) as { reaped_by: string };
    expect(reaped.reaped_by).toBe(survivorId);

    await survivor!.kill('SIGTERM');
    const verify = await cli(url, 'audit', 'verify');
    // Only the note that no external checkpoint was given; the chain itself verified.
    expect(verify.stderr).not.toMatch(/fail|broken|mismatch/i);
    expect(verify.code).toBe(0);
  }, 120_000);

  it('a pending approval of a killed replica is abandoned by a survivor once its lease runs out', async () => {
    const url = await freshPgDatabase();
    const [doomed, survivor] = await replicasOn(url, 2);
    const db = openDb(url);
    dbs.push(db);
    const doomedId = replicaIdOf(db, doomed!);
    const agent = await connectAgent(db, doomed!.running.gateway, 'held');
    await untilToolListed(agent);
    const held = agent.call('slow__sleep', { ms: 1 }).catch(() => undefined);
    const pending = await waitFor(
      () =>
        db.prepare("SELECT id FROM approvals WHERE status = 'pending' AND process_id = ?").get(doomedId) as
          | { id: string }
          | undefined,
      'a pending approval on the doomed replica',
      20_000,
    );
    await doomed!.kill('SIGKILL');
    await held;
    await survivor!.waitForLog(
      (l) => l.msg === 'closed what a dead replica left' && l.replica === doomedId,
      'the survivor closing the dead replica',
    );
    const after = db.prepare('SELECT status, decision_reason FROM approvals WHERE id = ?').get(pending.id) as {
      status: string;
      decision_reason: string;
    };
    expect(after.status).toBe('abandoned');
    expect(after.decision_reason).toMatch(/replica lease expired/);
  }, 120_000);

  it('one approval approved from two terminals at once is decided once, and the call runs on the replica holding the agent', async () => {
    const url = await freshPgDatabase();
    const [holder, other] = await replicasOn(url, 2);
    const db = openDb(url);
    dbs.push(db);
    const holderId = replicaIdOf(db, holder!);
    const agent = await connectAgent(db, holder!.running.gateway, 'held');
    await untilToolListed(agent);
    let settled: unknown;
    const answer = agent.call('slow__sleep', { ms: 1 });
    answer.then(
      (r) => (settled = r),
      (err: unknown) => (settled = err),
    );
    const pending = await waitFor(
      () => {
        if (settled !== undefined)
          throw new Error(`the held call was answered before approval: ${JSON.stringify(settled)}`);
        return db.prepare("SELECT id, call_id FROM approvals WHERE status = 'pending'").get() as
          | { id: string; call_id: string }
          | undefined;
      },
      'a pending approval',
      60_000,
    );
    const results = await Promise.all([
      cli(url, 'approvals', 'approve', pending.id, '--as', 'U0OWNER'),
      cli(url, 'approvals', 'approve', pending.id, '--as', 'U0OWNER'),
    ]);
    expect(results.map((r) => r.code).sort()).toEqual([0, expect.any(Number)]);
    expect(results.filter((r) => r.code === 0)).toHaveLength(1);
    const res = await answer;
    expect(res.isError).toBe(false);
    const decided = db
      .prepare("SELECT count(*) AS n FROM audit WHERE event = 'approval.decided' AND detail LIKE ?")
      .get(`%${pending.id}%`) as { n: number };
    expect(decided.n).toBe(1);
    const completions = db
      .prepare("SELECT decision FROM audit WHERE event = 'call.completed' AND call_id = ?")
      .all(pending.call_id) as Array<{ decision: string }>;
    expect(completions).toHaveLength(1);
    expect(completions[0]!.decision).not.toBe('abandoned');
    // The call's rows name the replica that held the agent's request, not the other one.
    const decidedCall = db
      .prepare("SELECT detail FROM audit WHERE event = 'call.decided' AND call_id = ?")
      .get(pending.call_id) as { detail: string };
    expect(JSON.parse(decidedCall.detail).replica).toBe(holderId);
    expect(other!.proc.exitCode).toBeNull();
    await agent.close();
  }, 120_000);
});
