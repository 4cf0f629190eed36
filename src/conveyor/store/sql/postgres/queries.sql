-- Named queries of the PostgreSQL store: the SQLite store's names with the same parameters.
--
-- Lists are passed as one JSON array parameter, as in SQLite, and read with
-- = ANY(ARRAY(SELECT json_array_elements_text(...))): planning does not look at each of
-- thousands of values, as it does with an array parameter (several times slower).
--
-- A query run once over a batch of rows ("-- batch: (columns)") takes the rows as one JSON
-- array of arrays, each in the order of the SQLite query's positional parameters, with bytes
-- in base64: one statement and one parameter for thousands of rows, cheap to encode.

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations
    (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL);

-- name: applied_migrations
SELECT version FROM schema_migrations;

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s);

-- name: schema_version
SELECT max(version) FROM schema_migrations;

-- name: migrations_table
SELECT to_regclass('schema_migrations') IS NOT NULL;

-- name: migration_lock
-- Held until the transaction ends: processes starting together migrate one after another.
SELECT pg_advisory_xact_lock(%s);

-- name: insert_run
INSERT INTO runs (id, pipeline, pipeline_file, source, state, steps, options, created_at,
                  signature, coordinator, heartbeat_at)
VALUES (%(id)s, %(pipeline)s, %(pipeline_file)s, %(source)s, %(state)s, %(steps)s, %(options)s,
        %(created_at)s, %(signature)s, %(coordinator)s, %(created_at)s);

-- name: adopt_run
UPDATE runs SET state = 'running', coordinator = %(coordinator)s, heartbeat_at = %(now)s,
                finished_at = NULL, message = NULL
WHERE id = %(id)s;

-- name: release_all_running
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = %(run_id)s AND state = 'running';

-- name: mark_planned
UPDATE runs SET planned = 1 WHERE id = %(id)s;

-- name: heartbeat_run
UPDATE runs SET heartbeat_at = %(now)s WHERE id = %(id)s AND coordinator = %(coordinator)s;

-- name: extend_leases
UPDATE units SET lease_expires = %(expires)s
WHERE run_id = %(run_id)s AND state = 'running' AND lease_owner = %(owner)s;

-- name: expire_leases
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = %(run_id)s AND state = 'running' AND lease_expires < %(now)s;

-- name: find_resumable
SELECT id FROM runs
WHERE pipeline = %(pipeline)s AND source = %(source)s AND signature = %(signature)s
  AND state IN ('running', 'interrupted', 'failed')
ORDER BY created_at DESC LIMIT 1;

-- name: set_run_state
UPDATE runs SET state = %(state)s, message = %(message)s, finished_at = %(finished_at)s
WHERE id = %(id)s;

-- name: insert_item
-- batch: (run id, index, id, kind, key, payload, error)
INSERT INTO items (run_id, idx, item_id, kind, key, payload, error)
SELECT r->>0, (r->>1)::bigint, r->>2, r->>3, r->>4, decode(r->>5, 'base64'), r->>6
FROM json_array_elements(%s::json) AS r
ON CONFLICT DO NOTHING;

-- name: insert_unit
-- batch: (run id, item index, step, key, state, waiting, finished at, error type, error
-- message, error signature, ready at)
INSERT INTO units (run_id, item_idx, step, key, state, waiting, finished_at,
                   error_type, error_message, error_signature, ready_at)
SELECT r->>0, (r->>1)::bigint, r->>2, r->>3, r->>4, (r->>5)::integer, (r->>6)::float8,
       r->>7, r->>8, r->>9, (r->>10)::float8
FROM json_array_elements(%s::json) AS r
ON CONFLICT DO NOTHING;

-- name: existing_results
SELECT key FROM results
WHERE key = ANY(ARRAY(SELECT json_array_elements_text(%(keys)s::json)));

