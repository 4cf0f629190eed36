-- When a unit became ready (planned ready, its last input finished, or a retry came due), for
-- the age of the oldest ready unit. A unit handed back to the queue keeps its time.

ALTER TABLE units ADD COLUMN ready_at DOUBLE PRECISION;
UPDATE units SET ready_at = coalesce(not_before, started_at, 0) WHERE state = 'ready';
