-- One group of audit rows appended in one statement (src/audit/pg-chain.ts).
-- The caller hashed the rows onto the head it believes is current. Inside
-- the same write lock every IMMEDIATE transaction takes (pg-db.ts,
-- WRITE_LOCK_KEY, passed in so it is written once), the function reads the
-- head afresh (each statement of a volatile function takes a new snapshot)
-- and inserts only if it is the one the caller built on; otherwise it inserts
-- nothing and answers the real head, and the caller re-hashes and tries again.
-- One statement means the lock is never held across a round trip to the
-- client, so a replica's own synchronous connection, waiting for the same
-- lock on the same thread, can never wait on this one's next step.
CREATE FUNCTION warden_audit_append(lock_key BIGINT, expected_seq BIGINT, expected_hash TEXT, batch JSON)
RETURNS TABLE (appended BOOLEAN, head_seq BIGINT, head_hash TEXT) LANGUAGE plpgsql AS $$
DECLARE
  cur_seq BIGINT;
  cur_hash TEXT;
BEGIN
  PERFORM pg_advisory_xact_lock(lock_key);
  SELECT a.seq, a.hash INTO cur_seq, cur_hash FROM audit a ORDER BY a.seq DESC LIMIT 1;
  IF cur_seq IS NULL THEN
    cur_seq := 0;
  END IF;
  IF cur_seq <> expected_seq OR (cur_seq > 0 AND cur_hash IS DISTINCT FROM expected_hash) THEN
    RETURN QUERY SELECT false, cur_seq, cur_hash;
    RETURN;
  END IF;
  INSERT INTO audit (seq, ts, event, call_id, agent, owner, server, tool, args, result, decision, reason,
                     approver, duration_ms, detail, prev_hash, hash)
  SELECT r.seq, r.ts, r.event, r.call_id, r.agent, r.owner, r.server, r.tool, r.args, r.result, r.decision,
         r.reason, r.approver, r.duration_ms, r.detail, r.prev_hash, r.hash
  FROM json_to_recordset(batch) AS r(seq BIGINT, ts BIGINT, event TEXT, call_id TEXT, agent TEXT, owner TEXT,
       server TEXT, tool TEXT, args TEXT, result TEXT, decision TEXT, reason TEXT, approver TEXT,
       duration_ms BIGINT, detail TEXT, prev_hash TEXT, hash TEXT)
  ORDER BY r.seq;
  RETURN QUERY SELECT true, cur_seq, cur_hash;
END $$;
