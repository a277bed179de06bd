-- Finished sessions, counted once: per UTC hour of their start and per value of each session
-- dimension ('' = the whole hour). Built by the sealing job (gatrix/insights/sealed.py) for
-- hours that are over, never by a view: a view sees a session in pieces, one per insert.
-- Each build of an hour writes a new generation (`built_at`); reports read the generation
-- that `session_hours` names, and only while no insert has touched the hour since.
CREATE TABLE IF NOT EXISTS $db.session_hourly
(
    project_id LowCardinality(String),
    dimension LowCardinality(String),
    hour DateTime('UTC'),
    value String,
    built_at DateTime64(3, 'UTC'),
    sessions UInt64,
    pageviews UInt64,
    bounces UInt64,
    duration_ms Int64,
    -- the visitor key hashes of the sessions (gatrix/insights/identity.py KEY_HASH)
    visitors AggregateFunction(uniq, UInt64)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, dimension, hour, value)
-- Granules of at most 1 MiB (not 10 MiB): a row holds a visitor sketch of up to ~250 KB,
-- and a report that reads the latest rows reads whole granules (at 100M events,
-- today's session hours 21 → 7 ms). Databases made before keep their granules (same answers).
SETTINGS index_granularity_bytes = 1048576;

-- Which generation of an hour is built, and when its build began to read.
CREATE TABLE IF NOT EXISTS $db.session_hours
(
    project_id LowCardinality(String),
    hour DateTime('UTC'),
    built_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(built_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour);

-- When rows of sessions that began in an hour last arrived (any insert into `sessions`: the
-- live flush, an import, an erasure's rebuild). A built hour touched after its build is read
-- raw until it is built again.
CREATE TABLE IF NOT EXISTS $db.session_touches
(
    project_id LowCardinality(String),
    hour DateTime('UTC'),
    touched_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.session_touches_mv TO $db.session_touches AS
SELECT project_id, toStartOfHour(session_start) AS hour, max(now64(3, 'UTC')) AS touched_at
FROM $db.sessions
GROUP BY project_id, hour;

-- the sessions stored before this migration: touched now, so the job builds their hours
INSERT INTO $db.session_touches
SELECT project_id, toStartOfHour(session_start) AS hour, max(now64(3, 'UTC')) AS touched_at
FROM $db.sessions
GROUP BY project_id, hour;
