-- An item id may have several versions in one run (a watched file modified, a record sent
-- again with new content): one row per (id, content). Exports keep the newest version.

DROP INDEX items_by_id;
CREATE UNIQUE INDEX items_by_version ON items (run_id, item_id, key);
CREATE INDEX items_by_id ON items (run_id, item_id, idx);
