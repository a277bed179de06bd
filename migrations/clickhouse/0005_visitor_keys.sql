-- Who was there each hour, as 64-bit hashes of each event's own key (its profile id, else its
-- device id): the KPIs and the visitor series of a project with identity links resolve these
-- few rows through the links instead of every event (README "Visitors and identity").
-- A row repeated by a retried or backfilled block changes nothing: visitors are a uniq().
CREATE TABLE IF NOT EXISTS $db.visitor_hourly
(
    project_id LowCardinality(String),
    hour DateTime('UTC'),
    key_hash UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, key_hash)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.visitor_hourly_mv TO $db.visitor_hourly AS
SELECT
    project_id,
    toStartOfHour(created_at) AS hour,
    cityHash64(if(profile_id != '', profile_id, device_id)) AS key_hash
FROM $db.events
GROUP BY project_id, hour, key_hash;

-- the events stored before this table existed
INSERT INTO $db.visitor_hourly
SELECT project_id, toStartOfHour(created_at) AS hour,
       cityHash64(if(profile_id != '', profile_id, device_id)) AS key_hash
FROM $db.events
GROUP BY project_id, hour, key_hash;