-- name: claim
-- Rows another transaction is claiming or committing are skipped, not waited for: concurrent
-- coordinators on one run never lease the same unit and never queue behind each other.
WITH picked AS (
    SELECT id FROM units
    WHERE run_id = %(run_id)s AND state = 'ready'
      AND step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)))
      AND (not_before IS NULL OR not_before <= %(now)s)
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE units u
SET state = 'running', fence = u.fence + 1, attempts = u.attempts + 1,
    lease_owner = %(owner)s, lease_expires = %(expires)s, started_at = %(now)s
FROM picked
WHERE u.id = picked.id
RETURNING u.id, u.item_idx, u.step, u.key, u.fence, u.attempts, u.losses;

-- name: claim_items
-- Whole items: every ready or pending unit of :steps of up to :limit items that have a unit
-- ready now and no unit of :steps leased or waiting out a retry delay. A pending unit is
-- leased ahead of its upstream units, to run after them in the same task. Rows another
-- transaction holds are skipped: a coordinator may get part of an item, and hands back what it
-- cannot run.
WITH picked AS (
    SELECT u.id FROM units u
    WHERE u.run_id = %(run_id)s AND u.state IN ('ready', 'pending')
      AND u.step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)))
      AND u.item_idx IN (
        SELECT r.item_idx FROM units r
        WHERE r.run_id = %(run_id)s AND r.state = 'ready'
          AND r.step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)))
          AND (r.not_before IS NULL OR r.not_before <= %(now)s)
          AND NOT EXISTS (
            SELECT 1 FROM units o
            WHERE o.run_id = r.run_id AND o.item_idx = r.item_idx
              AND o.step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)))
              AND (o.state = 'running' OR (o.state = 'ready' AND o.not_before > %(now)s)))
        ORDER BY r.id LIMIT %(limit)s
      )
    FOR UPDATE SKIP LOCKED
)
UPDATE units u
SET state = 'running', fence = u.fence + 1, attempts = u.attempts + 1,
    lease_owner = %(owner)s, lease_expires = %(expires)s, started_at = %(now)s
FROM picked
WHERE u.id = picked.id
RETURNING u.id, u.item_idx, u.step, u.key, u.fence, u.attempts, u.losses;

-- name: load_items
SELECT idx, item_id, kind, payload, error FROM items
WHERE run_id = %(run_id)s
  AND idx = ANY(ARRAY(SELECT json_array_elements_text(%(idxs)s::json)::bigint));

-- name: load_inputs
SELECT u.item_idx, u.step, r.value
FROM units u JOIN results r ON r.key = u.key
WHERE u.run_id = %(run_id)s
  AND u.item_idx = ANY(ARRAY(SELECT json_array_elements_text(%(idxs)s::json)::bigint))
  AND u.step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)));

-- name: insert_result
-- batch: (key, step, value, size, created at); keys are distinct within a batch
INSERT INTO results (key, step, value, size, created_at)
SELECT r->>0, r->>1, decode(r->>2, 'base64'), (r->>3)::bigint, (r->>4)::float8
FROM json_array_elements(%s::json) AS r
ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,
                                created_at = excluded.created_at;

-- name: unit_done
-- batch: (finished at, duration, started at, unit id, fence); returns the units it marked
UPDATE units u
SET state = 'done', finished_at = v.finished_at, duration = v.duration,
    started_at = v.started_at, lease_owner = NULL, lease_expires = NULL, error_type = NULL,
    error_message = NULL, traceback = NULL
FROM (SELECT (r->>0)::float8 AS finished_at, (r->>1)::float8 AS duration,
             (r->>2)::float8 AS started_at, (r->>3)::bigint AS id, (r->>4)::integer AS fence
      FROM json_array_elements(%s::json) AS r) AS v
WHERE u.id = v.id AND u.fence = v.fence AND u.state = 'running'
RETURNING u.id;

