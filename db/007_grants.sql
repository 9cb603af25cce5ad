-- Time-boxed grants: an approver's "yes for the next N minutes" for one agent
-- and one tool. Owned by src/approvals/grants.ts. A grant is in force while
-- ended_at IS NULL and expires_at is in the future; it ends (ended_at set,
-- once) when it expires, is revoked, the agent is halted, or a policy reload
-- takes the tool or the agent's grants away.
CREATE TABLE grants (
  id           TEXT    PRIMARY KEY,
  agent        TEXT    NOT NULL,
  server       TEXT    NOT NULL,
  tool         TEXT    NOT NULL,
  approval_id  TEXT,
  granted_by   TEXT    NOT NULL,
  created_at   INTEGER NOT NULL,
  expires_at   INTEGER NOT NULL,
  ended_at     INTEGER,
  ended_by     TEXT,
  end_reason   TEXT
);
CREATE INDEX grants_open ON grants (agent, server, tool) WHERE ended_at IS NULL;

-- 0 when the rule that held the call says `grant: never`: it may be approved once, never for a while.
ALTER TABLE approvals ADD COLUMN grantable INTEGER NOT NULL DEFAULT 1;
-- The agent's grants.max when the call was held (NULL: none, or not grantable), so the card
-- offers "Approve for …" from the record alone.
ALTER TABLE approvals ADD COLUMN grant_max_ms INTEGER;
