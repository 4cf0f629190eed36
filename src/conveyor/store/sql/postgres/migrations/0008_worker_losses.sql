-- How many of a unit's attempts ended with its worker lost (killed from outside, out of
-- memory, a lost machine): they count against the step's max_worker_losses, not its retries.

ALTER TABLE units ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;