-- name: unit_failed
UPDATE units
SET state = %(state)s, finished_at = %(finished_at)s, duration = %(duration)s,
    started_at = %(started_at)s, lease_owner = NULL, lease_expires = NULL,
    not_before = %(not_before)s,
    ready_at = CASE WHEN %(state)s::text = 'ready'
                    THEN coalesce(%(not_before)s::float8, %(finished_at)s::float8) END,
    waiting = CASE WHEN %(state)s::text = 'ready' THEN 0 ELSE waiting END,
    error_type = %(error_type)s,
    error_message = %(error_message)s, traceback = %(traceback)s,
    error_signature = %(signature)s, losses = losses + %(lost)s::integer
WHERE id = %(id)s AND fence = %(fence)s AND state = 'running';

-- name: insert_attempt
INSERT INTO attempts (unit_id, attempt, started_at, duration, error_type, error_message,
                      traceback, decision, retry_at)
VALUES (%(id)s, %(attempt)s, %(started_at)s, %(duration)s, %(error_type)s, %(error_message)s,
        %(traceback)s, %(decision)s, %(retry_at)s)
ON CONFLICT (unit_id, attempt) DO UPDATE
SET started_at = excluded.started_at, duration = excluded.duration,
    error_type = excluded.error_type, error_message = excluded.error_message,
    traceback = excluded.traceback, decision = excluded.decision, retry_at = excluded.retry_at;

-- name: promote
-- batch: (run id, item index, step, how many of its upstream units just finished, now)
-- A unit leased ahead of its upstream units (in a chain) counts them too, so that it is ready
-- if it is handed back unrun.
UPDATE units u
SET waiting = u.waiting - v.n,
    state = CASE WHEN u.state = 'pending' AND u.waiting <= v.n THEN 'ready' ELSE u.state END,
    ready_at = CASE WHEN u.state = 'pending' AND u.waiting <= v.n THEN v.now ELSE u.ready_at END
FROM (SELECT r->>0 AS run_id, (r->>1)::bigint AS item_idx, r->>2 AS step,
             (r->>3)::integer AS n, (r->>4)::float8 AS now
      FROM json_array_elements(%s::json) AS r) AS v
WHERE u.run_id = v.run_id AND u.item_idx = v.item_idx AND u.step = v.step
  AND u.state IN ('pending', 'running');

-- name: skip
UPDATE units
SET state = 'skipped', finished_at = %(now)s, error_type = 'Skipped',
    error_message = %(message)s
WHERE run_id = %(run_id)s AND item_idx = %(item_idx)s AND state IN ('pending', 'ready')
  AND step = ANY(ARRAY(SELECT json_array_elements_text(%(steps)s::json)));

-- name: requeue
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE id = %s AND fence = %s AND state = 'running';

