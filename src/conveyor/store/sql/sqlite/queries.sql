-- Named queries of the SQLite store. Each section starts with "-- name: NAME".
-- Lists are passed as one JSON array parameter and read with json_each.
-- The PostgreSQL store has the same names with the same parameters.

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations
    (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?);

-- name: schema_version
SELECT max(version) FROM schema_migrations;

-- name: insert_run
INSERT INTO runs (id, pipeline, pipeline_file, source, state, steps, options, created_at,
                  signature, coordinator, heartbeat_at)
VALUES (:id, :pipeline, :pipeline_file, :source, :state, :steps, :options, :created_at,
        :signature, :coordinator, :created_at);

-- name: adopt_run
UPDATE runs SET state = 'running', coordinator = :coordinator, heartbeat_at = :now,
                finished_at = NULL, message = NULL
WHERE id = :id;

-- name: release_all_running
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = :run_id AND state = 'running';

-- name: mark_planned
UPDATE runs SET planned = 1 WHERE id = :id;

-- name: heartbeat_run
UPDATE runs SET heartbeat_at = :now WHERE id = :id AND coordinator = :coordinator;

-- name: extend_leases
UPDATE units SET lease_expires = :expires
WHERE run_id = :run_id AND state = 'running' AND lease_owner = :owner;

-- name: expire_leases
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = :run_id AND state = 'running' AND lease_expires < :now;

-- name: find_resumable
SELECT id FROM runs
WHERE pipeline = :pipeline AND source = :source AND signature = :signature
  AND state IN ('running', 'interrupted', 'failed')
ORDER BY created_at DESC LIMIT 1;

-- name: set_run_state
UPDATE runs SET state = :state, message = :message, finished_at = :finished_at WHERE id = :id;

