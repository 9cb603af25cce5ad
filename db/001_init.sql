-- Warden schema, version 1. Migrations are only ever added, never edited.

-- The audit trail. Append-only: triggers refuse UPDATE and DELETE, and each
-- row carries hash = sha256(prev_hash || canonical row), so an edit made
-- around the triggers (another tool, a raw file write) is still detected.
CREATE TABLE audit (
  seq         INTEGER PRIMARY KEY,
  ts          INTEGER NOT NULL,
  event       TEXT    NOT NULL,
  call_id     TEXT,
  agent       TEXT,
  owner       TEXT,
  server      TEXT,
  tool        TEXT,
  args        TEXT,
  result      TEXT,
  decision    TEXT,
  reason      TEXT,
  approver    TEXT,
  duration_ms INTEGER,
  detail      TEXT,
  prev_hash   TEXT    NOT NULL,
  hash        TEXT    NOT NULL
);
CREATE INDEX audit_agent_ts ON audit (agent, ts);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_call ON audit (call_id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only: DELETE refused');
END;

-- Signed heads of the chain, also posted outside the database.
CREATE TABLE audit_checkpoints (
  seq        INTEGER NOT NULL,
  head_hash  TEXT    NOT NULL,
  ts         INTEGER NOT NULL,
  signature  TEXT    NOT NULL,
  public_key TEXT    NOT NULL,
  posted_to  TEXT
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

-- A checkpoint is evidence too: only where it was posted may be filled in later.
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OF seq, head_hash, ts, signature, public_key ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END;

-- Agent tokens: only a sha256 of the token is kept.
CREATE TABLE agent_tokens (
  id         TEXT PRIMARY KEY,
  agent      TEXT    NOT NULL,
  token_hash TEXT    NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX agent_tokens_agent ON agent_tokens (agent);

-- Tool pinning: the hash of each upstream tool definition when first seen.
CREATE TABLE tool_pins (
  server             TEXT    NOT NULL,
  tool               TEXT    NOT NULL,
  hash               TEXT    NOT NULL,
  definition         TEXT    NOT NULL,
  status             TEXT    NOT NULL CHECK (status IN ('approved', 'blocked')),
  pending_hash       TEXT,
  pending_definition TEXT,
  first_seen         INTEGER NOT NULL,
  updated_at         INTEGER NOT NULL,
  approved_by        TEXT,
  PRIMARY KEY (server, tool)
);

-- Held calls waiting for a human. status moves out of 'pending' exactly once
-- (compare-and-set on status).
CREATE TABLE approvals (
  id              TEXT PRIMARY KEY,
  call_id         TEXT    NOT NULL,
  agent           TEXT    NOT NULL,
  owner           TEXT,
  server          TEXT    NOT NULL,
  tool            TEXT    NOT NULL,
  args            TEXT    NOT NULL,
  args_hash       TEXT    NOT NULL,
  rule            TEXT    NOT NULL,
  consequence     TEXT    NOT NULL,
  -- Why the call is held (policy's sentence), shown on the card.
  request_reason  TEXT,
  -- Snapshot of who could decide when the call was held (JSON array of Slack
  -- user ids, owner included); used when no live policy is at hand.
  approvers       TEXT    NOT NULL DEFAULT '[]',
  status          TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'abandoned', 'failed')),
  requested_at    INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL,
  decided_at      INTEGER,
  decided_by      TEXT,
  decision_reason TEXT,
  channel         TEXT,
  message_ts      TEXT,
  process_id      TEXT,
  outcome         TEXT
);
CREATE INDEX approvals_status ON approvals (status);

-- Kill switch: one row per scope ('org' or 'agent:NAME').
CREATE TABLE control_state (
  scope     TEXT PRIMARY KEY,
  halted    INTEGER NOT NULL,
  reason    TEXT,
  actor     TEXT,
  at        INTEGER NOT NULL
);

CREATE TABLE drills (
  id                 TEXT PRIMARY KEY,
  mode               TEXT    NOT NULL,
  started_at         INTEGER NOT NULL,
  finished_at        INTEGER,
  ok                 INTEGER,
  time_to_halt_ms    REAL,
  inflight_cancelled INTEGER,
  detail             TEXT
);
