/**
 * What `GET /healthz` answers: whether this replica can serve calls now.
 * A pure function of two cheap probes (a `SELECT 1` and each upstream's
 * connection state in memory), so a load balancer may ask often. It names
 * upstreams and says why one is not ready, never a URL, token or credential.
 */

/** One upstream as the gateway holds it: connected, connecting, or down since its last failure. */
export type UpstreamReadiness = 'ready' | 'starting' | 'down';

export type DbProbe = { ok: true } | { ok: false; reason: string };

export interface HealthReport {
  /** 200 when everything answers, 503 otherwise (a load balancer takes the replica out). */
  httpStatus: 200 | 503;
  body: {
    status: 'ok' | 'unavailable';
    db: 'ok' | 'down';
    upstreams: Record<string, UpstreamReadiness>;
    /** Why it is not ok, one line per cause; absent when ok. */
    reasons?: string[];
  };
}

export function healthReport(db: DbProbe, upstreams: Readonly<Record<string, UpstreamReadiness>>): HealthReport {
  const reasons: string[] = [];
  if (!db.ok) reasons.push(`database: ${db.reason}`);
  for (const [server, state] of Object.entries(upstreams).sort(([a], [b]) => a.localeCompare(b)))
    if (state !== 'ready') reasons.push(`upstream ${server}: ${state === 'starting' ? 'still starting' : 'down'}`);
  const ok = reasons.length === 0;
  return {
    httpStatus: ok ? 200 : 503,
    body: {
      status: ok ? 'ok' : 'unavailable',
      db: db.ok ? 'ok' : 'down',
      upstreams: { ...upstreams },
      ...(ok ? {} : { reasons }),
    },
  };
}
