-- Held calls whose agent was answered "not run yet, check back" (answer_within).
-- Owned by src/approvals/store.ts. Such a call outlives the request that asked
-- for it, and Warden's process: a restarted Warden takes the row over, waits
-- for the decision and runs the call on approval.
--
-- `args` is the exact (unredacted) arguments, needed to run the call; it is
-- kept only while the approval can still lead to a run, and set to NULL when
-- the call ends (ran, rejected, expired, cancelled). The audit trail only ever
-- gets the redacted copy. `ending` is how the call ended (its result, or the
-- refusal), kept for the agent to collect once: the row is deleted when it is
-- collected or when expires_at passes, and a halt replaces a kept ending with
-- the halt's refusal. `runner` is the process that took the approved call to
-- run it (one compare-and-set): an approved call nobody took yet may be run by
-- the next Warden; one taken by a process that is gone may have run, so it is
-- never run again.
CREATE TABLE held_calls (
  approval_id      TEXT    PRIMARY KEY,
  call_id          TEXT    NOT NULL,
  agent            TEXT    NOT NULL,
  -- The namespaced tool name the agent called (<server>__<tool>).
  name             TEXT    NOT NULL,
  server           TEXT    NOT NULL,
  tool             TEXT    NOT NULL,
  args_hash        TEXT    NOT NULL,
  args             TEXT,
  -- The agent token the call was made with (agent_tokens.id): revoked while
  -- the call waits, it ends the agent's authority over the call, as it would
  -- have without a restart.
  token_id         TEXT,
  channel          TEXT,
  answer_within_ms INTEGER NOT NULL,
  expires_at       INTEGER NOT NULL,
  runner           TEXT,
  ending           TEXT,
  ended_at         INTEGER
);
CREATE INDEX held_calls_repeat ON held_calls (agent, name, args_hash);
