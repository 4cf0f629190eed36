-- Dataset versions: one row per (dataset, content fingerprint), with its schema, profile,
-- the report of its checks and what changed since the version before it (all JSON text).

CREATE TABLE datasets (
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,   -- the fingerprint of the whole content (SHA-256, hex)
    pipeline     TEXT NOT NULL,
    code_version TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,     -- when this version was first recorded
    seen_at      DOUBLE PRECISION NOT NULL,     -- when it was last built (the latest version is the newest)
    row_count    BIGINT NOT NULL,
    column_count INTEGER NOT NULL,
    schema_json  TEXT NOT NULL,
    profile_json TEXT NOT NULL,
    report_json  TEXT NOT NULL,
    changes_json TEXT NOT NULL,
    artifact     TEXT NOT NULL,   -- where its Parquet copy lies: a path or a URL
    PRIMARY KEY (name, version)
);

CREATE INDEX datasets_latest ON datasets (name, seen_at);
