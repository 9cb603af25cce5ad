-- Warden schema on PostgreSQL, version 1: the same tables as SQLite's
-- db/001..007, for replicas sharing one database. Migrations are only ever
-- added, never edited. Times are milliseconds since the epoch (BIGINT).

-- The audit trail. Append-only: triggers refuse UPDATE, DELETE and TRUNCATE
-- and any insert not past the head, and each row carries
-- hash = sha256(prev_hash || canonical row), so an edit made around the
-- triggers is still detected by `warden audit verify`.
CREATE TABLE audit (
  seq         BIGINT PRIMARY KEY,
  ts          BIGINT NOT NULL,
  event       TEXT   NOT NULL,
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
  duration_ms BIGINT,
  detail      TEXT,
  prev_hash   TEXT   NOT NULL,
  hash        TEXT   NOT NULL
);
CREATE INDEX audit_agent_ts ON audit (agent, ts);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_call ON audit (call_id);

CREATE FUNCTION warden_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit FOR EACH ROW EXECUTE FUNCTION warden_refuse();
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit FOR EACH ROW EXECUTE FUNCTION warden_refuse();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse();

CREATE FUNCTION warden_audit_append_at_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit) THEN
    RAISE EXCEPTION 'audit is append-only: rows are added after the head only';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_append_at_end BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION warden_audit_append_at_end();

-- Signed heads of the chain, also posted outside the database.
CREATE TABLE audit_checkpoints (
  seq        BIGINT NOT NULL,
  head_hash  TEXT   NOT NULL,
  ts         BIGINT NOT NULL,
  signature  TEXT   NOT NULL,
  public_key TEXT   NOT NULL,
  posted_to  TEXT
);
CREATE INDEX audit_checkpoints_seq ON audit_checkpoints (seq);

-- A checkpoint is evidence too: only where it was posted may be filled in later.
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OF seq, head_hash, ts, signature, public_key
  ON audit_checkpoints FOR EACH ROW EXECUTE FUNCTION warden_refuse();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION warden_refuse();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION warden_refuse();

CREATE FUNCTION warden_checkpoint_append_at_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq < (SELECT coalesce(max(seq), 0) FROM audit_checkpoints) THEN
    RAISE EXCEPTION 'audit checkpoints are append-only: a checkpoint cannot go behind the last one';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_checkpoints_append_at_end BEFORE INSERT ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION warden_checkpoint_append_at_end();

-- A role that cannot edit history even around the triggers' owner: Warden's
-- own connections need only SELECT and INSERT on these two tables.
REVOKE UPDATE, DELETE, TRUNCATE ON audit, audit_checkpoints FROM PUBLIC;

-- Agent tokens: only a sha256 of the token is kept.
CREATE TABLE agent_tokens (
  id         TEXT PRIMARY KEY,
  agent      TEXT   NOT NULL,
  token_hash TEXT   NOT NULL UNIQUE,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX agent_tokens_agent ON agent_tokens (agent);

-- Tool pinning: the hash of each upstream tool definition when first seen.
CREATE TABLE tool_pins (
  server             TEXT   NOT NULL,
  tool               TEXT   NOT NULL,
  hash               TEXT   NOT NULL,
  definition         TEXT   NOT NULL,
  status             TEXT   NOT NULL CHECK (status IN ('approved', 'blocked')),
  pending_hash       TEXT,
  pending_definition TEXT,
  first_seen         BIGINT NOT NULL,
  updated_at         BIGINT NOT NULL,
  approved_by        TEXT,
  PRIMARY KEY (server, tool)
);

-- Held calls waiting for a human (see db/001 and db/003 for the columns' meaning).
CREATE TABLE approvals (
  id              TEXT PRIMARY KEY,
  call_id         TEXT   NOT NULL,
  agent           TEXT   NOT NULL,
  owner           TEXT,
  server          TEXT   NOT NULL,
  tool            TEXT   NOT NULL,
  args            TEXT   NOT NULL,
  args_hash       TEXT   NOT NULL,
  rule            TEXT   NOT NULL,
  consequence     TEXT   NOT NULL,
  request_reason  TEXT,
  approvers       TEXT   NOT NULL DEFAULT '[]',
  status          TEXT   NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'abandoned', 'failed')),
  requested_at    BIGINT NOT NULL,
  expires_at      BIGINT NOT NULL,
  decided_at      BIGINT,
  decided_by      TEXT,
  decision_reason TEXT,
  channel         TEXT,
  message_ts      TEXT,
  process_id      TEXT,
  outcome         TEXT,
  decision_seq    BIGINT,
  grantable       INTEGER NOT NULL DEFAULT 1,
  grant_max_ms    BIGINT
);
CREATE INDEX approvals_status ON approvals (status);

