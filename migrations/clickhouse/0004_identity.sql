-- Identity links: `source` (a device id, or a profile id that was aliased) belongs to the
-- person `target`. Reports resolve every event's visitor through these links at query time,
-- so a link made today also claims the events its device sent before (see README "Visitors").
-- One row per (source, target) after merges; the earliest link of a source wins.
CREATE TABLE IF NOT EXISTS $db.identity_links
(
    project_id LowCardinality(String),
    source String,
    target String,
    -- 'device' (identify, or an event carrying both ids) or 'alias' (two profile ids)
    kind LowCardinality(String),
    linked_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, source, target, kind)
SETTINGS non_replicated_deduplication_window = 10000;

-- Every event that carries a profile id links its device to that person. The link's time is
-- when the server received the event: a client-chosen (back-dated) time must not make a link
-- older than one already made. Backends that send no visitor IP or user agent record no
-- device: nothing to link.
CREATE MATERIALIZED VIEW IF NOT EXISTS $db.identity_links_mv TO $db.identity_links AS
SELECT
    project_id,
    device_id AS source,
    profile_id AS target,
    'device' AS kind,
    min(received_at) AS linked_at
FROM $db.events
WHERE profile_id != '' AND device_id != '' AND device_id != profile_id
GROUP BY project_id, source, target;
