-- Visitors, page views and custom events per UTC day, for the days that are over: built by
-- the sealing job (gatrix/insights/sealed.py) from `hourly`, so a month's KPIs merge 30
-- visitor sketches instead of 720 (and the unmerged parts' copies of them).
-- The same scheme as the sealed page days (0011): one generation per build, `total_days`
-- names the one reports read, `total_touches` (a view on `hourly`) tells when rows of a day
-- last arrived; a day touched since its build is read from `hourly` until rebuilt.
CREATE TABLE IF NOT EXISTS $db.total_daily
(
    project_id LowCardinality(String),
    day Date,
    built_at DateTime64(3, 'UTC'),
    visitors AggregateFunction(uniq, String),
    pageviews UInt64,
    custom_events UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day)
-- Granules of at most 1 MiB (not 10 MiB): a row holds a visitor sketch of up to ~250 KB,
-- and a report that reads the latest rows reads whole granules (at 100M events,
-- the last two days 12 → 4 ms). Databases made before keep their granules (same answers).
SETTINGS index_granularity_bytes = 1048576;

CREATE TABLE IF NOT EXISTS $db.total_days
(
    project_id LowCardinality(String),
    day Date,
    built_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(built_at)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE TABLE IF NOT EXISTS $db.total_touches
(
    project_id LowCardinality(String),
    day Date,
    touched_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.total_touches_mv TO $db.total_touches AS
SELECT project_id, toDate(hour) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.hourly
GROUP BY project_id, day;

-- the hours stored before this migration: touched now, so the job builds their days
INSERT INTO $db.total_touches
SELECT project_id, toDate(hour) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.hourly
GROUP BY project_id, day;
