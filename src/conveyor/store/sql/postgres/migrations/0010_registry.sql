-- The model registry, append-only: versions are written once, an alias is the last of its moves
-- (each move a row; (name, alias, seq) unique, so two concurrent moves cannot both be the next),
-- and exports of a version. Lineage, metrics, gate verdicts and details are JSON text.

CREATE TABLE model_versions (
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,  -- 1, 2, ... per name
    kind         TEXT NOT NULL,     -- model | model_set
    artifact     TEXT NOT NULL,     -- digest of the pickled model (or of the model set's index)
    format       TEXT NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    run_id       TEXT,
    lineage_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    gate_json    TEXT,              -- the gate's verdict; NULL when not gated
    passed       BOOLEAN,           -- NULL when not gated
    members      INTEGER NOT NULL,  -- groups of a model set, 0 for a model
    PRIMARY KEY (name, version),
    UNIQUE (name, artifact)         -- a cached rerun registers nothing new
);

CREATE TABLE alias_moves (
    name         TEXT NOT NULL,
    alias        TEXT NOT NULL,
    seq          INTEGER NOT NULL,  -- 1, 2, ... per (name, alias): the chain
    from_version INTEGER,
    to_version   INTEGER NOT NULL,
    action       TEXT NOT NULL,     -- promote | rollback
    actor        TEXT NOT NULL,     -- user | gate | alarm
    who          TEXT NOT NULL,
    reason       TEXT NOT NULL,
    forced       BOOLEAN NOT NULL,
    at           DOUBLE PRECISION NOT NULL,
    UNIQUE (name, alias, seq),
    FOREIGN KEY (name, to_version) REFERENCES model_versions (name, version)
);

CREATE TABLE model_exports (
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    format       TEXT NOT NULL,     -- onnx | mlflow
    artifact     TEXT,
    details_json TEXT NOT NULL,
    at           DOUBLE PRECISION NOT NULL,
    FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
);

CREATE INDEX alias_moves_at ON alias_moves (name, at);
CREATE INDEX model_exports_version ON model_exports (name, version, at);
