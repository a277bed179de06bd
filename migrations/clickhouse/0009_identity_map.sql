-- Each linked key's first link, by hashes: what the reports' identity resolution reads instead
-- of grouping every identity link (their strings) per source on each query (BENCHMARKS.md,
-- people). `source_hash` is the key hash the events use (devices hashed apart from profile
-- ids); `first_link` is the (time, target hash) of the earliest link, so merging keeps the
-- link that wins (README "Visitors"). Erasing a person rebuilds the rows of the sources whose
-- links went from the links that remain, so a source's next link comes back.
CREATE TABLE IF NOT EXISTS $db.identity_map
(
    project_id LowCardinality(String),
    -- 1 for a profile id aliased to another (the one step the resolution follows)
    alias UInt8,
    source_hash UInt64,
    first_link SimpleAggregateFunction(min, Tuple(DateTime64(3, 'UTC'), UInt64))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, alias, source_hash);

CREATE MATERIALIZED VIEW IF NOT EXISTS $db.identity_map_mv TO $db.identity_map AS
SELECT
    project_id,
    toUInt8(kind = 'alias') AS alias,
    if(kind = 'device', cityHash64(source, 'device'), cityHash64(source)) AS source_hash,
    min((toDateTime64(linked_at, 3, 'UTC'), cityHash64(target))) AS first_link
FROM $db.identity_links
GROUP BY project_id, alias, source_hash;

-- the links stored before this table existed
INSERT INTO $db.identity_map
SELECT
    project_id,
    toUInt8(kind = 'alias') AS alias,
    if(kind = 'device', cityHash64(source, 'device'), cityHash64(source)) AS source_hash,
    min((toDateTime64(linked_at, 3, 'UTC'), cityHash64(target))) AS first_link
FROM $db.identity_links
GROUP BY project_id, alias, source_hash;
