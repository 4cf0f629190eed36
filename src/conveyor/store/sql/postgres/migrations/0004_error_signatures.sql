-- Dead units carry the signature of their error (step, type, normalised message), so errors
-- can be grouped, counted and redriven by signature in SQL.

ALTER TABLE units ADD COLUMN error_signature TEXT;
CREATE INDEX units_by_error ON units (run_id, error_signature) WHERE state = 'dead';
