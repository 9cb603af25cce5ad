-- PostgreSQL twin of db/009_replicas.sql (same table; times are BIGINT milliseconds).
-- Warden processes sharing this database (replicas), owned by src/control/replicas.ts.
-- Each process registers at start and moves heartbeat_at forward every few
-- seconds; one whose heartbeat is older than its own lease_ms (or that marked
-- itself stopped) is dead for everyone, on any host. One survivor claims a dead
-- replica (reaped_by, a compare-and-set) and closes what it left behind: its
-- dangling calls and its pending approvals. The id is the process id that
-- approvals.process_id and held_calls.runner name.
CREATE TABLE replicas (
  id           TEXT    PRIMARY KEY,
  host         TEXT    NOT NULL,
  pid          BIGINT  NOT NULL,
  started_at   BIGINT  NOT NULL,
  heartbeat_at BIGINT  NOT NULL,
  lease_ms     BIGINT  NOT NULL,
  stopped_at   BIGINT,
  reaped_by    TEXT,
  reaped_at    BIGINT
);
CREATE INDEX replicas_unreaped ON replicas (heartbeat_at) WHERE reaped_by IS NULL;
