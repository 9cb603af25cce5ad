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
  pid          INTEGER NOT NULL,
  started_at   INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  lease_ms     INTEGER NOT NULL,
  stopped_at   INTEGER,
  reaped_by    TEXT,
  reaped_at    INTEGER
);
CREATE INDEX replicas_unreaped ON replicas (heartbeat_at) WHERE reaped_by IS NULL;