-- name: release_running
-- A unit leased ahead of its upstream units (in an item's chain) goes back to waiting for them.
UPDATE units SET state = CASE WHEN waiting > 0 THEN 'pending' ELSE 'ready' END,
                 attempts = attempts - 1, lease_owner = NULL, lease_expires = NULL
WHERE run_id = %(run_id)s AND state = 'running' AND lease_owner = %(owner)s;

-- name: get_run
SELECT id, pipeline, pipeline_file, source, state, steps, created_at, finished_at, message,
       options, coordinator, heartbeat_at, planned, signature
FROM runs WHERE id = %(id)s;

-- name: latest_run
SELECT id FROM runs ORDER BY created_at DESC LIMIT 1;

-- name: find_runs
SELECT id FROM runs WHERE id LIKE %(prefix)s || '%%' ORDER BY created_at DESC LIMIT 2;

-- name: list_runs
SELECT id, pipeline, pipeline_file, source, state, steps, created_at, finished_at, message,
       options, coordinator, heartbeat_at, planned, signature
FROM runs ORDER BY created_at DESC LIMIT %(limit)s;

-- name: state_counts
SELECT step, state, count(*) FROM units WHERE run_id = %(run_id)s GROUP BY step, state;

-- name: step_timing
SELECT count(duration), min(started_at), max(finished_at) FROM units
WHERE run_id = %(run_id)s AND step = %(step)s AND state = 'done';

-- name: step_duration_at
SELECT duration FROM units
WHERE run_id = %(run_id)s AND step = %(step)s AND state = 'done'
ORDER BY duration LIMIT 1 OFFSET %(offset)s;

-- name: unfinished_count
SELECT count(*) FROM units
WHERE run_id = %(run_id)s AND state IN ('pending', 'ready', 'running');

-- name: next_not_before
SELECT min(coalesce(not_before, 0)) FROM units WHERE run_id = %(run_id)s AND state = 'ready';

-- name: next_lease_expiry
SELECT min(lease_expires) FROM units WHERE run_id = %(run_id)s AND state = 'running';

-- name: queue_times
-- next_not_before, next_lease_expiry and unfinished_count in one statement: one snapshot.
SELECT (SELECT min(coalesce(not_before, 0)) FROM units
        WHERE run_id = %(run_id)s AND state = 'ready'),
       (SELECT min(lease_expires) FROM units WHERE run_id = %(run_id)s AND state = 'running'),
       (SELECT count(*) FROM units
        WHERE run_id = %(run_id)s AND state IN ('pending', 'ready', 'running'));

-- name: failures
SELECT i.item_id, u.step, u.state, u.attempts, u.error_type, u.error_message, u.traceback
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = %(run_id)s AND u.state = 'dead'
ORDER BY u.id LIMIT %(limit)s;

-- name: export_page
SELECT i.idx, i.item_id, u.step, u.state, r.value
FROM items i
JOIN units u ON u.run_id = i.run_id AND u.item_idx = i.idx
LEFT JOIN results r ON r.key = u.key AND u.state IN ('done', 'cached')
WHERE i.run_id = %(run_id)s AND i.idx > %(after)s AND i.idx <= %(after)s + %(page)s
  AND i.idx = (SELECT max(v.idx) FROM items v WHERE v.run_id = i.run_id AND v.item_id = i.item_id)
ORDER BY i.idx;

-- name: max_item_idx
SELECT max(idx) FROM items WHERE run_id = %(run_id)s;

-- name: dead_units
-- A negative limit means no limit, as in SQLite.
SELECT u.id, i.item_id, u.item_idx, u.step, u.attempts, u.error_type, u.error_message,
       u.error_signature, u.finished_at
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = %(run_id)s AND u.state = 'dead'
  AND (%(step)s::text IS NULL OR u.step = %(step)s)
  AND (%(signature)s::text IS NULL OR u.error_signature LIKE %(signature)s || '%%')
ORDER BY u.id
LIMIT CASE WHEN %(limit)s::bigint < 0 THEN NULL ELSE %(limit)s::bigint END
OFFSET %(offset)s::bigint;

-- name: unit_detail
SELECT u.id, u.run_id, i.item_id, i.kind, i.payload, u.step, u.state, u.attempts, u.key,
       u.error_type, u.error_message, u.traceback, u.error_signature, u.started_at,
       u.finished_at, u.duration
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.id = %(id)s;

-- name: unit_attempts
SELECT attempt, started_at, duration, error_type, error_message, decision, retry_at
FROM attempts WHERE unit_id = %(id)s ORDER BY attempt;

-- name: error_groups
SELECT u.error_signature, u.step, u.error_type, count(*), min(u.finished_at),
       max(u.finished_at), min(u.error_message)
FROM units u
WHERE u.run_id = %(run_id)s AND u.state = 'dead'
GROUP BY u.error_signature, u.step, u.error_type
ORDER BY count(*) DESC, u.step LIMIT %(limit)s;

-- name: error_samples
SELECT i.item_id FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = %(run_id)s AND u.state = 'dead' AND u.error_signature = %(signature)s
ORDER BY u.id LIMIT %(limit)s;

-- name: units_of_items
SELECT u.id, u.item_idx, u.step, u.state, u.key, i.key
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.run_id = %(run_id)s
  AND u.item_idx = ANY(ARRAY(SELECT json_array_elements_text(%(idxs)s::json)::bigint));

-- name: reset_unit
-- batch: (state, waiting, key, unit id, run id, ready at)
UPDATE units u
SET state = v.state, ready_at = v.ready_at, waiting = v.waiting, key = v.key, attempts = 0,
    losses = 0, fence = u.fence + 1,
    lease_owner = NULL, lease_expires = NULL, not_before = NULL, started_at = NULL,
    finished_at = NULL, duration = NULL, error_type = NULL, error_message = NULL,
    traceback = NULL, error_signature = NULL
FROM (SELECT r->>0 AS state, (r->>1)::integer AS waiting, r->>2 AS key,
             (r->>3)::bigint AS id, r->>4 AS run_id, (r->>5)::float8 AS ready_at
      FROM json_array_elements(%s::json) AS r) AS v
WHERE u.id = v.id AND u.run_id = v.run_id;

-- name: set_signature
UPDATE runs SET signature = %(signature)s WHERE id = %(id)s;

-- name: item_units
SELECT u.step, u.state, r.value, u.error_type, u.error_message
FROM items i
JOIN units u ON u.run_id = i.run_id AND u.item_idx = i.idx
LEFT JOIN results r ON r.key = u.key AND u.state IN ('done', 'cached')
WHERE i.run_id = %(run_id)s AND i.item_id = %(item_id)s
ORDER BY i.idx DESC, u.id;

-- name: unfinished_items
SELECT count(DISTINCT item_idx) FROM units
WHERE run_id = %(run_id)s AND state IN ('pending', 'ready', 'running');

-- name: item_index
SELECT max(idx) FROM items WHERE run_id = %(run_id)s AND item_id = %(item_id)s;

-- name: latest_run_with_item
SELECT r.id FROM runs r
WHERE r.pipeline = %(pipeline)s AND r.source = %(source)s
  AND EXISTS (SELECT 1 FROM items i WHERE i.run_id = r.id AND i.item_id = %(item_id)s)
ORDER BY r.created_at DESC LIMIT 1;

-- name: unfinished_runs
SELECT id FROM runs
WHERE pipeline = %(pipeline)s AND source = %(source)s AND state IN ('running', 'interrupted', 'failed')
ORDER BY created_at;

-- name: unfinished_item_rows
SELECT i.item_id, i.kind, i.key, i.payload, i.error FROM items i
WHERE i.run_id = %(run_id)s AND EXISTS (
    SELECT 1 FROM units u WHERE u.run_id = i.run_id AND u.item_idx = i.idx
      AND u.state IN ('pending', 'ready', 'running'))
ORDER BY i.idx;

-- name: supersede_units
UPDATE units SET state = 'skipped', lease_owner = NULL, lease_expires = NULL,
       error_type = 'Superseded',
       error_message = %(message)s
WHERE run_id = %(run_id)s AND state IN ('pending', 'ready', 'running');

-- name: metrics_units
SELECT step, state, count(*) FROM units WHERE run_id = %(run_id)s GROUP BY step, state;

-- name: metrics_durations
-- Finished units per step: how many, their total time, and how many took at most each of the
-- 15 bucket bounds b0 .. b14 (cumulative, as Prometheus histograms count), in one pass.
SELECT step, count(*), sum(duration),
       sum((duration <= %(b0)s)::int),
       sum((duration <= %(b1)s)::int),
       sum((duration <= %(b2)s)::int),
       sum((duration <= %(b3)s)::int),
       sum((duration <= %(b4)s)::int),
       sum((duration <= %(b5)s)::int),
       sum((duration <= %(b6)s)::int),
       sum((duration <= %(b7)s)::int),
       sum((duration <= %(b8)s)::int),
       sum((duration <= %(b9)s)::int),
       sum((duration <= %(b10)s)::int),
       sum((duration <= %(b11)s)::int),
       sum((duration <= %(b12)s)::int),
       sum((duration <= %(b13)s)::int),
       sum((duration <= %(b14)s)::int)
FROM units
WHERE run_id = %(run_id)s AND state = 'done' AND duration IS NOT NULL
GROUP BY step;

-- name: metrics_retries
SELECT u.step, count(*) FROM attempts a JOIN units u ON u.id = a.unit_id
WHERE u.run_id = %(run_id)s AND a.decision LIKE 'retry%%'
GROUP BY u.step;

-- name: metrics_run
SELECT (SELECT count(*) FROM items WHERE run_id = %(run_id)s),
       (SELECT min(ready_at) FROM units WHERE run_id = %(run_id)s AND state = 'ready');

-- name: alarm_window
SELECT
  (SELECT count(*) FROM units WHERE run_id = %(run_id)s AND state = 'done'
     AND finished_at >= %(since)s AND (%(step)s::text IS NULL OR step = %(step)s)),
  (SELECT count(*) FROM attempts a JOIN units u ON u.id = a.unit_id
   WHERE u.run_id = %(run_id)s AND a.started_at >= %(since)s
     AND (%(step)s::text IS NULL OR u.step = %(step)s)),
  (SELECT count(*) FROM units WHERE run_id = %(run_id)s AND state IN ('ready', 'running')
     AND (%(step)s::text IS NULL OR step = %(step)s)),
  (SELECT min(ready_at) FROM units WHERE run_id = %(run_id)s AND state = 'ready'
     AND (%(step)s::text IS NULL OR step = %(step)s));

-- name: alarm_duration_at
SELECT duration FROM units
WHERE run_id = %(run_id)s AND state = 'done' AND finished_at >= %(since)s
  AND duration IS NOT NULL
  AND (%(step)s::text IS NULL OR step = %(step)s)
ORDER BY duration LIMIT 1 OFFSET %(offset)s;

-- name: set_alarm
INSERT INTO alarms (run_id, name, state, value, threshold, message, changed_at)
VALUES (%(run_id)s, %(name)s, %(state)s, %(value)s, %(threshold)s, %(message)s, %(changed_at)s)
ON CONFLICT (run_id, name) DO UPDATE
SET state = excluded.state, value = excluded.value, threshold = excluded.threshold,
    message = excluded.message, changed_at = excluded.changed_at;

-- name: alarms
SELECT name, state, value, threshold, message, changed_at FROM alarms
WHERE run_id = %(run_id)s ORDER BY changed_at DESC, name;

-- name: throughput
-- Finished units per step and outcome in %(buckets)s equal time buckets of %(width)s seconds
-- from %(start)s (a unit finished after the last bucket's end counts in the last bucket).
SELECT step,
       least(floor((finished_at - %(start)s::double precision) / %(width)s::double precision),
             %(buckets)s::integer - 1)::integer AS bucket,
       count(*) FILTER (WHERE state = 'done'),
       count(*) FILTER (WHERE state = 'dead')
FROM units
WHERE run_id = %(run_id)s AND state IN ('done', 'dead') AND finished_at >= %(start)s
GROUP BY step, bucket
ORDER BY step, bucket;

-- name: run_counts
SELECT run_id, state, count(*) FROM units
WHERE run_id = ANY(ARRAY(SELECT json_array_elements_text(%(ids)s::json)))
GROUP BY run_id, state;

-- name: dataset_version_exists
SELECT count(*) FROM datasets WHERE name = %(name)s AND version = %(version)s;

-- name: insert_dataset
INSERT INTO datasets (name, version, pipeline, code_version, created_at, seen_at, row_count,
                      column_count, schema_json, profile_json, report_json, changes_json, artifact)
VALUES (%(name)s, %(version)s, %(pipeline)s, %(code_version)s, %(now)s, %(now)s, %(rows)s,
        %(columns)s, %(schema)s, %(profile)s, %(report)s, %(changes)s, %(artifact)s);

-- name: touch_dataset
-- A version built again: the data is the same, the checks (and so the report) may not be.
UPDATE datasets SET seen_at = %(now)s, report_json = %(report)s, pipeline = %(pipeline)s,
                    code_version = %(code_version)s
WHERE name = %(name)s AND version = %(version)s;

-- name: dataset_versions
SELECT name, version, pipeline, code_version, created_at, seen_at, row_count, column_count,
       schema_json, profile_json, report_json, changes_json, artifact
FROM datasets WHERE name = %(name)s ORDER BY seen_at DESC, created_at DESC;

-- name: dataset_by_prefix
SELECT name, version, pipeline, code_version, created_at, seen_at, row_count, column_count,
       schema_json, profile_json, report_json, changes_json, artifact
FROM datasets WHERE name = %(name)s AND left(version, length(%(prefix)s::text)) = %(prefix)s::text
ORDER BY seen_at DESC LIMIT 2;

-- name: dataset_names
SELECT name FROM datasets GROUP BY name ORDER BY name;

-- The model registry: versions, alias moves and exports are only ever inserted.

-- name: model_version_by_artifact
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = %(name)s AND artifact = %(artifact)s;

-- name: next_model_version
SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = %(name)s;

-- name: insert_model_version
-- Nothing when another writer took the number (or registered the artifact) first: try again.
INSERT INTO model_versions (name, version, kind, artifact, format, created_at, run_id,
                            lineage_json, metrics_json, gate_json, passed, members)
VALUES (%(name)s, %(version)s, %(kind)s, %(artifact)s, %(format)s, %(now)s, %(run_id)s,
        %(lineage)s, %(metrics)s, %(gate)s, %(passed)s, %(members)s)
ON CONFLICT DO NOTHING;

-- name: model_version
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = %(name)s AND version = %(version)s;

-- name: model_versions
SELECT name, version, kind, artifact, format, created_at, run_id, lineage_json, metrics_json,
       gate_json, passed, members
FROM model_versions WHERE name = %(name)s ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: model_range
SELECT count(*), min(version), max(version) FROM model_versions WHERE name = %(name)s;

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
WHERE m.name = %(name)s
  AND m.seq = (SELECT max(seq) FROM alias_moves WHERE name = m.name AND alias = m.alias)
ORDER BY m.alias;

-- name: model_history
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = %(name)s ORDER BY at, alias, seq;

-- name: alias_history
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = %(name)s AND alias = %(alias)s ORDER BY seq;

-- name: last_alias_move
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = %(name)s AND alias = %(alias)s ORDER BY seq DESC LIMIT 1;

-- name: alias_move
SELECT name, alias, seq, from_version, to_version, action, actor, who, reason, forced, at
FROM alias_moves WHERE name = %(name)s AND alias = %(alias)s AND seq = %(seq)s;

-- name: insert_alias_move
-- Nothing when a concurrent move took this place in the alias's history first.
INSERT INTO alias_moves (name, alias, seq, from_version, to_version, action, actor, who, reason,
                         forced, at)
VALUES (%(name)s, %(alias)s, %(seq)s, %(from_version)s, %(to_version)s, %(action)s,
        %(actor)s, %(who)s, %(reason)s, %(forced)s, %(now)s)
ON CONFLICT DO NOTHING;

-- name: insert_model_export
INSERT INTO model_exports (name, version, format, artifact, details_json, at)
VALUES (%(name)s, %(version)s, %(format)s, %(artifact)s, %(details)s, %(now)s);

-- name: model_exports
SELECT name, version, format, artifact, details_json, at FROM model_exports
WHERE name = %(name)s AND version = %(version)s ORDER BY at;