-- Kill switch: one row per scope ('org' or 'agent:NAME').
CREATE TABLE control_state (
  scope     TEXT PRIMARY KEY,
  halted    INTEGER NOT NULL,
  reason    TEXT,
  actor     TEXT,
  at        BIGINT NOT NULL
);

-- Every replica LISTENs on warden_control: a halt or resume reaches them in
-- one round trip rather than at their next poll.
CREATE FUNCTION warden_control_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('warden_control', NEW.scope);
  RETURN NULL;
END $$;
CREATE TRIGGER control_state_notify AFTER INSERT OR UPDATE ON control_state
  FOR EACH ROW EXECUTE FUNCTION warden_control_notify();

CREATE TABLE drills (
  id                 TEXT PRIMARY KEY,
  mode               TEXT   NOT NULL,
  started_at         BIGINT NOT NULL,
  finished_at        BIGINT,
  ok                 INTEGER,
  time_to_halt_ms    DOUBLE PRECISION,
  inflight_cancelled INTEGER,
  detail             TEXT
);

-- Signatures of signed Slack requests already accepted (src/slack/replay-guard.ts).
CREATE TABLE slack_seen_signatures (
  signature  TEXT   PRIMARY KEY,
  expires_at BIGINT NOT NULL
);
CREATE INDEX slack_seen_signatures_expires ON slack_seen_signatures (expires_at);

-- Held calls whose agent was answered "not run yet, check back" (see db/005).
CREATE TABLE held_calls (
  approval_id      TEXT   PRIMARY KEY,
  call_id          TEXT   NOT NULL,
  agent            TEXT   NOT NULL,
  name             TEXT   NOT NULL,
  server           TEXT   NOT NULL,
  tool             TEXT   NOT NULL,
  args_hash        TEXT   NOT NULL,
  args             TEXT,
  token_id         TEXT,
  channel          TEXT,
  answer_within_ms BIGINT NOT NULL,
  expires_at       BIGINT NOT NULL,
  runner           TEXT,
  ending           TEXT,
  ended_at         BIGINT
);
CREATE INDEX held_calls_repeat ON held_calls (agent, name, args_hash);

-- Agent processes started by `warden run` (src/control/runs.ts).
CREATE TABLE runs (
  id         TEXT PRIMARY KEY,
  agent      TEXT    NOT NULL,
  pid        INTEGER,
  host       TEXT    NOT NULL,
  command    TEXT    NOT NULL,
  workspace  TEXT    NOT NULL,
  sandboxed  INTEGER NOT NULL,
  token_id   TEXT    NOT NULL,
  started_at BIGINT  NOT NULL,
  ended_at   BIGINT,
  exit_code  INTEGER,
  signal     TEXT,
  cause      TEXT
);
CREATE INDEX runs_open ON runs (agent) WHERE ended_at IS NULL;

-- Time-boxed grants (src/approvals/grants.ts).
CREATE TABLE grants (
  id           TEXT   PRIMARY KEY,
  agent        TEXT   NOT NULL,
  server       TEXT   NOT NULL,
  tool         TEXT   NOT NULL,
  approval_id  TEXT,
  granted_by   TEXT   NOT NULL,
  created_at   BIGINT NOT NULL,
  expires_at   BIGINT NOT NULL,
  ended_at     BIGINT,
  ended_by     TEXT,
  end_reason   TEXT
);
CREATE INDEX grants_open ON grants (agent, server, tool) WHERE ended_at IS NULL;
