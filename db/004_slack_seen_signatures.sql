-- Signatures of signed Slack requests already accepted, owned by
-- src/slack/replay-guard.ts. In the database rather than in memory so a
-- captured request cannot be replayed after a restart, or into another
-- Warden process sharing this file, while its timestamp still passes.
-- expires_at (ms): after it the request would be refused as stale anyway,
-- so the row is pruned.
CREATE TABLE slack_seen_signatures (
  signature  TEXT    PRIMARY KEY,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX slack_seen_signatures_expires ON slack_seen_signatures (expires_at);
