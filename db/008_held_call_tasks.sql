-- A held call made as an MCP task (a task-augmented tools/call): the task's id
-- and lifetime, kept with the held call (owned by src/approvals/store.ts) so
-- that after a Warden restart tasks/get, tasks/result, tasks/cancel and
-- tasks/list still answer for it, from the held call, to the agent that owns it.
-- NULL for a held call whose agent was answered "not run yet" instead.
ALTER TABLE held_calls ADD COLUMN task_id TEXT;
-- When the task was created (epoch ms) and the ttl it was granted (ms), as tasks/get shows them.
ALTER TABLE held_calls ADD COLUMN task_created_at INTEGER;
ALTER TABLE held_calls ADD COLUMN task_ttl_ms INTEGER;
CREATE UNIQUE INDEX held_calls_task ON held_calls (task_id) WHERE task_id IS NOT NULL;
