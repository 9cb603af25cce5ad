-- Placeholder so this branch's migrations stay numbered 1..n: 004 and 005 are
-- reserved for other branches. Delete this file when those land.
SELECT 1;
