-- Agent processes started by `warden run`. Owned by src/control/runs.ts.
-- A row is open (ended_at IS NULL) while its process runs; any Warden process
-- can list them, and a halt is delivered by the run's own supervisor, which
-- watches the kill switch.
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  agent TEXT NOT NULL,
  pid INTEGER,
  host TEXT NOT NULL,
  command TEXT NOT NULL,        -- JSON array: the command and its arguments
  workspace TEXT NOT NULL,
  sandboxed INTEGER NOT NULL,   -- 0 only for `sandbox: none`
  token_id TEXT NOT NULL,       -- the run's own agent token (agent_tokens.id), revoked when it ends
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  exit_code INTEGER,
  signal TEXT,
  cause TEXT                    -- exited | halted | interrupted | failed
);
CREATE INDEX runs_open ON runs (agent) WHERE ended_at IS NULL;
