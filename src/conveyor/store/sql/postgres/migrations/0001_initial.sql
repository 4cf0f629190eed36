-- The ledger: runs, their items, units of work (one per item and step), attempts, and results
-- stored once per cache key and shared by every run in the store. The same tables and columns
-- as the SQLite ledger's migration of the same number.

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    pipeline      TEXT NOT NULL,
    pipeline_file TEXT,
    source        TEXT NOT NULL,
    state         TEXT NOT NULL,
    steps         TEXT NOT NULL,              -- JSON list of the run's steps, in order
    options       TEXT NOT NULL DEFAULT '{}', -- JSON: how the run was started
    created_at    DOUBLE PRECISION NOT NULL,
    finished_at   DOUBLE PRECISION,
    message       TEXT
);

CREATE TABLE items (
    run_id  TEXT   NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx     BIGINT NOT NULL,   -- position in the source
    item_id TEXT   NOT NULL,   -- stable id: relative path, --id-field value or content hash
    kind    TEXT   NOT NULL,   -- file, record, group
    key     TEXT   NOT NULL,   -- content hash
    payload BYTEA  NOT NULL,   -- what a worker needs to rebuild the item
    error   TEXT,              -- why the item could not be read, if it could not
    PRIMARY KEY (run_id, idx)
);
CREATE UNIQUE INDEX items_by_id ON items (run_id, item_id);

CREATE TABLE units (
    id            BIGSERIAL PRIMARY KEY,
    run_id        TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    item_idx      BIGINT  NOT NULL,
    step          TEXT    NOT NULL,
    key           TEXT    NOT NULL,   -- cache key: step version + inputs' keys
    state         TEXT    NOT NULL,
    waiting       INTEGER NOT NULL,   -- upstream units of the same item not finished yet
    attempts      INTEGER NOT NULL DEFAULT 0,
    fence         INTEGER NOT NULL DEFAULT 0,  -- bumped by every lease; commits must match it
    lease_owner   TEXT,
    lease_expires DOUBLE PRECISION,
    not_before    DOUBLE PRECISION,   -- earliest time a retry may be claimed
    started_at    DOUBLE PRECISION,
    finished_at   DOUBLE PRECISION,
    duration      DOUBLE PRECISION,
    error_type    TEXT,
    error_message TEXT,
    traceback     TEXT
);
CREATE UNIQUE INDEX units_by_item ON units (run_id, item_idx, step);
CREATE INDEX units_by_state ON units (run_id, state, step);
CREATE INDEX units_ready ON units (run_id, id) WHERE state = 'ready';

CREATE TABLE attempts (
    unit_id       BIGINT  NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    DOUBLE PRECISION,
    duration      DOUBLE PRECISION,
    error_type    TEXT,
    error_message TEXT,
    traceback     TEXT,
    PRIMARY KEY (unit_id, attempt)
);

CREATE TABLE results (
    id         BIGSERIAL PRIMARY KEY,
    key        TEXT   NOT NULL UNIQUE,
    step       TEXT   NOT NULL,
    value      BYTEA  NOT NULL,   -- pickled output
    size       BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
