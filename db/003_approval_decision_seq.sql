-- The audit seq of an approval's `approval.decided` row, set only after that
-- row is committed. A waiter (in any process sharing this database) releases
-- an approved call only when decision_seq IS NOT NULL: the compare-and-set
-- flips `status` before the audit append resolves, so 'approved' alone does
-- not mean the decision is on the record yet. If the append fails the row is
-- moved approved -> failed (WHERE decision_seq IS NULL) and the call never runs.
--
-- Rows decided before this migration keep NULL: migrations run at start-up,
-- so no waiter from before it is still holding a call.
ALTER TABLE approvals ADD COLUMN decision_seq INTEGER;
