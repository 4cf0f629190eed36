-- Alarm rules' states per run, as the last evaluation left them.

CREATE TABLE alarms (
    run_id     TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,   -- firing or resolved
    value      REAL,            -- the metric's value when it changed state
    threshold  REAL NOT NULL,
    message    TEXT NOT NULL,
    changed_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
