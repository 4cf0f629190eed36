-- Crash recovery: which coordinator holds a run and when it last showed signs of life, whether
-- planning finished, and the signature of the code a run was planned with (so that running the
-- same command again continues the run only if the code is the same).

ALTER TABLE runs ADD COLUMN coordinator TEXT;   -- host:pid:owner of the coordinator holding it
ALTER TABLE runs ADD COLUMN heartbeat_at DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN planned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN signature TEXT;

CREATE INDEX runs_resumable ON runs (pipeline, source, signature, state);
CREATE INDEX units_leases ON units (run_id, lease_expires) WHERE state = 'running';
