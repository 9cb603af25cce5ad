-- Placeholder so this branch's migration 007 applies in order (db/ must be 1..n without gaps).
-- The real 004 comes from another branch; delete this file when merging.
SELECT 1;
