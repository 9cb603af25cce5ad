import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent, startWardenEnv, upstreamCounters, type WardenEnv } from './support/control-env.ts';
import { spawnChildGateway, type ChildGateway } from './support/control-child.ts';
import { freshPgDatabase } from './support/postgres.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));
/**
 * Propagation is awaited by polling with a generous timeout, never a fixed
 * sleep: these tests check that a halt reaches the other process and what it
 * does there. How fast (the 250 ms promise) is measured by bench/halt.ts.
 */
const PROPAGATION = { timeout: 15_000, interval: 25 };
const call0 = (c: {
  call(name: string, args?: Record<string, unknown>): Promise<{ isError: boolean; text: string }>;
}) => c.call('slow__sleep', { ms: 0 });

let env: WardenEnv;
let child: ChildGateway;

// The same behaviour on both stores: two processes sharing a SQLite file, or two replicas sharing PostgreSQL.
describe.each(['sqlite', 'postgres'] as const)('on %s', (backend) => {
  beforeAll(async () => {
    env = await startWardenEnv({ store: backend === 'postgres' ? await freshPgDatabase() : undefined });
    child = await spawnChildGateway(env);
  });
  afterAll(async () => {
    await child?.stop();
    await env?.close();
  });

  function cli(...args: string[]) {
    return run(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, WARDEN_DB: env.dbPath, WARDEN_POLICY: env.policyPath, LOG_LEVEL: 'error' },
    });
  }

  describe('halt across processes sharing one database', () => {
    it('a halt in this process stops the other gateway: refused, in-flight cancelled, nothing forwarded', async () => {
      const worker = await connectAgent(env.db, child.url, 'worker');
      const observer = await connectAgent(env.db, child.url, 'warden-canary');
      expect((await worker.call('slow__sleep', { ms: 0 })).isError).toBe(false);
      const before = await upstreamCounters(observer);

      // A long call in flight at the other process's upstream.
      let progressed = false;
      let ended: { isError: boolean; text: string } | undefined;
      const inflight = worker.client
        .callTool({ name: 'slow__sleep', arguments: { ms: 60_000, steps: 600 } }, undefined, {
          timeout: 120_000,
          onprogress: () => (progressed = true),
        })
        .then(
          (res) =>
            (ended = {
              isError: res.isError === true,
              text: (res.content as { text?: string }[]).map((c) => c.text ?? '').join(' '),
            }),
        );
      inflight.catch(() => {});
      // In flight: the other process has decided it (durable row), and the upstream is running it (its progress reached us).
      await expect
        .poll(
          () =>
            env.db
              .prepare(
                "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'allow' AND args LIKE '%60000%'",
              )
              .get(),
          PROPAGATION,
        )
        .toEqual({ n: 1 });
      await expect.poll(() => progressed, PROPAGATION).toBe(true);

      await env.ks.halt({ scope: 'agent', agent: 'worker', reason: 'propagation test', actor: 'slack:U0ONCALL' });
      const haltSeq = (
        env.db.prepare("SELECT max(seq) AS s FROM audit WHERE event = 'control.halt'").get() as { s: number }
      ).s;
      // The other process cancels its in-flight call when it observes the halt: once that answer is
      // back, its switch is known to hold the halt, and no probe call had to be let through to learn it.
      await expect.poll(() => ended, PROPAGATION).toBeDefined();
      expect(ended!.isError).toBe(true);
      expect(ended!.text).toMatch(/stopped: agent worker halted/);

      const refused = await call0(worker);
      expect(refused.isError).toBe(true);
      expect(refused.text).toMatch(/agent worker halted by slack:U0ONCALL: propagation test/);

      // Other agents on that process are untouched.
      expect((await call0(observer)).isError).toBe(false);
      const after = await upstreamCounters(observer);
      expect(after.cancelled).toBe(before.cancelled + 1);
      // The only completion since is the observer's own zero-length sleep: nothing of the worker's ran.
      expect(after.completed).toBe(before.completed + 1);

      // From the audit trail (the other process writes its rows on its own schedule): the cancelled
      // in-flight call is the worker's only completion since it was decided, and no worker call was
      // allowed after the halt row. (The completion may even precede the halt row: on PostgreSQL the
      // other replica hears of the halt by NOTIFY before this process's audit append commits.)
      const inflightSeq = (
        env.db
          .prepare(
            "SELECT seq FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'allow' AND args LIKE '%60000%'",
          )
          .get() as { seq: number }
      ).seq;
      await expect
        .poll(
          () =>
            env.db
              .prepare(
                "SELECT decision FROM audit WHERE agent = 'worker' AND event = 'call.completed' AND seq > ? ORDER BY seq",
              )
              .all(inflightSeq),
          PROPAGATION,
        )
        .toEqual([{ decision: 'cancelled' }]);
      const allowedAfter = env.db
        .prepare(
          "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'allow' AND seq > ?",
        )
        .get(haltSeq) as { n: number };
      expect(allowedAfter.n).toBe(0);

      await env.ks.resume({ scope: 'agent', agent: 'worker', actor: 'slack:U0LEAD' });
      await expect.poll(async () => (await call0(worker)).isError, PROPAGATION).toBe(false);
      await worker.close();
      await observer.close();
    });

    it('`warden agents halt all` from a terminal halts both running gateways; resume restores them', async () => {
      const onChild = await connectAgent(env.db, child.url, 'worker');
      const onParent = await connectAgent(env.db, env.gateway.url, 'worker');
      const out = await cli('agents', 'halt', 'all', 'maintenance', 'window');
      expect(out.stdout).toMatch(/HALTED all agents \(org-wide\) .* by cli:\S+: maintenance window/);
      // Neither gateway made the halt: each must pick it up from the database.
      for (const c of [onChild, onParent]) {
        await expect
          .poll(() => call0(c), PROPAGATION)
          .toMatchObject({ isError: true, text: expect.stringMatching(/all agents \(org-wide\) halted by cli:/) });
      }
      const status = await cli('agents', 'status', '--json');
      const parsed = JSON.parse(status.stdout) as {
        orgHalt: { reason: string } | null;
        agents: { agent: string; state: string; denialsLastHour: number }[];
      };
      expect(parsed.orgHalt?.reason).toBe('maintenance window');
      expect(parsed.agents.find((a) => a.agent === 'worker')).toMatchObject({ state: 'halted' });
      expect(parsed.agents.find((a) => a.agent === 'worker')!.denialsLastHour).toBeGreaterThanOrEqual(2);

      const resumed = await cli('agents', 'resume', 'all');
      expect(resumed.stdout).toMatch(/RESUMED org-wide halt/);
      for (const c of [onChild, onParent])
        await expect.poll(async () => (await call0(c)).isError, PROPAGATION).toBe(false);
      await onChild.close();
      await onParent.close();
    });

    it('under a stream of concurrent calls, nothing is forwarded after the halt (audit trail and upstream counter agree)', async () => {
      const worker = await connectAgent(env.db, env.gateway.url, 'worker');
      const observer = await connectAgent(env.db, env.gateway.url, 'warden-canary');
      expect((await worker.call('slow__sleep', { ms: 0 })).isError).toBe(false);
      const before = await upstreamCounters(observer);
      const seqStart = env.audit.head().seq;
      let stop = false;
      const results: { isError: boolean; text: string }[] = [];
      const streams = Array.from({ length: 8 }, async () => {
        while (!stop) results.push(await worker.call('slow__sleep', { ms: 1 }));
      });
      // Some calls through before the halt, and some refused after it: then the streams have crossed it.
      await expect.poll(() => results.filter((r) => !r.isError).length, PROPAGATION).toBeGreaterThanOrEqual(8);
      await env.ks.halt({ scope: 'agent', agent: 'worker', reason: 'stream test', actor: 'cli:test' });
      await expect
        .poll(
          () => results.filter((r) => r.isError && /halted by cli:test: stream test/.test(r.text)).length,
          PROPAGATION,
        )
        .toBeGreaterThanOrEqual(8);
      stop = true;
      await Promise.all(streams);
      await env.audit.flush();

      const haltSeq = (
        env.db.prepare("SELECT max(seq) AS s FROM audit WHERE event = 'control.halt'").get() as { s: number }
      ).s;
      const allowedAfter = env.db
        .prepare(
          "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'allow' AND seq > ?",
        )
        .get(haltSeq) as { n: number };
      expect(allowedAfter.n).toBe(0);
      const refusedAfter = env.db
        .prepare(
          "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'halted' AND seq > ?",
        )
        .get(haltSeq) as { n: number };
      expect(refusedAfter.n).toBeGreaterThan(0);
      // Every sleep the upstream finished is a call the audit shows allowed (before the halt) and completed ok.
      const okCompleted = env.db
        .prepare(
          "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.completed' AND decision = 'ok' AND seq > ?",
        )
        .get(seqStart) as { n: number };
      const after = await upstreamCounters(observer);
      const allowed = env.db
        .prepare(
          "SELECT count(*) AS n FROM audit WHERE agent = 'worker' AND event = 'call.decided' AND decision = 'allow' AND seq > ?",
        )
        .get(seqStart) as { n: number };
      expect(okCompleted.n).toBeGreaterThan(0);
      // Calls in flight at the halt were cancelled by Warden; a 1 ms sleep may still have finished upstream
      // first. Either way, the upstream ran nothing beyond what was allowed before the halt.
      expect(after.completed - before.completed).toBeGreaterThanOrEqual(okCompleted.n);
      expect(after.completed - before.completed).toBeLessThanOrEqual(allowed.n);
      expect((await worker.call('slow__sleep', { ms: 0 })).isError).toBe(true);
      expect((await upstreamCounters(observer)).completed).toBe(after.completed);
      expect(results.some((r) => r.isError && /halted by cli:test: stream test/.test(r.text))).toBe(true);
      await env.ks.resume({ scope: 'agent', agent: 'worker', actor: 'cli:test' });
      await worker.close();
      await observer.close();
    });

    it('`warden agents drill` from a terminal drills the other running gateway across processes', async () => {
      // What is checked is the drill across processes, not its latency (bench/halt.ts): the bound is lifted.
      const out = await cli('agents', 'drill', 'canary', '--gateway-url', child.url, '--max-time-to-halt', '60000');
      expect(out.stdout).toMatch(/PASSED/);
      expect(out.stdout).toMatch(/time to first refused call: [\d.]+ ms/);
      expect(out.stdout).toMatch(/in-flight call cancelled: +yes/);
      expect(out.stdout).toMatch(/restored after resume: +yes/);
      const row = env.db
        .prepare('SELECT ok, time_to_halt_ms, inflight_cancelled FROM drills ORDER BY started_at DESC LIMIT 1')
        .get() as { ok: number; time_to_halt_ms: number | null; inflight_cancelled: number };
      expect(row).toMatchObject({ ok: 1, inflight_cancelled: 1 });
      expect(row.time_to_halt_ms).not.toBeNull();
      expect(env.ks.check('warden-canary')).toBeNull();
    });

    it('the CLI refuses bad targets with exit code 2', async () => {
      const [err, bound] = (await Promise.all([
        cli('agents', 'halt', 'no-such-agent').catch((e: unknown) => e),
        cli('agents', 'drill', 'canary', '--max-time-to-halt', 'soon').catch((e: unknown) => e),
      ])) as { code: number; stderr: string }[];
      expect(err!.code).toBe(2);
      expect(err!.stderr).toMatch(/unknown agent "no-such-agent"; use "all" or one of: warden-canary, worker/);
      expect(bound!.code).toBe(2);
      expect(bound!.stderr).toMatch(/--max-time-to-halt must be a positive number of milliseconds, got "soon"/);
    });
  });
});
