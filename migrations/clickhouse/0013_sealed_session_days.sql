-- Finished sessions per UTC day of their start and per value of each session dimension,
-- for the days that are over: the sealed session hours (0010) once more, by the day, so a
-- month's session breakdown merges 30 visitor sketches per value instead of 720. Built by
-- the sealing job (gatrix/insights/sealed.py) from `sessions`, with the same generations,
-- names and touches as the hours.
CREATE TABLE IF NOT EXISTS $db.session_daily
(
    project_id LowCardinality(String),
    dimension LowCardinality(String),
    day Date,
    value String,
    built_at DateTime64(3, 'UTC'),
    sessions UInt64,
    pageviews UInt64,
    bounces UInt64,
    duration_ms Int64,
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, dimension, day, value)
-- Granules of at most 1 MiB (not 10 MiB): a row holds a visitor sketch of up to ~250 KB,
-- and a report that reads the latest rows reads whole granules (at 100M events,
-- the last two days 12 → 8 ms). Databases made before keep their granules (same answers).
SETTINGS index_granularity_bytes = 1048576;

CREATE TABLE IF NOT EXISTS $db.session_days
(
    project_id LowCardinality(String),
    day Date,
    built_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(built_at)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE TABLE IF NOT EXISTS $db.session_day_touches
(
    project_id LowCardinality(String),
    day Date,
    touched_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.session_day_touches_mv TO $db.session_day_touches AS
SELECT project_id, toDate(session_start) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.sessions
GROUP BY project_id, day;

-- the sessions stored before this migration: touched now, so the job builds their days
INSERT INTO $db.session_day_touches
SELECT project_id, toDate(session_start) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.sessions
GROUP BY project_id, day;
