-- Page views and visitors per path and UTC day, for the days that are over: built by the
-- sealing job (gatrix/insights/sealed.py) from `page_hourly`, so a month's top pages merge
-- 30 visitor sketches per path instead of 720 (and the unmerged parts' copies of them).
-- The same scheme as the sealed session hours (0010): one generation per build, `page_days`
-- names the one reports read, `page_touches` (a view on `page_hourly`) tells when rows of a
-- day last arrived; a day touched since its build is read from `page_hourly` until rebuilt.
CREATE TABLE IF NOT EXISTS $db.page_daily
(
    project_id LowCardinality(String),
    day Date,
    path String,
    built_at DateTime64(3, 'UTC'),
    visitors AggregateFunction(uniq, String),
    pageviews UInt64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, path);

CREATE TABLE IF NOT EXISTS $db.page_days
(
    project_id LowCardinality(String),
    day Date,
    built_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(built_at)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE TABLE IF NOT EXISTS $db.page_touches
(
    project_id LowCardinality(String),
    day Date,
    touched_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.page_touches_mv TO $db.page_touches AS
SELECT project_id, toDate(hour) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.page_hourly
GROUP BY project_id, day;

-- the page views stored before this migration: touched now, so the job builds their days
INSERT INTO $db.page_touches
SELECT project_id, toDate(hour) AS day, max(now64(3, 'UTC')) AS touched_at
FROM $db.page_hourly
GROUP BY project_id, day;
