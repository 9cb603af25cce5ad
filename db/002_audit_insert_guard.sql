-- The audit table only grows at its end. `INSERT OR REPLACE` of an existing
-- seq would delete the old row without firing audit_no_delete (REPLACE's
-- implicit delete fires triggers only with recursive_triggers on, which
-- openDb now also sets); this trigger refuses any insert that is not past
-- the current head, so history cannot be overwritten or back-filled.
CREATE TRIGGER audit_append_at_end BEFORE INSERT ON audit
WHEN NEW.seq IS NOT NULL AND NEW.seq <= (SELECT coalesce(max(seq), 0) FROM audit)
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only: rows are added after the head only');
END;

CREATE TRIGGER audit_checkpoints_append_at_end BEFORE INSERT ON audit_checkpoints
WHEN NEW.seq < (SELECT coalesce(max(seq), 0) FROM audit_checkpoints)
BEGIN
  SELECT RAISE(ABORT, 'audit checkpoints are append-only: a checkpoint cannot go behind the last one');
END;
