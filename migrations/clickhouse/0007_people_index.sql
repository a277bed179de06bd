-- The people index: what the People pages need to find a person's rows by key instead of
-- scanning every event (events are sorted by day and name, not by who sent them).

-- Identity links read from the other side: every source that points at a target. A person's
-- devices and alias ids are found by one primary-key read here (identity_links is sorted by
-- source). Filled from identity_links itself, so links from identify, alias and the events
-- view all arrive (a view on a view's target table fires too).
CREATE TABLE IF NOT EXISTS $db.identity_targets
(
    project_id LowCardinality(String),
    target String,
    source String,
    kind LowCardinality(String),
    linked_at SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, target, source, kind)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.identity_targets_mv TO $db.identity_targets AS
SELECT project_id, target, source, kind, linked_at
FROM $db.identity_links;

-- One row per (key, session) after merges, where a key is an event's own identity (its
-- profile id, else its device id: gatrix/insights/identity.py KEY). A person is a set of
-- keys, so their events, sessions and first/last seen are sums over a few rows, and the
-- session spans (first_at..last_at) tell which slices of `events` hold their events.
-- identify calls add a row with an empty session: a profile without events is still seen.
CREATE TABLE IF NOT EXISTS $db.visitor_sessions
(
    project_id LowCardinality(String),
    key String,
    session_start DateTime64(3, 'UTC'),
    session_id String,
    -- 1 when the key is a profile id (an event carried it, or it was identified)
    profiled SimpleAggregateFunction(max, UInt8),
    events SimpleAggregateFunction(sum, UInt64),
    first_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, key, session_start, session_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.visitor_sessions_mv TO $db.visitor_sessions AS
SELECT
    project_id,
    if(profile_id != '', profile_id, device_id) AS key,
    session_start,
    session_id,
    max(toUInt8(profile_id != '')) AS profiled,
    count() AS events,
    min(created_at) AS first_at,
    max(created_at) AS last_at
FROM $db.events
GROUP BY project_id, key, session_start, session_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.visitor_profiles_mv TO $db.visitor_sessions AS
SELECT
    project_id,
    profile_id AS key,
    toDateTime64(0, 3, 'UTC') AS session_start,
    '' AS session_id,
    toUInt8(1) AS profiled,
    toUInt64(0) AS events,
    min(updated_at) AS first_at,
    max(updated_at) AS last_at
FROM $db.profiles
GROUP BY project_id, key;

-- What was stored before this migration.
INSERT INTO $db.identity_targets
SELECT project_id, target, source, kind, linked_at FROM $db.identity_links;

INSERT INTO $db.visitor_sessions
SELECT project_id, if(profile_id != '', profile_id, device_id) AS key, session_start, session_id,
       max(toUInt8(profile_id != '')), count(), min(created_at), max(created_at)
FROM $db.events
GROUP BY project_id, key, session_start, session_id;

INSERT INTO $db.visitor_sessions
SELECT project_id, profile_id, toDateTime64(0, 3, 'UTC'), '', toUInt8(1), toUInt64(0),
       min(updated_at), max(updated_at)
FROM $db.profiles
GROUP BY project_id, profile_id;
