-- Every failed attempt records the retry decision taken on it and when the retry was due.

ALTER TABLE attempts ADD COLUMN decision TEXT;   -- "retry in 1.20s (...)" or "give up (...)"
ALTER TABLE attempts ADD COLUMN retry_at DOUBLE PRECISION;
