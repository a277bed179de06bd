-- Raw events: one row per accepted track event. Sorted for the dashboard's access pattern
-- (one project, a date range, often one event name); dedup window makes retried flushes
-- with the same insert_deduplication_token harmless.
CREATE TABLE IF NOT EXISTS $db.events
(
    id UUID,
    project_id LowCardinality(String),
    name LowCardinality(String),
    device_id String,
    profile_id String,
    session_id String,
    -- when the event's session began: the sessions rollup is keyed by it
    session_start DateTime64(3, 'UTC'),
    created_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    origin LowCardinality(String),
    path String,
    query String,
    title String,
    referrer String,
    referrer_name LowCardinality(String),
    referrer_type LowCardinality(String),
    utm_source String,
    utm_medium LowCardinality(String),
    utm_campaign String,
    utm_term String,
    utm_content String,
    click_id_type LowCardinality(String),
    click_id String,
    country LowCardinality(String),
    region LowCardinality(String),
    city String,
    browser LowCardinality(String),
    browser_version LowCardinality(String),
    os LowCardinality(String),
    os_version LowCardinality(String),
    device LowCardinality(String),
    brand LowCardinality(String),
    model LowCardinality(String),
    screen LowCardinality(String),
    language LowCardinality(String),
    duration UInt32,
    revenue Float64,
    properties Map(String, String),
    sdk_name LowCardinality(String),
    sdk_version LowCardinality(String),
    -- rows of one (project, day, name) run are time-ordered, so per-granule time bounds let
    -- "the last N minutes" (live) skip everything older
    INDEX created_at_minmax created_at TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (project_id, toDate(created_at), name, created_at)
SETTINGS non_replicated_deduplication_window = 10000;
