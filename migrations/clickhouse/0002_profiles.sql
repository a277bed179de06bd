-- Profiles are an append-only log of identify calls; the current profile is an aggregate
-- (newest non-empty value per field), so a partial identify never erases earlier fields.
CREATE TABLE IF NOT EXISTS $db.profiles
(
    project_id LowCardinality(String),
    profile_id String,
    first_name String,
    last_name String,
    email String,
    avatar String,
    properties Map(String, String),
    updated_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (project_id, profile_id, updated_at)
SETTINGS non_replicated_deduplication_window = 10000;

-- increment/decrement are deltas: a SummingMergeTree adds them up without read-modify-write.
CREATE TABLE IF NOT EXISTS $db.profile_counters
(
    project_id LowCardinality(String),
    profile_id String,
    property String,
    value Float64
)
ENGINE = SummingMergeTree(value)
ORDER BY (project_id, profile_id, property)
SETTINGS non_replicated_deduplication_window = 10000;