-- name: insert_item
INSERT OR IGNORE INTO items (run_id, idx, item_id, kind, key, payload, error)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: insert_unit
INSERT OR IGNORE INTO units (run_id, item_idx, step, key, state, waiting, finished_at,
                             error_type, error_message, error_signature, ready_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: existing_results
SELECT key FROM results WHERE key IN (SELECT value FROM json_each(:keys));

-- name: claim
UPDATE units
SET state = 'running', fence = fence + 1, attempts = attempts + 1, lease_owner = :owner,
    lease_expires = :expires, started_at = :now
WHERE id IN (
    SELECT id FROM units
    WHERE run_id = :run_id AND state = 'ready'
      AND step IN (SELECT value FROM json_each(:steps))
      AND (not_before IS NULL OR not_before <= :now)
    ORDER BY id LIMIT :limit
)
RETURNING id, item_idx, step, key, fence, attempts, losses;

-- name: claim_items
-- Whole items: every ready or pending unit of :steps of up to :limit items that have a unit
-- ready now and no unit of :steps leased or waiting out a retry delay. A pending unit is
-- leased ahead of its upstream units, to run after them in the same task.
UPDATE units
SET state = 'running', fence = fence + 1, attempts = attempts + 1, lease_owner = :owner,
    lease_expires = :expires, started_at = :now
-- (+ keeps SQLite on the index by item: by state it would read every pending unit of the run)
WHERE run_id = :run_id AND +state IN ('ready', 'pending')
  AND +step IN (SELECT value FROM json_each(:steps))
  AND item_idx IN (
    SELECT r.item_idx FROM units r
    WHERE r.run_id = :run_id AND r.state = 'ready'
      AND r.step IN (SELECT value FROM json_each(:steps))
      AND (r.not_before IS NULL OR r.not_before <= :now)
      AND NOT EXISTS (
        SELECT 1 FROM units o
        WHERE o.run_id = r.run_id AND o.item_idx = r.item_idx
          AND o.step IN (SELECT value FROM json_each(:steps))
          AND (o.state = 'running' OR (o.state = 'ready' AND o.not_before > :now)))
    ORDER BY r.id LIMIT :limit
)
RETURNING id, item_idx, step, key, fence, attempts, losses;

-- name: load_items
SELECT idx, item_id, kind, payload, error FROM items
WHERE run_id = :run_id AND idx IN (SELECT value FROM json_each(:idxs));

-- name: load_inputs
SELECT u.item_idx, u.step, r.value
FROM units u JOIN results r ON r.key = u.key
WHERE u.run_id = :run_id
  AND u.item_idx IN (SELECT value FROM json_each(:idxs))
  AND u.step IN (SELECT value FROM json_each(:steps));

-- name: insert_result
INSERT INTO results (key, step, value, size, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,
                                created_at = excluded.created_at;

-- name: unit_done
UPDATE units
SET state = 'done', finished_at = ?, duration = ?, started_at = ?, lease_owner = NULL,
    lease_expires = NULL, error_type = NULL, error_message = NULL, traceback = NULL
WHERE id = ? AND fence = ? AND state = 'running';

-- name: unit_failed
UPDATE units
SET state = :state, finished_at = :finished_at, duration = :duration, started_at = :started_at,
    lease_owner = NULL, lease_expires = NULL, not_before = :not_before,
    ready_at = CASE WHEN :state = 'ready' THEN coalesce(:not_before, :finished_at) END,
    waiting = CASE WHEN :state = 'ready' THEN 0 ELSE waiting END,
    error_type = :error_type, error_message = :error_message, traceback = :traceback,
    error_signature = :signature, losses = losses + :lost
WHERE id = :id AND fence = :fence AND state = 'running';

-- name: insert_attempt
INSERT OR REPLACE INTO attempts (unit_id, attempt, started_at, duration, error_type,
                                 error_message, traceback, decision, retry_at)
VALUES (:id, :attempt, :started_at, :duration, :error_type, :error_message, :traceback,
        :decision, :retry_at);

-- name: promote
-- (run id, item index, step, how many of its upstream units just finished)
-- A unit leased ahead of its upstream units (in a chain) counts them too, so that it is ready
-- if it is handed back unrun.
UPDATE units
SET waiting = waiting - ?4,
    state = CASE WHEN state = 'pending' AND waiting <= ?4 THEN 'ready' ELSE state END,
    ready_at = CASE WHEN state = 'pending' AND waiting <= ?4 THEN ?5 ELSE ready_at END
WHERE run_id = ?1 AND item_idx = ?2 AND step = ?3 AND state IN ('pending', 'running');

-- name: skip
UPDATE units
SET state = 'skipped', finished_at = :now, error_type = 'Skipped',
    error_message = :message
WHERE run_id = :run_id AND item_idx = :item_idx AND state IN ('pending', 'ready')
  AND step IN (SELECT value FROM json_each(:steps));

-- name: requeue
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE id = ? AND fence = ? AND state = 'running';

-- name: release_running
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = :run_id AND state = 'running' AND lease_owner = :owner;

-- name: get_run
SELECT id, pipeline, pipeline_file, source, state, steps, created_at, finished_at, message,
       options, coordinator, heartbeat_at, planned, signature
FROM runs WHERE id = :id;

-- name: latest_run
SELECT id FROM runs ORDER BY created_at DESC LIMIT 1;

-- name: find_runs
SELECT id FROM runs WHERE id LIKE :prefix || '%' ORDER BY created_at DESC LIMIT 2;

-- name: list_runs
SELECT id, pipeline, pipeline_file, source, state, steps, created_at, finished_at, message,
       options, coordinator, heartbeat_at, planned, signature
FROM runs ORDER BY created_at DESC LIMIT :limit;

-- name: state_counts
SELECT step, state, count(*) FROM units WHERE run_id = :run_id GROUP BY step, state;

-- name: step_timing
SELECT count(duration), min(started_at), max(finished_at) FROM units
WHERE run_id = :run_id AND step = :step AND state = 'done';

-- name: step_duration_at
SELECT duration FROM units
WHERE run_id = :run_id AND step = :step AND state = 'done'
ORDER BY duration LIMIT 1 OFFSET :offset;

-- name: unfinished_count
SELECT count(*) FROM units WHERE run_id = :run_id AND state IN ('pending', 'ready', 'running');

-- name: next_not_before
SELECT min(coalesce(not_before, 0)) FROM units WHERE run_id = :run_id AND state = 'ready';

-- name: next_lease_expiry
SELECT min(lease_expires) FROM units WHERE run_id = :run_id AND state = 'running';

-- name: queue_times
-- next_not_before, next_lease_expiry and unfinished_count in one statement: one snapshot.
SELECT (SELECT min(coalesce(not_before, 0)) FROM units
        WHERE run_id = :run_id AND state = 'ready'),
       (SELECT min(lease_expires) FROM units WHERE run_id = :run_id AND state = 'running'),
       (SELECT count(*) FROM units
        WHERE run_id = :run_id AND state IN ('pending', 'ready', 'running'));

-- name: failures
SELECT i.item_id, u.step, u.state, u.attempts, u.error_type, u.error_message, u.traceback
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = :run_id AND u.state = 'dead'
ORDER BY u.id LIMIT :limit;

-- name: export_page
SELECT i.idx, i.item_id, u.step, u.state, r.value
FROM items i
JOIN units u ON u.run_id = i.run_id AND u.item_idx = i.idx
LEFT JOIN results r ON r.key = u.key AND u.state IN ('done', 'cached')
WHERE i.run_id = :run_id AND i.idx > :after AND i.idx <= :after + :page
  AND i.idx = (SELECT max(v.idx) FROM items v WHERE v.run_id = i.run_id AND v.item_id = i.item_id)
ORDER BY i.idx;

-- name: max_item_idx
SELECT max(idx) FROM items WHERE run_id = :run_id;

-- name: dead_units
SELECT u.id, i.item_id, u.item_idx, u.step, u.attempts, u.error_type, u.error_message,
       u.error_signature, u.finished_at
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = :run_id AND u.state = 'dead'
  AND (:step IS NULL OR u.step = :step)
  AND (:signature IS NULL OR u.error_signature LIKE :signature || '%')
ORDER BY u.id LIMIT :limit OFFSET :offset;

-- name: unit_detail
SELECT u.id, u.run_id, i.item_id, i.kind, i.payload, u.step, u.state, u.attempts, u.key,
       u.error_type, u.error_message, u.traceback, u.error_signature, u.started_at,
       u.finished_at, u.duration
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.id = :id;

-- name: unit_attempts
SELECT attempt, started_at, duration, error_type, error_message, decision, retry_at
FROM attempts WHERE unit_id = :id ORDER BY attempt;

-- name: error_groups
SELECT u.error_signature, u.step, u.error_type, count(*), min(u.finished_at),
       max(u.finished_at), min(u.error_message)
FROM units u
WHERE u.run_id = :run_id AND u.state = 'dead'
GROUP BY u.error_signature, u.step, u.error_type
ORDER BY count(*) DESC, u.step LIMIT :limit;

-- name: error_samples
SELECT i.item_id FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = :run_id AND u.state = 'dead' AND u.error_signature = :signature
ORDER BY u.id LIMIT :limit;

-- name: units_of_items
SELECT u.id, u.item_idx, u.step, u.state, u.key, i.key
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = :run_id AND u.item_idx IN (SELECT value FROM json_each(:idxs));

-- name: reset_unit
-- (state, waiting, key, unit id, run id, ready at)
UPDATE units
SET state = ?1, ready_at = ?6, waiting = ?2, key = ?3, attempts = 0, losses = 0,
    fence = fence + 1,
    lease_owner = NULL, lease_expires = NULL, not_before = NULL, started_at = NULL,
    finished_at = NULL, duration = NULL, error_type = NULL, error_message = NULL,
    traceback = NULL, error_signature = NULL
WHERE id = ?4 AND run_id = ?5;

-- name: set_signature
UPDATE runs SET signature = :signature WHERE id = :id;

-- name: item_units
SELECT u.step, u.state, r.value, u.error_type, u.error_message
FROM items i
JOIN units u ON u.run_id = i.run_id AND u.item_idx = i.idx
LEFT JOIN results r ON r.key = u.key AND u.state IN ('done', 'cached')
WHERE i.run_id = :run_id AND i.item_id = :item_id
ORDER BY i.idx DESC, u.id;

-- name: item_index
SELECT max(idx) FROM items WHERE run_id = :run_id AND item_id = :item_id;

-- name: latest_run_with_item
SELECT r.id FROM runs r
WHERE r.pipeline = :pipeline AND r.source = :source
  AND EXISTS (SELECT 1 FROM items i WHERE i.run_id = r.id AND i.item_id = :item_id)
ORDER BY r.created_at DESC LIMIT 1;

-- name: unfinished_runs
SELECT id FROM runs
WHERE pipeline = :pipeline AND source = :source AND state IN ('running', 'interrupted', 'failed')
ORDER BY created_at;

-- name: unfinished_item_rows
SELECT i.item_id, i.kind, i.key, i.payload, i.error FROM items i
WHERE i.run_id = :run_id AND EXISTS (
    SELECT 1 FROM units u WHERE u.run_id = i.run_id AND u.item_idx = i.idx
      AND u.state IN ('pending', 'ready', 'running'))
ORDER BY i.idx;

-- name: supersede_units
UPDATE units SET state = 'skipped', lease_owner = NULL, lease_expires = NULL,
       error_type = 'Superseded',
       error_message = :message
WHERE run_id = :run_id AND state IN ('pending', 'ready', 'running');

-- name: unfinished_items
SELECT count(DISTINCT item_idx) FROM units
WHERE run_id = :run_id AND state IN ('pending', 'ready', 'running');

-- name: metrics_units
SELECT step, state, count(*) FROM units WHERE run_id = :run_id GROUP BY step, state;

-- name: metrics_durations
-- Finished units per step: how many, their total time, and how many took at most each of the
-- 15 bucket bounds :b0 .. :b14 (cumulative, as Prometheus histograms count), in one pass.
SELECT step, count(*), sum(duration),
       sum(duration <= :b0),
       sum(duration <= :b1),
       sum(duration <= :b2),
       sum(duration <= :b3),
       sum(duration <= :b4),
       sum(duration <= :b5),
       sum(duration <= :b6),
       sum(duration <= :b7),
       sum(duration <= :b8),
       sum(duration <= :b9),
       sum(duration <= :b10),
       sum(duration <= :b11),
       sum(duration <= :b12),
       sum(duration <= :b13),
       sum(duration <= :b14)
FROM units
WHERE run_id = :run_id AND state = 'done' AND duration IS NOT NULL
GROUP BY step;

-- name: metrics_retries
SELECT u.step, count(*) FROM attempts a JOIN units u ON u.id = a.unit_id
WHERE u.run_id = :run_id AND a.decision LIKE 'retry%'
GROUP BY u.step;

-- name: metrics_run
SELECT (SELECT count(*) FROM items WHERE run_id = :run_id),
       (SELECT min(ready_at) FROM units WHERE run_id = :run_id AND state = 'ready');

-- name: alarm_window
SELECT
  (SELECT count(*) FROM units WHERE run_id = :run_id AND state = 'done'
     AND finished_at >= :since AND (:step IS NULL OR step = :step)),
  (SELECT count(*) FROM attempts a JOIN units u ON u.id = a.unit_id
   WHERE u.run_id = :run_id AND a.started_at >= :since AND (:step IS NULL OR u.step = :step)),
  (SELECT count(*) FROM units WHERE run_id = :run_id AND state IN ('ready', 'running')
     AND (:step IS NULL OR step = :step)),
  (SELECT min(ready_at) FROM units WHERE run_id = :run_id AND state = 'ready'
     AND (:step IS NULL OR step = :step));

-- name: alarm_duration_at
SELECT duration FROM units
WHERE run_id = :run_id AND state = 'done' AND finished_at >= :since AND duration IS NOT NULL
  AND (:step IS NULL OR step = :step)
ORDER BY duration LIMIT 1 OFFSET :offset;

-- name: set_alarm
INSERT INTO alarms (run_id, name, state, value, threshold, message, changed_at)
VALUES (:run_id, :name, :state, :value, :threshold, :message, :changed_at)
ON CONFLICT (run_id, name) DO UPDATE
SET state = excluded.state, value = excluded.value, threshold = excluded.threshold,
    message = excluded.message, changed_at = excluded.changed_at;

-- name: alarms
SELECT name, state, value, threshold, message, changed_at FROM alarms
WHERE run_id = :run_id ORDER BY changed_at DESC, name;

-- name: throughput
-- Finished units per step and outcome in :buckets equal time buckets of :width seconds from
-- :start (a unit finished after the last bucket's end counts in the last bucket).
SELECT step, min(CAST((finished_at - :start) / :width AS INTEGER), :buckets - 1) AS bucket,
       sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END),
       sum(CASE WHEN state = 'dead' THEN 1 ELSE 0 END)
FROM units
WHERE run_id = :run_id AND state IN ('done', 'dead') AND finished_at >= :start
GROUP BY step, bucket
ORDER BY step, bucket;

-- name: run_counts
SELECT run_id, state, count(*) FROM units
WHERE run_id IN (SELECT value FROM json_each(:ids))
GROUP BY run_id, state;

-- name: dataset_version_exists
SELECT count(*) FROM datasets WHERE name = :name AND version = :version;

-- name: insert_dataset
INSERT INTO datasets (name, version, pipeline, code_version, created_at, seen_at, row_count,
                      column_count, schema_json, profile_json, report_json, changes_json, artifact)
VALUES (:name, :version, :pipeline, :code_version, :now, :now, :rows, :columns, :schema,
        :profile, :report, :changes, :artifact);

-- name: touch_dataset
-- A version built again: the data is the same, the checks (and so the report) may not be.
UPDATE datasets SET seen_at = :now, report_json = :report, pipeline = :pipeline,
                    code_version = :code_version
WHERE name = :name AND version = :version;

-- name: dataset_versions
SELECT name, version, pipeline, code_version, created_at, seen_at, row_count, column_count,
       schema_json, profile_json, report_json, changes_json, artifact
FROM datasets WHERE name = :name ORDER BY seen_at DESC, created_at DESC;

-- name: dataset_by_prefix
SELECT name, version, pipeline, code_version, created_at, seen_at, row_count, column_count,
       schema_json, profile_json, report_json, changes_json, artifact
FROM datasets WHERE name = :name AND substr(version, 1, length(:prefix)) = :prefix
ORDER BY seen_at DESC LIMIT 2;

-- name: dataset_names
SELECT name FROM datasets GROUP BY name ORDER BY name;

-- The model registry: versions, alias moves and exports are only ever inserted.

-- name: model_version_by_artifact
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = :name AND artifact = :artifact;

-- name: next_model_version
SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = :name;

-- name: insert_model_version
-- Nothing when another writer took the number (or registered the artifact) first: try again.
INSERT INTO model_versions (name, version, kind, artifact, format, created_at, run_id,
                            lineage_json, metrics_json, gate_json, passed, members)
VALUES (:name, :version, :kind, :artifact, :format, :now, :run_id, :lineage, :metrics, :gate,
        :passed, :members)
ON CONFLICT DO NOTHING;

-- name: model_version
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = :name AND version = :version;

-- name: model_versions
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = :name ORDER BY version DESC LIMIT :limit OFFSET :offset;

-- name: model_range
SELECT count(*), min(version), max(version) FROM model_versions WHERE name = :name;

-- name: model_names
SELECT name FROM model_versions GROUP BY name ORDER BY name;

-- name: model_summaries
SELECT v.name, v.kind, s.versions, s.latest, s.updated_at
FROM (SELECT name, count(*) AS versions, max(version) AS latest, max(created_at) AS updated_at
      FROM model_versions GROUP BY name) AS s
JOIN model_versions AS v ON v.name = s.name AND v.version = s.latest
ORDER BY v.name;

-- name: alias_heads
-- Every alias of every model where its last move put it.
SELECT m.name, m.alias, m.to_version, m.at FROM alias_moves AS m
WHERE m.seq = (SELECT max(seq) FROM alias_moves WHERE name = m.name AND alias = m.alias)
ORDER BY m.name, m.alias;

-- name: model_aliases
SELECT m.alias, m.to_version FROM alias_moves AS m
WHERE m.name = :name
  AND m.seq = (SELECT max(seq) FROM alias_moves WHERE name = m.name AND alias = m.alias)
ORDER BY m.alias;

-- name: model_history
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = :name ORDER BY at, alias, seq;

-- name: alias_history
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = :name AND alias = :alias ORDER BY seq;

-- name: last_alias_move
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = :name AND alias = :alias ORDER BY seq DESC LIMIT 1;

-- name: alias_move
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = :name AND alias = :alias AND seq = :seq;

-- name: insert_alias_move
-- Nothing when a concurrent move took this place in the alias's history first.
INSERT INTO alias_moves (name, alias, seq, from_version, to_version, action, actor, who, reason,
                         forced, at)
VALUES (:name, :alias, :seq, :from_version, :to_version, :action, :actor, :who, :reason,
        :forced, :now)
ON CONFLICT DO NOTHING;

-- name: insert_model_export
INSERT INTO model_exports (name, version, format, artifact, details_json, at)
VALUES (:name, :version, :format, :artifact, :details, :now);

-- name: model_exports
SELECT name, version, format, artifact, details_json, at FROM model_exports
WHERE name = :name AND version = :version ORDER BY at;
