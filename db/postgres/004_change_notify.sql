-- What a replica may keep in memory, and when it must stop trusting it
-- (src/store/change-watch.ts): a revoked or deleted agent token
-- (src/gateway/tokens.ts caches the live ones it has seen) and a new or
-- changed held call (src/approvals/store.ts remembers which agents have none).
-- Statement-level: one notification per write, however many rows it touched.
CREATE FUNCTION warden_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('warden_tokens', '');
  RETURN NULL;
END $$;
CREATE TRIGGER agent_tokens_notify AFTER UPDATE OR DELETE OR TRUNCATE ON agent_tokens
  FOR EACH STATEMENT EXECUTE FUNCTION warden_tokens_notify();

CREATE FUNCTION warden_held_calls_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('warden_held_calls', '');
  RETURN NULL;
END $$;
CREATE TRIGGER held_calls_notify AFTER INSERT OR UPDATE ON held_calls
  FOR EACH STATEMENT EXECUTE FUNCTION warden_held_calls_notify();
