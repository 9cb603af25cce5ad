-- The PostgreSQL twin of db/008_held_call_tasks.sql: a held call made as an MCP
-- task keeps the task's id and lifetime (owned by src/approvals/store.ts), so a
-- restarted Warden, or another replica, still answers tasks/get, tasks/result,
-- tasks/cancel and tasks/list for it. NULL for a call answered "not run yet".
ALTER TABLE held_calls ADD COLUMN task_id TEXT;
-- When the task was created (epoch ms) and the ttl it was granted (ms).
ALTER TABLE held_calls ADD COLUMN task_created_at BIGINT;
ALTER TABLE held_calls ADD COLUMN task_ttl_ms BIGINT;
CREATE UNIQUE INDEX held_calls_task ON held_calls (task_id) WHERE task_id IS NOT NULL;
